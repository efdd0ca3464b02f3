# coop-proxy container image, for linux/amd64 and linux/arm64.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t coop-proxy .
#
# builds it for the machine's own platform. Both platforms as one manifest
# list, pushed to a registry (with a builder that can hold a multi-platform
# image: Docker's containerd image store, or docker buildx create --use):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#                --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) \
#                -t registry.example.com/coop-proxy:1.0 --push .
#
# The build stage runs on the building machine's platform and cross-compiles
# for the target one (the binary is pure Go), so no emulation is needed and
# the build stage never runs what it built.
#
# The final image is FROM scratch: the static binary, the CA certificates
# (for an https upstream), an empty /tmp and the token store directory
# /var/lib/coop-proxy (a volume owned by 65532, the user it runs as).
# It listens on 127.0.0.1:8080 (a sidecar beside the application, which
# shares the pod's network) and serves /healthz, /readyz and /metrics on
# 0.0.0.0:9090 so that the kubelet's probes reach them; the admin listener
# carries no secrets. See deploy/ for Kubernetes, systemd and Compose.
#
# GO_IMAGE is the build stage's base image. CI builds without network
# access and passes a locally made image holding the Go toolchain and a
# filled module cache (.ci/build-image); anything with the go command, a
# POSIX shell with mkdir and chown, and /etc/ssl/certs/ca-certificates.crt works.
# buildah and podman build both platforms with
# --platform linux/amd64,linux/arm64 --manifest NAME; buildah 1.28 (Debian 12's)
# leaves BUILDPLATFORM unset on FROM lines, so also pass
# --build-arg BUILDPLATFORM=linux/amd64 (the building machine's), as CI does.
ARG GO_IMAGE=golang:1.26-bookworm

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG VERSION=dev
ARG COMMIT=unknown
# -mod=mod: modules from the module cache, no vendor directory; anything
# missing goes through GOPROXY, which CI's base image sets to off (its module
# cache already holds every module go.mod names).
ENV CGO_ENABLED=0 GOFLAGS=-mod=mod
WORKDIR /src
# The modules first, in their own step: it stays cached until go.mod or
# go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The target platform (--platform), set by BuildKit and buildah. Declared
# here, after the shared steps, so that those stay the same for every target.
# Without BuildKit both are empty and go builds for the machine it runs on.
ARG TARGETOS TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
        -ldflags "-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" \
        -o /out/coop-proxy ./cmd/coop-proxy \
 && mkdir -p /out/lib /out/root \
 && mkdir -m 0700 /out/lib/coop-proxy \
 && chown 65532:65532 /out/lib/coop-proxy \
 && mkdir -m 1777 /out/root/tmp

FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="coop-proxy" \
      org.opencontainers.image.description="Local authenticating reverse proxy for COOP: gets and refreshes OAuth 2.0 tokens and forwards requests with the bearer token" \
      org.opencontainers.image.source="https://github.com/coop-proxy/coop-proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The directories are copied from their parents so that their modes (0700,
# 1777) and owner come along: COPY gives the directory it is pointed at mode
# 0755, and --chown would chown /var/lib too.
COPY --from=build /out/root/ /
COPY --from=build /out/lib/ /var/lib/
COPY --from=build /out/coop-proxy /coop-proxy
ENV COOP_PROXY_STORE=/var/lib/coop-proxy/tokens.json \
    COOP_PROXY_LISTEN=127.0.0.1:8080 \
    COOP_PROXY_ADMIN_LISTEN=0.0.0.0:9090
USER 65532:65532
VOLUME ["/var/lib/coop-proxy"]
EXPOSE 9090
ENTRYPOINT ["/coop-proxy"]
CMD ["serve"]
