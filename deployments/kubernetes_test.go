package deployments

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// image is the repository the overlays deploy from.
const image = "registry.example.com/flightbook/flightbook"

// rendered is one overlay, built and decoded into typed Kubernetes objects.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	namespaces  map[string]*corev1.Namespace
}

// render runs `kustomize build dir` in process and decodes every object strictly: a field the
// Kubernetes API does not know (a typo such as readinesProbe, a field at the wrong level) fails
// the test here instead of being dropped silently by the API server.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := rendered{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		namespaces:  map[string]*corev1.Namespace{},
	}
	for _, res := range resources.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		kind, name := res.GetKind(), res.GetName()
		var obj any
		switch kind {
		case "Deployment":
			obj = decode(t, doc, r.deployments, name)
		case "Service":
			obj = decode(t, doc, r.services, name)
		case "PodDisruptionBudget":
			obj = decode(t, doc, r.pdbs, name)
		case "HorizontalPodAutoscaler":
			obj = decode(t, doc, r.hpas, name)
		case "ConfigMap":
			obj = decode(t, doc, r.configMaps, name)
		case "Secret":
			obj = decode(t, doc, r.secrets, name)
		case "Namespace":
			obj = decode(t, doc, r.namespaces, name)
		default:
			t.Errorf("%s: kind %s/%s is not checked by this test; add it", dir, res.GetApiVersion(), kind)
		}
		_ = obj
	}
	return r
}

// decode strictly unmarshals doc into a new T and files it under name.
func decode[T any](t *testing.T, doc []byte, into map[string]*T, name string) *T {
	t.Helper()
	obj := new(T)
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%T %s does not decode: %v\n%s", obj, name, err, doc)
	}
	if _, dup := into[name]; dup {
		t.Fatalf("two %T named %s", obj, name)
	}
	into[name] = obj
	return obj
}

func TestKustomizeOverlays(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		overlay        string
		namespace      string
		replicas       int32
		streamReplicas string
		tag            *regexp.Regexp // the image's tag (or digest)
	}{
		{"dev", "flightbook-dev", 1, "1", regexp.MustCompile(`^:dev$`)},
		// A release, pinned: never latest or another moving tag.
		{"prod", "flightbook", 3, "3", regexp.MustCompile(`^(:v?\d+\.\d+\.\d+)?(@sha256:[0-9a-f]{64})?$`)},
	} {
		t.Run(tt.overlay, func(t *testing.T) {
			t.Parallel()
			r := render(t, "kubernetes/overlays/"+tt.overlay)

			if _, ok := r.namespaces[tt.namespace]; !ok {
				t.Errorf("no Namespace %s", tt.namespace)
			}
			if len(r.configMaps) != 1 {
				t.Fatalf("%d ConfigMaps, want the one generated flightbook-config", len(r.configMaps))
			}
			var config *corev1.ConfigMap
			for _, cm := range r.configMaps {
				config = cm
			}
			if got := config.Data["FLIGHTBOOK_STREAMS_REPLICAS"]; got != tt.streamReplicas {
				t.Errorf("FLIGHTBOOK_STREAMS_REPLICAS = %q, want %s", got, tt.streamReplicas)
			}
			shutdown, err := time.ParseDuration(config.Data["FLIGHTBOOK_HTTP_SHUTDOWN_TIMEOUT"])
			if err != nil {
				t.Fatalf("FLIGHTBOOK_HTTP_SHUTDOWN_TIMEOUT: %v", err)
			}

			for _, svc := range []struct {
				name    string
				port    int32
				secrets []string
			}{
				{"flight", 8081, []string{"FLIGHTBOOK_POSTGRES_URL", "FLIGHTBOOK_AUTH_SECRET"}},
				{"booking", 8082, []string{"FLIGHTBOOK_MYSQL_DSN", "FLIGHTBOOK_AUTH_SECRET"}},
			} {
				t.Run(svc.name, func(t *testing.T) {
					checkService(t, r, tt.namespace, svc.name, svc.port, svc.secrets, tt.replicas, config.Name, shutdown)
					if t.Failed() {
						return
					}
					// The overlay's image, not the base's placeholder; prod's is a release.
					img := r.deployments[svc.name].Spec.Template.Spec.Containers[0].Image
					ref, ok := strings.CutPrefix(img, image)
					if !ok || ref == "" || !tt.tag.MatchString(ref) {
						t.Errorf("runs image %s, want %s with a tag matching %s", img, image, tt.tag)
					}
				})
			}
		})
	}
}

// checkService checks one service's Deployment, Service, PodDisruptionBudget and
// HorizontalPodAutoscaler in a rendered overlay.
func checkService(t *testing.T, r rendered, namespace, name string, port int32, secretKeys []string,
	replicas int32, configMap string, shutdown time.Duration) {
	t.Helper()
	d, ok := r.deployments[name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	if d.Namespace != namespace {
		t.Errorf("Deployment %s in namespace %q, want %s", name, d.Namespace, namespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		t.Errorf("Deployment %s: replicas %v, want %d", name, d.Spec.Replicas, replicas)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, image+":") && !strings.HasPrefix(c.Image, image+"@") {
		t.Errorf("Deployment %s: image %q, want %s:<tag>", name, c.Image, image)
	}
	if len(c.Args) != 1 || c.Args[0] != name {
		t.Errorf("Deployment %s: args %q, want [%s]", name, c.Args, name)
	}

	// Ports and probes: the probes resolve to the port the service listens on.
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port {
		t.Fatalf("Deployment %s: ports %+v, want %d", name, c.Ports, port)
	}
	portName := c.Ports[0].Name
	listen := ""
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
	}
	if e, ok := envs["FLIGHTBOOK_"+strings.ToUpper(name)+"_HTTP_ADDR"]; ok {
		listen = e.Value
	}
	if listen != fmt.Sprintf(":%d", port) {
		t.Errorf("Deployment %s: listens on %q, want :%d", name, listen, port)
	}
	resolves := func(p intstr.IntOrString) bool {
		return p.IntVal == port || (p.Type == intstr.String && p.StrVal == portName)
	}
	for _, probe := range []struct {
		kind string
		p    *corev1.Probe
		path string
	}{
		{"readiness", c.ReadinessProbe, "/readyz"},
		{"liveness", c.LivenessProbe, "/healthz"},
		{"startup", c.StartupProbe, "/healthz"},
	} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("Deployment %s: no HTTP %s probe", name, probe.kind)
			continue
		}
		if probe.p.HTTPGet.Path != probe.path || !resolves(probe.p.HTTPGet.Port) {
			t.Errorf("Deployment %s: %s probe GETs %s on %s, want %s on %d",
				name, probe.kind, probe.p.HTTPGet.Path, probe.p.HTTPGet.Port.String(), probe.path, port)
		}
	}

	// Resources: requests for the scheduler and the HPA, a memory limit above the
	// services' < 100 MB target.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("Deployment %s: no %s request", name, res)
		}
	}
	if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok ||
		limit.Cmp(resource.MustParse("128Mi")) < 0 || limit.Cmp(resource.MustParse("512Mi")) > 0 {
		t.Errorf("Deployment %s: memory limit %v, want between 128Mi and 512Mi", name, c.Resources.Limits.Memory())
	}

	// Runs as the image's non-root user on a read-only root filesystem.
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("Deployment %s: pod does not run as a non-root user", name)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("Deployment %s: root filesystem writable or privilege escalation allowed", name)
	}

	// SIGKILL comes only after the preStop pause and the server's drain.
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= preStop+shutdown {
		t.Errorf("Deployment %s: terminationGracePeriodSeconds %v not above preStop %v + shutdown timeout %v",
			name, g, preStop, shutdown)
	}

	// Configuration: the generated ConfigMap (kustomize rewrites the reference to its hashed
	// name) and the secret keys the service needs, from a Secret that has them.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != configMap {
		t.Errorf("Deployment %s: envFrom %+v, want ConfigMap %s", name, c.EnvFrom, configMap)
	}
	for _, key := range secretKeys {
		e, ok := envs[key]
		if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("Deployment %s: %s is not taken from a Secret", name, key)
			continue
		}
		s, ok := r.secrets[e.ValueFrom.SecretKeyRef.Name]
		if !ok {
			t.Errorf("Deployment %s: %s refers to Secret %s, which the overlay lacks", name, key, e.ValueFrom.SecretKeyRef.Name)
		} else if _, ok := s.StringData[key]; !ok {
			if _, ok := s.Data[key]; !ok {
				t.Errorf("Secret %s has no %s", s.Name, key)
			}
		}
	}

	// The Service, PodDisruptionBudget and HorizontalPodAutoscaler select these pods.
	labels := d.Spec.Template.Labels
	selects := func(sel map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if !selects(d.Spec.Selector.MatchLabels) {
		t.Errorf("Deployment %s: selector does not match its own pods", name)
	}
	if s, ok := r.services[name]; !ok {
		t.Errorf("no Service %s", name)
	} else if !selects(s.Spec.Selector) || len(s.Spec.Ports) != 1 || !resolves(s.Spec.Ports[0].TargetPort) {
		t.Errorf("Service %s does not route to the pods' port %d", name, port)
	}
	if pdb, ok := r.pdbs[name]; !ok {
		t.Errorf("no PodDisruptionBudget %s", name)
	} else if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget %s does not select the pods", name)
	} else if replicas > 1 && (pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1) {
		t.Errorf("PodDisruptionBudget %s: minAvailable %v, want at least 1", name, pdb.Spec.MinAvailable)
	} else if replicas == 1 && pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.IntValue() >= 1 {
		t.Errorf("PodDisruptionBudget %s: minAvailable %v with one replica blocks every node drain", name, pdb.Spec.MinAvailable)
	}
	if hpa, ok := r.hpas[name]; !ok {
		t.Errorf("no HorizontalPodAutoscaler %s", name)
	} else {
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != name {
			t.Errorf("HorizontalPodAutoscaler %s scales %s %s", name, ref.Kind, ref.Name)
		}
		// kubectl apply resets spec.replicas; with the HPA's minimum equal to it, an apply
		// never scales the service below what the HPA keeps.
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != replicas || hpa.Spec.MaxReplicas < replicas {
			t.Errorf("HorizontalPodAutoscaler %s: min %v max %d, want min %d", name, hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, replicas)
		}
		if len(hpa.Spec.Metrics) == 0 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("HorizontalPodAutoscaler %s does not scale on CPU", name)
		}
	}
}

// TestNATSHelmValues checks the values for the NATS chart: three servers, file storage on
// volumes, every write synced.
func TestNATSHelmValues(t *testing.T) {
	t.Parallel()
	var values struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					Enabled bool `json:"enabled"`
					PVC     struct {
						Enabled bool   `json:"enabled"`
						Size    string `json:"size"`
					} `json:"pvc"`
				} `json:"fileStore"`
				Merge map[string]any `json:"merge"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	readYAML(t, "kubernetes/nats-values.yaml", &values)
	c := values.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster enabled %v with %d servers, want 3", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	js := c.JetStream
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled || js.FileStore.PVC.Size == "" {
		t.Errorf("JetStream file storage on volumes is not enabled: %+v", js)
	}
	if got := js.Merge["sync_interval"]; got != "always" {
		t.Errorf("jetstream sync_interval %v, want always", got)
	}
}
