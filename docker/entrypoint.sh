#!/bin/sh
# Entrypoint of every aidetect image: prepare per-container state, then exec the command.
set -eu

# Prometheus multiprocess mode (aidetect/metrics.py): each container writes its samples to its
# own subdirectory of the shared PROMETHEUS_MULTIPROC_DIR, emptied at start so a restarted
# worker starts its counters from zero; the exporter (`aidetect metrics serve`) labels every
# subdirectory's series with its name. Directories of removed containers stay until the volume
# is cleaned (docs/metrics.md).
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    root="${PROMETHEUS_MULTIPROC_DIR%/}"
    # shellcheck disable=SC3028  # Docker sets HOSTNAME to the container's hostname
    dir="$root/${HOSTNAME:-$(hostname)}"
    mkdir -p "$dir"
    find "$dir" -maxdepth 1 -name '*.db' -type f -delete
    export PROMETHEUS_MULTIPROC_DIR="$dir"
fi

exec "$@"
