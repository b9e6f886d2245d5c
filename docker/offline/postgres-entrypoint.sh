#!/bin/sh
# Entrypoint of docker/offline/postgres.Dockerfile: on the first start initialise PGDATA with the
# role POSTGRES_USER (password POSTGRES_PASSWORD, scram-sha-256 over TCP) and the database
# POSTGRES_DB, then run `postgres` with the given arguments, listening on every address.
set -eu

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
shift
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres-entrypoint: set POSTGRES_PASSWORD" >&2
        exit 1
    fi
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$password_file" --encoding=UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
        psql --quiet --set=ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
            --command="CREATE DATABASE \"$database\""
        pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
    fi
    echo "postgres-entrypoint: initialised $PGDATA (role $user, database $database)"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
