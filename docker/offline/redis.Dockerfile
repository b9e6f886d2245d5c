# Redis from Debian's packages, for sites that cannot pull redis:7.4-bookworm. Like the official
# image: the command is `redis-server [options]`, the working directory (AOF, RDB) is /data,
# redis-cli answers the healthcheck. Debian 12 packages Redis 7.0.
#
#   docker build -f docker/offline/redis.Dockerfile --build-arg BASE_IMAGE=aidetect-base:bookworm \
#       -t aidetect-redis:7.0-bookworm docker/offline          # then REDIS_IMAGE=aidetect-redis:7.0-bookworm

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# The official image's uid and gid (999), fixed before the package would pick some: volumes keep
# their owner across rebuilds. Versions are those of the base's Debian release.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
USER 999:999
EXPOSE 6379
CMD ["redis-server"]
