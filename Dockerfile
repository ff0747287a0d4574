# The outpost-migrate image: this repository's `outpost` binary (the
# migration tool, `outpost migrate plan|apply|verify|status|unlock|cleanup`),
# static, on distroless, as a non-root user, with `outpost` as the entrypoint.
#
# It is not Outpost's own image (hookdeck/outpost, whose `outpost serve` runs
# the server): this one has no `serve`. Run it beside Outpost's image, the
# migration from this one and the server from Outpost's (jobs/README.md shows
# how in Compose, Nomad, Kubernetes and Helm):
#
#   docker build --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t outpost-migrate:v0.1.0 .
#   docker run --rm outpost-migrate:v0.1.0 --version
#   docker run --rm --env-file .env outpost-migrate:v0.1.0 migrate apply --yes --wait-for 2m

# Build on the builder's own platform and cross-compile for the target's
# (docker buildx build --platform linux/amd64,linux/arm64 ...).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/outpost ./cmd/outpost

# distroless/static: CA certificates and time zones, no shell, no package
# manager. Its nonroot user is 65532; the numeric USER lets Kubernetes check
# runAsNonRoot.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
# The commit the image is built from (git rev-parse HEAD); "unknown" when the
# build does not pass it.
ARG REVISION=unknown
# OCI annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md):
# where the source is, which commit, under which licence (LICENSE), which
# release.
LABEL org.opencontainers.image.title="outpost-migrate" \
      org.opencontainers.image.description="Storage migrations for Outpost (outpost migrate plan|apply|verify|status|unlock|cleanup); not Outpost's server image" \
      org.opencontainers.image.source="https://github.com/outpost-migrate/outpost" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/outpost /usr/local/bin/outpost
COPY LICENSE /usr/share/doc/outpost-migrate/LICENSE
USER 65532:65532
ENTRYPOINT ["outpost"]
