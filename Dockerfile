# The outpost image: a static binary on distroless, as a non-root user, with
# `outpost` as the entrypoint, so that the guide's commands work as written:
#
#   docker build --build-arg VERSION=v0.17.0 -t hookdeck/outpost:v0.17.0 .
#   docker run --rm hookdeck/outpost:v0.17.0 --version
#   docker run --rm --env-file .env hookdeck/outpost:v0.17.0 migrate apply --yes

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
LABEL org.opencontainers.image.title="outpost" \
      org.opencontainers.image.description="Outpost storage migrations (outpost migrate plan|apply|verify|status|unlock)" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/outpost /usr/local/bin/outpost
USER 65532:65532
ENTRYPOINT ["outpost"]
