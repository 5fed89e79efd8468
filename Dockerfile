# hoop-broker in a small image: built with the workspace's own toolchain,
# run as a non-root user on a distroless base (no shell, no package manager).
#
#   docker build -t hoop-broker .
#   docker run --rm -p 4433:4433/udp -v /etc/hoop:/etc/hoop:ro hoop-broker serve --config /etc/hoop/broker.toml
#
# docs/operations.md has the rest (Compose, Kubernetes, keys, upgrades).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image is built from the versions the tests ran with.
# `hoop` comes along: its demo MCP server is the demo target (over stdio).
RUN cargo build --release --locked -p hoop-broker --bin hoop-broker -p hoop-cli --bin hoop \
 && cp target/release/hoop-broker target/release/hoop /

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /hoop-broker /hoop /usr/local/bin/
# QUIC for clients; the admin listener (/healthz, /readyz, /metrics).
EXPOSE 4433/udp 9478/tcp
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/hoop-broker"]
CMD ["serve", "--config", "/etc/hoop/broker.toml"]
