#!/usr/bin/env bash
# The whole stack on this machine, with or without registry access to base images.
#
#   scripts/stack.sh up      engine, images, `compose up`, wait until every container is healthy
#   scripts/stack.sh smoke   up, score a URL list through the stack, check Flower and /metrics, down
#   scripts/stack.sh down    stop the stack and remove its volumes
#
# Base images: PYTHON_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE when set; when not, a Debian bookworm
# base made with debootstrap (aidetect-base:bookworm) and PostgreSQL and Redis built on it from
# Debian's packages (docker/offline/). Builder: BuildKit when `docker buildx` is there, else
# buildah (the images then go to the engine with `buildah push docker-daemon:`). Compose:
# `docker compose` when the plugin is there, else docker-compose 1.29. The containers share one
# internal network (docker/smoke/compose.smoke.yml): no route out of it, nothing published.
# One line per step with its time; the commands' output goes to $STACK_DIR/stack.log.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_DIR="${STACK_DIR:-$PWD/.stack}"
PROJECT="${STACK_PROJECT:-aidetect-stack}"
SMOKE_IMAGES="${SMOKE_IMAGES:-24}"
SCORE_TIMEOUT_S="${SCORE_TIMEOUT_S:-900}"
HEALTHY_TIMEOUT_S="${HEALTHY_TIMEOUT_S:-600}"
BASE_IMAGE="aidetect-base:bookworm"
SERVICES=(postgres redis migrate worker-cpu beat flower crawler metrics images)
LOG="$STACK_DIR/stack.log"
ENV_FILE="$STACK_DIR/stack.env"

mkdir -p "$STACK_DIR"
touch "$LOG"

step() {  # step "what" command...: one line with the time; the command's output in the log
    local what="$1"; shift
    printf 'stack: %s ... ' "$what"
    local start=$SECONDS
    echo "=== $what" >>"$LOG"
    if "$@" >>"$LOG" 2>&1; then
        echo "ok ($((SECONDS - start)) s)"
    else
        echo "FAILED ($((SECONDS - start)) s)"
        echo "stack: the last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }

# --- engine -----------------------------------------------------------------------------------
start_engine() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
    have dockerd || apt_install docker.io
    nohup dockerd >"$STACK_DIR/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "dockerd did not answer; see $STACK_DIR/dockerd.log"
    return 1
}

engine_versions() {  # "client X, dockerd Y" (none: not installed or not answering)
    local client server
    client="$(docker version --format '{{.Client.Version}}' 2>/dev/null || true)"
    server="$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
    echo "client ${client:-none}, dockerd ${server:-none}"
}

builder() { if docker buildx version >/dev/null 2>&1; then echo buildkit; else echo buildah; fi; }

compose() {
    local files=(-f docker-compose.yml -f docker/smoke/compose.smoke.yml -p "$PROJECT" --env-file "$ENV_FILE")
    if docker compose version >/dev/null 2>&1; then
        docker compose "${files[@]}" "$@"
    else
        docker-compose "${files[@]}" "$@"
    fi
}

compose_tool() { if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi; }

ensure_tools() {
    [ "$(builder)" = buildkit ] || have buildah || apt_install buildah
    docker compose version >/dev/null 2>&1 || have docker-compose || apt_install docker-compose
}

# --- base images ------------------------------------------------------------------------------
debian_mirror() {  # the first Debian mirror of this machine's apt sources
    local mirror
    mirror="$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -v security | sed -E 's/^URIs:\s*//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n 1)"
    echo "${mirror:-http://deb.debian.org/debian}"
}

make_debian_base() {  # a minimal bookworm root file system with python3 and venv, as an image
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    have debootstrap || apt_install debootstrap
    local root="$STACK_DIR/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$(debian_mirror)"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$BASE_IMAGE"
    rm -rf "$root"
}

# --- project images ---------------------------------------------------------------------------
fill_wheelhouse() {  # pip's find-links folder's wheels and the host's CA bundle into the context
    local links cert
    links="$(python3 -m pip config get global.find-links 2>/dev/null || echo "${PIP_FIND_LINKS:-}")"
    for folder in $links; do
        [ -d "$folder" ] || continue
        for wheel in "$folder"/*.whl; do
            [ -e "$wheel" ] && { ln -f "$wheel" docker/wheelhouse/ 2>/dev/null || cp "$wheel" docker/wheelhouse/; }
        done
    done
    cert="$(python3 -m pip config get global.cert 2>/dev/null || echo "${PIP_CERT:-}")"
    if [ -n "$cert" ] && [ -f "$cert" ]; then cp "$cert" docker/certs/host.crt; fi
    ls docker/wheelhouse docker/certs
}

build_image() {  # build_image TAG DOCKERFILE CONTEXT [build args...]
    local tag="$1" dockerfile="$2" context="$3"; shift 3
    if [ "$(builder)" = buildkit ]; then
        docker buildx build --load -t "$tag" -f "$dockerfile" "$@" "$context"
    else
        # docker format: OCI images drop HEALTHCHECK.
        buildah build --layers --pull=never --format docker -t "$tag" -f "$dockerfile" "$@" "$context"
        local built
        built="sha256:$(buildah inspect --type image --format '{{.FromImageID}}' "$tag")"
        if [ "$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null)" = "$built" ]; then
            echo "$tag: the engine has this build already"
        else
            buildah push "$tag" "docker-daemon:$tag"
        fi
    fi
}

base_for_buildah() {  # buildah reads its own storage: copy the base images there from the engine
    local image
    for image in "$@"; do
        buildah inspect --type image "$image" >/dev/null 2>&1 \
            || buildah pull "docker-daemon:$image" || buildah pull "$image"
    done
}

write_env() {  # the passwords stay readable by root alone (umask 077 for both writes)
    mkdir -p "$STACK_DIR/input"
    chmod 0755 "$STACK_DIR/input"  # read by the producer's uid 10001
    (umask 077; write_env_file)
}

write_env_file() {
    [ -f "$ENV_FILE" ] || printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\nFLOWER_BASIC_AUTH=smoke:%s\n' \
        "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" >"$ENV_FILE"
    {
        grep -E '^(POSTGRES_PASSWORD|REDIS_PASSWORD|FLOWER_BASIC_AUTH)=' "$ENV_FILE"
        echo "PYTHON_IMAGE=$PYTHON_IMAGE"
        echo "POSTGRES_IMAGE=$POSTGRES_IMAGE"
        echo "REDIS_IMAGE=$REDIS_IMAGE"
        echo "INPUT_DIR=$STACK_DIR/input"
        echo "SMOKE_IMAGES=$SMOKE_IMAGES"
        # The smoke run's images come from a container of the stack's own network.
        echo "AIDETECT_ALLOW_PRIVATE_NETWORKS=true"
        # Published ports stay off the host's own services (nothing is published on the internal network).
        echo "POSTGRES_PUBLISH_PORT=${STACK_POSTGRES_PORT:-25432}"
        echo "REDIS_PUBLISH_PORT=${STACK_REDIS_PORT:-26379}"
        echo "FLOWER_PORT=${STACK_FLOWER_PORT:-25555}"
        echo "METRICS_PORT=${STACK_METRICS_PORT:-29808}"
    } >"$ENV_FILE.new"
    chmod 0600 "$ENV_FILE.new"  # also when an older stack.env was world-readable
    mv "$ENV_FILE.new" "$ENV_FILE"
}

build_all() {
    local bases=()
    # The offline PostgreSQL and Redis images stand on the debootstrap base too.
    if [ -z "${PYTHON_IMAGE:-}" ] || [ -z "${POSTGRES_IMAGE:-}" ] || [ -z "${REDIS_IMAGE:-}" ]; then
        step "Debian bookworm base ($BASE_IMAGE, debootstrap from $(debian_mirror))" make_debian_base
        bases+=("$BASE_IMAGE")
    fi
    PYTHON_IMAGE="${PYTHON_IMAGE:-$BASE_IMAGE}"
    case " ${bases[*]} " in *" $PYTHON_IMAGE "*) ;; *) bases+=("$PYTHON_IMAGE") ;; esac
    if [ "$(builder)" = buildah ]; then
        step "base images into buildah's storage (${bases[*]})" base_for_buildah "${bases[@]}"
    fi
    if [ -z "${POSTGRES_IMAGE:-}" ]; then
        POSTGRES_IMAGE="aidetect-postgres:15-bookworm"
        step "image $POSTGRES_IMAGE (Debian packages)" build_image "$POSTGRES_IMAGE" \
            docker/offline/postgres.Dockerfile docker/offline --build-arg "BASE_IMAGE=$BASE_IMAGE"
    fi
    if [ -z "${REDIS_IMAGE:-}" ]; then
        REDIS_IMAGE="aidetect-redis:7.0-bookworm"
        step "image $REDIS_IMAGE (Debian packages)" build_image "$REDIS_IMAGE" \
            docker/offline/redis.Dockerfile docker/offline --build-arg "BASE_IMAGE=$BASE_IMAGE"
    fi
    step "wheelhouse (pip find-links) and CA bundle into the build context" fill_wheelhouse
    for target in light cpu; do
        step "image aidetect:latest-$target (on $PYTHON_IMAGE)" build_image "aidetect:latest-$target" \
            docker/Dockerfile . --target "$target" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
    done
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^aidetect' | sed 's/^/stack: size /'
}

# --- run --------------------------------------------------------------------------------------
container_state() {  # name, status, exit code, health (none: no healthcheck) of container $1
    docker inspect --format \
        '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"
}

wait_healthy() {  # every long-running container healthy, the one-shot ones (migrate) exited 0
    local deadline=$((SECONDS + HEALTHY_TIMEOUT_S)) pending name status code health
    while :; do
        pending=""
        for id in $(compose ps -q); do
            read -r name status code health <<<"$(container_state "$id")"
            if [ "$status" = exited ] && [ "$code" != 0 ]; then
                echo "$name exited with status $code"
                return 1
            fi
            if [ "$health" != healthy ] && [ "$status" != exited ]; then
                pending="$pending $name($status/$health)"
            fi
        done
        if [ -z "$pending" ]; then compose ps; return 0; fi
        echo "waiting for:$pending"
        if [ $SECONDS -ge $deadline ]; then compose ps; return 1; fi
        sleep 3
    done
}

up() {
    step "container engine ($(engine_versions))" start_engine
    step "build tools" ensure_tools
    echo "stack: $(engine_versions), builder $(builder), compose: $(compose_tool)"
    build_all
    write_env
    step "compose up (${SERVICES[*]})" compose up -d --no-build "${SERVICES[@]}"
    step "every container healthy" wait_healthy
}

sql() { compose exec -T postgres psql -U aidetect -d aidetect -At -F ' ' -c "$1"; }

wait_scored() {
    local deadline=$((SECONDS + SCORE_TIMEOUT_S)) finished
    while :; do
        finished="$(sql "SELECT count(*) FROM images WHERE status IN ('done', 'failed')")"
        echo "finished: $finished of $1"
        [ "$finished" -ge "$1" ] && return 0
        [ $SECONDS -ge $deadline ] && return 1
        sleep 3
    done
}

fetch_url_list() {
    compose exec -T images cat /tmp/smoke-images/urls.txt >"$STACK_DIR/input/urls.txt"
    chmod 0644 "$STACK_DIR/input/urls.txt"  # read by the producer's uid 10001
}

on_failure() {  # keep the containers' logs, then take the stack down (STACK_KEEP=1: leave it up)
    compose logs --no-color >"$STACK_DIR/compose.log" 2>&1 || true
    echo "stack: the containers' logs: $STACK_DIR/compose.log" >&2
    [ "${STACK_KEEP:-0}" = 1 ] || compose down -v --remove-orphans >>"$LOG" 2>&1 || true
}

smoke() {
    trap on_failure EXIT
    up
    local count
    step "URL list from the images container" fetch_url_list
    count="$(wc -l <"$STACK_DIR/input/urls.txt")"
    step "producer enqueues $count URLs" compose run --rm producer enqueue /input/urls.txt
    step "worker-cpu scores them (verdicts in PostgreSQL)" wait_scored "$count"
    echo "stack: verdict rows (url, label, p_ai, worker):"
    sql "SELECT i.url, v.label, round(v.p_ai::numeric, 3), v.worker FROM verdicts v
         JOIN images i ON i.id = v.image_id ORDER BY i.url" | sed 's/^/stack:   /'
    echo "stack: images by status: $(sql "SELECT status, count(*) FROM images GROUP BY status" | tr '\n' ' ')"
    local login
    login="$(grep '^FLOWER_BASIC_AUTH=' "$ENV_FILE" | cut -d= -f2-)"
    step "Flower: login required, worker-cpu listed" \
        compose exec -T images python /smoke/probe.py flower http://flower:5555 "$login" detect-cpu@
    step "metrics exporter serves /metrics" compose exec -T images python /smoke/probe.py metrics http://metrics:9808/metrics
    grep -E '^(flower|metrics|  aidetect_)' "$LOG" | tail -n 10 | sed 's/^/stack:   /'
    trap - EXIT
    down
}

down() {
    step "compose down -v" compose down -v --remove-orphans
}

case "${1:-}" in
    up) up ;;
    smoke) start=$SECONDS; smoke; echo "stack: smoke run passed in $((SECONDS - start)) s" ;;
    down) if [ -f "$ENV_FILE" ]; then down; else echo "stack: nothing to take down ($ENV_FILE missing)"; fi ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
