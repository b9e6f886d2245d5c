# PostgreSQL from Debian's packages, for sites that cannot pull postgres:17-bookworm. It keeps the
# official image's contract that docker-compose.yml relies on: POSTGRES_USER, POSTGRES_PASSWORD
# and POSTGRES_DB create the role and database on the first start, the data lives in
# /var/lib/postgresql/data, the command is `postgres [-c name=value ...]`, pg_isready answers.
#
#   docker build -f docker/offline/postgres.Dockerfile --build-arg BASE_IMAGE=aidetect-base:bookworm \
#       -t aidetect-postgres:15-bookworm docker/offline        # then POSTGRES_IMAGE=aidetect-postgres:15-bookworm
#
# Debian 12 packages PostgreSQL 15: a data directory is tied to its major version, so keep one
# POSTGRES_IMAGE per volume (docs/operations.md).

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG PG_MAJOR=15
# The official image's uid and gid (999), fixed before the package would pick some: volumes keep
# their owner across rebuilds. postgresql-common first, told not to create the package's own
# cluster: the entrypoint makes one. Versions are those of the base's Debian release.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/^#?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
ENV PG_MAJOR=${PG_MAJOR} \
    PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
USER 999:999
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres"]
