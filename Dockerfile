# stagehand: a multi-stage build of the `stagehand` binary into a slim, non-root image.
# Configure it with STAGEHAND_* variables or a TOML file (STAGEHAND_CONFIG); files live in /data.
# The build command below is the one .ci/run runs, so CI proves it builds (no image registry is
# reachable where this project is developed, so the image itself is not built there).

FROM rust:1.95-slim-bookworm AS build
# libwebp (C) and meshoptimizer (C++) are compiled from source by their crates.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin stagehand

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --no-create-home stagehand \
 && mkdir -p /data \
 && chown stagehand:stagehand /data
COPY --from=build /src/target/release/stagehand /usr/local/bin/stagehand
USER stagehand
WORKDIR /data
VOLUME ["/data"]
ENV STAGEHAND_HTTP_BIND=0.0.0.0:8080 \
    STAGEHAND_STORAGE_PATH=/data \
    STAGEHAND_LOG_FORMAT=json
EXPOSE 8080
# /health answers without a token.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["stagehand"]
CMD ["serve"]
