# syntax=docker/dockerfile:1.7
# The MultiVAC app image: the `multivac` binary, which is both the HTTP server
# and the queue worker (the operator picks the role with the arguments).
#
#   docker build -f Dockerfile.app -t multivac:dev .          # BuildKit
#   buildah build --layers -f Dockerfile.app -t multivac:dev . # as CI does
#
# Dependencies are compiled once and kept in BuildKit/buildah cache mounts (the
# cargo registry and the target folder), so a change to the app's sources only
# recompiles the app crate.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Only what cargo needs: every workspace member must exist for --locked to
# resolve the workspace, but only the app and the contract crate it shares
# with the operator are compiled.
COPY Cargo.toml Cargo.lock ./
COPY app ./app
COPY contract ./contract
COPY operator ./operator
COPY testkit ./testkit
COPY xtask ./xtask
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p multivac --bin multivac \
 && install -D -m 0555 target/release/multivac /out/multivac

# distroless/cc: glibc and libgcc only (the binary uses rustls, no OpenSSL),
# no shell, no package manager. The builder is bookworm too, so glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=v0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="multivac" \
      org.opencontainers.image.description="MultiVAC: the HTTP server and Redis Streams queue workers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://gitlab.com/multivac/multivac" \
      org.opencontainers.image.vendor="MultiVAC"
COPY --from=build /out/multivac /usr/local/bin/multivac
# 65532 is distroless' `nonroot`; numeric so `runAsNonRoot` can verify it.
USER 65532:65532
# 8080: the HTTP server (API, /healthz, /readyz, /metrics) when run as server.
# 9090: the worker's /healthz, /readyz and /metrics when run as worker.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/multivac"]
