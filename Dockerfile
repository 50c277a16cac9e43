# syntax=docker/dockerfile:1
#
# wasm-admission: a static binary (musl, no glibc, no shared libraries) on distroless/static,
# running as the non-root user 65532.
#
#   docker build -t wasm-admission:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/wasm-admission:0.1.0 --push .
#
# The builder runs on the target platform (natively or emulated), so it builds for its own
# architecture: x86_64-unknown-linux-musl or aarch64-unknown-linux-musl.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# musl-tools comes from the image's own Debian release; pinning its exact version would break the
# build at every Debian point release, and the image tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN echo "$(uname -m)-unknown-linux-musl" > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the benches (cargo checks that their files exist), and `serve --dev` embeds
# the example review.
COPY benches ./benches
COPY examples/review ./examples/review
# The registry and target folders are BuildKit caches: a rebuild after a source change only
# compiles this crate. The binary is copied out of the cache into /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$(cat /rust-target)" --bin wasm-admission \
    && mkdir -p /out \
    && cp "target/$(cat /rust-target)/release/wasm-admission" /out/wasm-admission \
    && /out/wasm-admission --version

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="wasm-admission" \
      org.opencontainers.image.description="Kubernetes admission webhook for WebAssembly workloads" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/wasm-admission /usr/local/bin/wasm-admission
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/wasm-admission"]
CMD ["serve"]
