# perfscope image: the load generator and the simulator in one binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The image can export spans over OTLP/gRPC as well as HTTP.
RUN cargo build --release --locked --features otlp-grpc --bin perfscope

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/perfscope /usr/local/bin/perfscope
WORKDIR /data
ENTRYPOINT ["perfscope"]
CMD ["--help"]
