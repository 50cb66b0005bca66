# perfscope image: the load generator and the simulator in one binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# `perfscope --version` names the commit: there is no .git in the build context, so
# pass it (docker build --build-arg PERFSCOPE_COMMIT=$(git rev-parse --short=12 HEAD)).
ARG PERFSCOPE_COMMIT=unknown
ENV PERFSCOPE_COMMIT=$PERFSCOPE_COMMIT
# The image can export spans over OTLP/gRPC as well as HTTP.
RUN cargo build --release --locked --features otlp-grpc --bin perfscope

FROM debian:bookworm-slim
# tini as PID 1: it forwards SIGTERM/SIGINT (perfscope drains and exits 143/130 on
# them) and reaps the child servers `--api local` starts.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/perfscope /usr/local/bin/perfscope
WORKDIR /data
ENTRYPOINT ["/usr/bin/tini", "--", "perfscope"]
CMD ["--help"]
