# syntax=docker/dockerfile:1
# Build: everything comes from crates.io; protos are compiled in build.rs (no protoc needed).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
COPY bench ./bench
COPY tests ./tests
RUN cargo build --release --locked --bin suppressd

# Run: a slim image, an unprivileged user, the data on a volume.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/suppressd --create-home suppressd
COPY --from=build /src/target/release/suppressd /usr/local/bin/suppressd
USER suppressd
ENV SUPPRESSD_LISTEN=0.0.0.0:50051 \
    SUPPRESSD_DATA_DIR=/var/lib/suppressd/data \
    SUPPRESSD_LOG_FORMAT=json
VOLUME ["/var/lib/suppressd/data"]
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["suppressd", "healthcheck", "--addr", "http://127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["suppressd"]
CMD ["serve"]
