# syntax=docker/dockerfile:1
#
# Vestibule container image.
#
#   docker build -t vestibule .
#   docker run -d --name vestibule -p 8443:8443 \
#     -v /srv/vestibule/etc:/etc/vestibule \
#     -v vestibule-data:/var/lib/vestibule \
#     vestibule
#
# /etc/vestibule holds vestibule.toml, users.toml, the encryption key and the TLS
# certificate and key; /var/lib/vestibule holds the database (storage.path). Use absolute
# paths in /etc/vestibule/vestibule.toml. Admin commands run in the same container:
#   docker exec -it vestibule vestibule users unlock dr.grey

# ---- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock askama.toml ./
COPY src ./src
COPY assets ./assets
COPY tests ./tests
# The cache mounts keep the crate registry and compiled dependencies between builds;
# the binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/vestibule /usr/local/bin/vestibule

# ---- run -----------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: roots for an https upstream; curl: the HEALTHCHECK below.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so bind-mounted directories can be prepared on the host
# (chown -R 10001:10001 /srv/vestibule/etc).
RUN groupadd --system --gid 10001 vestibule \
    && useradd --system --uid 10001 --gid vestibule --home-dir /var/lib/vestibule \
       --no-create-home --shell /usr/sbin/nologin vestibule \
    && mkdir -p /etc/vestibule /var/lib/vestibule \
    && chown vestibule:vestibule /etc/vestibule /var/lib/vestibule \
    && chmod 0750 /etc/vestibule /var/lib/vestibule
COPY --from=builder /usr/local/bin/vestibule /usr/local/bin/vestibule

# The vestibule user, by number so that runtimes can verify it is not root.
USER 10001:10001
# Relative paths in the configuration resolve here (the default storage.path "data/"
# becomes /var/lib/vestibule/data, inside the data volume).
WORKDIR /var/lib/vestibule
ENV VESTIBULE_CONFIG=/etc/vestibule/vestibule.toml
VOLUME ["/etc/vestibule", "/var/lib/vestibule"]
EXPOSE 8443
# Needs TLS on server.listen port 8443; change it if you run plain HTTP behind a load
# balancer or listen elsewhere. /_vestibule/health is exempt from the hostnames check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-kfsS", "-o", "/dev/null", "https://127.0.0.1:8443/_vestibule/health"]
ENTRYPOINT ["vestibule"]
CMD ["serve"]
