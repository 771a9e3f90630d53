// Package deployments holds no code the services run: it is the home of what runs them (the
// NATS server configs in nats/, the Kubernetes manifests in kubernetes/, the health probe the
// image carries in healthcheck/), and its tests check those files together with the
// repository's Dockerfile and docker-compose.yml, since no Docker engine or Kubernetes cluster
// is at hand where the tests run.
//
// What each test checks is what would otherwise be found only at deploy time: that
// docker-compose.yml is valid Compose and wires the services to their databases and broker,
// that the kustomize overlays render to valid Kubernetes objects with the probes, ports and
// replicas the services need, and that both NATS configs sync JetStream to disk on every write.
package deployments
