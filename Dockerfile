# syntax=docker/dockerfile:1
#
# The flightbook image: one static binary that runs either service
# (`flightbook flight` or `flightbook booking`, chosen by the container's command).
#
#   docker build -t flightbook .
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example.com/flightbook:1.4.2 --push .
#
# The drivers are pure Go (pgx, go-sql-driver/mysql, modernc.org/sqlite), so the binary is built
# with CGO_ENABLED=0 and needs no libc: the final image is distroless "static", which holds CA
# certificates, /etc/passwd with the nonroot user, tzdata, and nothing else (no shell, no package
# manager), so there is little to patch and little for an intruder to use.

# Keep in step with the go directive in go.mod (a test in deployments/ checks it).
ARG GO_VERSION=1.26

# The builder runs on the build machine's own platform and cross-compiles for the target, which
# is much faster than building under emulation for a multi-arch image (docker buildx --platform).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src

# Modules first, in their own layer: a source change then reuses the downloaded modules.
# The cache mounts keep the module and build caches across builds (BuildKit).
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG TARGETOS TARGETARCH
# -trimpath drops local paths from the binary (reproducible builds, no build machine paths in
# stack traces); -s -w drop the symbol table and DWARF, about a third of the size. Panics still
# print full stack traces (they use the pclntab, which stays).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w" \
      -o /out/flightbook ./cmd/flightbook && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w" \
      -o /out/healthcheck ./deployments/healthcheck

# nonroot: uid/gid 65532. Kubernetes' runAsNonRoot check needs a numeric USER to verify, so it
# is given as a number rather than the name.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flightbook /flightbook
# The distroless image has no shell, curl or wget, so docker-compose health checks call this
# small probe instead (Kubernetes uses httpGet probes and does not need it).
COPY --from=build /out/healthcheck /healthcheck
USER 65532:65532
# 8081: flight service, 8082: booking service.
EXPOSE 8081 8082
ENTRYPOINT ["/flightbook"]
CMD ["--help"]
