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
#
# The server listens on 0.0.0.0, so it refuses to start without authentication. Give it an
# auth file (mount it and set SUPPRESSD_AUTH_FILE=/etc/suppressd/auth.toml; see README,
# Security), or accept that every caller who reaches the port is trusted with
# SUPPRESSD_INSECURE_NO_AUTH=true. For TLS, mount the certificate and key and set
# SUPPRESSD_TLS_CERT and SUPPRESSD_TLS_KEY (and SUPPRESSD_TLS_CLIENT_CA for mTLS); the health
# check then needs SUPPRESSD_HEALTHCHECK_TLS_CA, and SUPPRESSD_HEALTHCHECK_TLS_SERVER_NAME when
# the certificate does not name 127.0.0.1 (health itself needs no credentials).
FROM debian:bookworm-slim
# The data directory exists in the image, owned by the user, so that a new volume mounted on it
# starts with that owner. The user is named by number: a name may not resolve on the host.
RUN groupadd --system --gid 10001 suppressd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/suppressd --create-home suppressd \
    && mkdir /var/lib/suppressd/data \
    && chown 10001:10001 /var/lib/suppressd/data
COPY --from=build /src/target/release/suppressd /usr/local/bin/suppressd
USER 10001:10001
ENV SUPPRESSD_LISTEN=0.0.0.0:50051 \
    SUPPRESSD_DATA_DIR=/var/lib/suppressd/data \
    SUPPRESSD_LOG_FORMAT=json
VOLUME ["/var/lib/suppressd/data"]
# gRPC; Prometheus metrics when SUPPRESSD_METRICS_LISTEN=0.0.0.0:9464 is set.
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["suppressd", "healthcheck", "--addr", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["suppressd"]
CMD ["serve"]
