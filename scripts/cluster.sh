#!/usr/bin/env bash
# The cluster profile on this machine, everything on 127.0.0.1:
#   bash scripts/cluster.sh install   Debian postgresql-15 + redis-server (as root), the venv with [cluster]
#   bash scripts/cluster.sh up        Postgres, Redis (Celery broker), N Celery workers, daemon, webserver
#   bash scripts/cluster.sh status    which of them run (pid), and where to reach them
#   bash scripts/cluster.sh down      stop exactly what `up` started (by pid, process groups); nothing left
#   bash scripts/cluster.sh smoke     up if needed (fixture mirrors), backfill fixture series, compare golden
# Idempotent. Settings (environment): RANGEBAR_CLUSTER_DIR (state: data, logs, pids, env.sh; default
# .rangebar-cluster), RANGEBAR_CLUSTER_WORKERS (2), RANGEBAR_CLUSTER_PG_PORT (55432),
# RANGEBAR_CLUSTER_REDIS_PORT (56379), RANGEBAR_CLUSTER_WEB_PORT (3070), RANGEBAR_CLUSTER_QUEUES
# (dagster,rangebar_downloads: the Celery queues of the workers), RANGEBAR_PIPELINE_CONFIG
# (default deploy/cluster/pipeline.yaml). See docs/operations.md, "The cluster profile".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=${RANGEBAR_CLUSTER_DIR:-$REPO/.rangebar-cluster}
WORKERS=${RANGEBAR_CLUSTER_WORKERS:-2}
PG_PORT=${RANGEBAR_CLUSTER_PG_PORT:-55432}
REDIS_PORT=${RANGEBAR_CLUSTER_REDIS_PORT:-56379}
WEB_PORT=${RANGEBAR_CLUSTER_WEB_PORT:-3070}
QUEUES=${RANGEBAR_CLUSTER_QUEUES:-dagster,rangebar_downloads}  # Celery queues every worker listens on
PG_BIN=/usr/lib/postgresql/15/bin
PY=$REPO/.venv/bin
SHARED_DATA=$(cd "$REPO/.." && pwd)/shared/data
PIDS=$STATE/pids
LOGS=$STATE/logs

log() { echo "cluster: $*" >&2; }
# A process counts as alive unless it is gone or a zombie (exited, not yet reaped by init). Read from
# /proc (no procps needed): after the last ") " of /proc/PID/stat come state, ppid, pgid, ...
proc_fields() { local s; { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1; echo "${s##*) }"; }
running() { local f; f=$(proc_fields "$1") && [ "${f%% *}" != Z ]; }
group_running() {  # group_running PGID: a live process in that process group
    local d f state pgid
    for d in /proc/[0-9]*; do
        f=$(proc_fields "${d#/proc/}") || continue
        read -r state _ pgid _ <<<"$f"
        [ "$pgid" = "$1" ] && [ "$state" != Z ] && return 0
    done
    return 1
}
alive() { [ -f "$PIDS/$1.pid" ] && running "$(cat "$PIDS/$1.pid")"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

install() {
    if [ ! -x "$PG_BIN/initdb" ] || ! command -v redis-server >/dev/null; then
        [ "$(id -u)" = 0 ] || { log "need postgresql-15 and redis-server: run as root or install them"; exit 1; }
        log "installing postgresql-15 and redis-server (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 redis-server >/dev/null
    fi
    if ! "$PY/python" -c "import dagster_celery, dagster_postgres, dagster_k8s, rangebar_pipeline._core" 2>/dev/null; then
        bash scripts/bootstrap.sh
        log "installing the [cluster] extra"
        "$PY/python" -m pip install --quiet --disable-pip-version-check -e ".[test,cluster]"
    fi
}

write_env() {
    # Everything a process of the profile needs; `source $STATE/env.sh` to use the CLI on this cluster.
    local password mirror_binance mirror_exness
    password=$(cat "$(pg_dir)/password")
    mirror_binance=${RANGEBAR_BINANCE_BASE_URL:-}
    mirror_exness=${RANGEBAR_EXNESS_BASE_URL:-}
    cat >"$STATE/env.sh" <<EOF
export DAGSTER_HOME=$STATE/dagster_home
export RANGEBAR_EXECUTOR=celery
export RANGEBAR_CELERY_BROKER=redis://127.0.0.1:$REDIS_PORT/0
export RANGEBAR_CELERY_BACKEND=redis://127.0.0.1:$REDIS_PORT/1
export RANGEBAR_CELERY_VISIBILITY_TIMEOUT=${RANGEBAR_CELERY_VISIBILITY_TIMEOUT:-3600}
export RANGEBAR_PG_HOST=127.0.0.1 RANGEBAR_PG_PORT=$PG_PORT RANGEBAR_PG_USER=rangebar
export RANGEBAR_PG_PASSWORD=$password RANGEBAR_PG_DB=dagster
export RANGEBAR_CACHE_DIR=${RANGEBAR_CACHE_DIR:-$STATE/shared/cache}
export RANGEBAR_PIPELINE_DIR=${RANGEBAR_PIPELINE_DIR:-$STATE/shared/pipeline}
export RANGEBAR_PIPELINE_CONFIG=${RANGEBAR_PIPELINE_CONFIG:-$REPO/deploy/cluster/pipeline.yaml}
export RANGEBAR_MULTI_HOST=${RANGEBAR_MULTI_HOST:-0}
export RANGEBAR_CLUSTER_WEB_PORT=$WEB_PORT
EOF
    [ -n "${RANGEBAR_CLICKHOUSE_DSN:-}" ] && echo "export RANGEBAR_CLICKHOUSE_DSN='$RANGEBAR_CLICKHOUSE_DSN'" >>"$STATE/env.sh"
    [ -n "$mirror_binance" ] && echo "export RANGEBAR_BINANCE_BASE_URL=$mirror_binance" >>"$STATE/env.sh"
    [ -n "$mirror_exness" ] && echo "export RANGEBAR_EXNESS_BASE_URL=$mirror_exness" >>"$STATE/env.sh"
    chmod 600 "$STATE/env.sh"
}

pg_dir() {  # Postgres's files: under the state dir, unless the postgres user cannot reach it (e.g. /root)
    if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$STATE"; then
        echo "$STATE/pg"
    else
        echo "/var/lib/postgresql/rangebar-cluster-$(echo "$STATE" | md5sum | cut -c1-12)"
    fi
}

start_postgres() {
    local pg
    pg=$(pg_dir)
    echo "$pg" >"$STATE/pg.path"  # for tools and tests: where Postgres's data directory lives
    if [ ! -f "$pg/data/PG_VERSION" ]; then
        mkdir -p "$pg/data" "$pg/sock"
        [ -f "$pg/password" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pg/password")
        [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$pg"
        as_postgres "$PG_BIN/initdb" -D "$pg/data" -U rangebar --pwfile="$pg/password" \
            --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$LOGS/initdb.log"
    fi
    if [ -f "$pg/data/postmaster.pid" ] && running "$(head -1 "$pg/data/postmaster.pid")"; then
        return
    fi
    as_postgres "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -h 127.0.0.1 -k $pg/sock" start >/dev/null
    head -1 "$pg/data/postmaster.pid" >"$PIDS/postgres.pid"
    PGPASSWORD=$(cat "$pg/password") psql -h 127.0.0.1 -p "$PG_PORT" -U rangebar -d postgres -tAq \
        -c "SELECT 1 FROM pg_database WHERE datname='dagster'" | grep -q 1 ||
        PGPASSWORD=$(cat "$pg/password") psql -h 127.0.0.1 -p "$PG_PORT" -U rangebar -d postgres -q \
            -c "CREATE DATABASE dagster"
}

spawn() {  # spawn NAME CMD...: a new session (process group = pid), logs and pid under the state dir
    local name=$1
    shift
    if alive "$name"; then return; fi
    (set -a && . "$STATE/env.sh" && exec setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null) &
    echo $! >"$PIDS/$name.pid"
}

wait_for() {  # wait_for NAME SECONDS CMD...: until CMD succeeds, failing if NAME's process died
    local name=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        alive "$name" || { log "$name died; its log:"; tail -20 "$LOGS/$name.log" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { log "$name not ready after ${seconds}s (log: $LOGS/$name.log)"; exit 1; }
        sleep 1
    done
}

up() {
    install
    mkdir -p "$PIDS" "$LOGS" "$STATE/redis" "$STATE/dagster_home" "$STATE/shared"
    start_postgres
    # A running profile keeps its environment (restarting a stopped component reuses it).
    alive webserver && alive daemon || write_env
    cp deploy/cluster/dagster.yaml "$STATE/dagster_home/dagster.yaml"
    # The broker keeps its queues on disk (append-only file): a restart loses no queued task.
    spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
        --appendonly yes --appendfsync everysec --save "" --protected-mode yes
    wait_for redis 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
    # Create the instance's tables once, before several processes would race to, and set the pools.
    (set -a && . "$STATE/env.sh" && "$PY/dagster" instance migrate >"$LOGS/migrate.log" 2>&1 &&
        "$PY/dagster" instance concurrency set rangebar_bar_store 1 >/dev/null) ||
        { log "creating the instance failed:"; tail -5 "$LOGS/migrate.log" >&2; exit 1; }
    for i in $(seq 1 "$WORKERS"); do
        spawn "worker$i" "$PY/celery" -A rangebar_pipeline.cluster.celery_app worker -n "w$i@%h" \
            --concurrency 1 --prefetch-multiplier 1 -Q "$QUEUES" --loglevel INFO
    done
    spawn daemon "$PY/dagster-daemon" run -w "$REPO/workspace.yaml"
    spawn webserver "$PY/dagster-webserver" -h 127.0.0.1 -p "$WEB_PORT" -w "$REPO/workspace.yaml"
    for i in $(seq 1 "$WORKERS"); do
        wait_for "worker$i" 120 grep -q "ready\." "$LOGS/worker$i.log"
    done
    wait_for webserver 180 "$PY/python" -c \
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$WEB_PORT/server_info', timeout=5)"
    alive daemon || { log "the daemon died; its log:"; tail -20 "$LOGS/daemon.log" >&2; exit 1; }
    status
}

status() {
    local name any=0
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        if alive "$name"; then echo "$name: running (pid $(cat "$f"))"; any=1; else echo "$name: stopped"; fi
    done
    [ "$any" = 1 ] || { echo "cluster: not running ($STATE)"; return 0; }
    echo "UI:       http://127.0.0.1:$WEB_PORT"
    echo "Postgres: 127.0.0.1:$PG_PORT (user rangebar, password in $(pg_dir)/password), database dagster"
    echo "broker:   redis://127.0.0.1:$REDIS_PORT/0"
    echo "CLI:      source $STATE/env.sh && .venv/bin/dagster ..."
}

stop_group() {  # stop_group NAME: TERM the process group, then KILL after 20 s; forget the pid
    local name=$1 pid
    [ -f "$PIDS/$name.pid" ] || return 0
    pid=$(cat "$PIDS/$name.pid")
    if group_running "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do group_running "$pid" || break; sleep 0.5; done
        group_running "$pid" && kill -KILL -- "-$pid" 2>/dev/null
    fi
    rm -f "$PIDS/$name.pid"
}

down() {
    [ -d "$PIDS" ] || { echo "cluster: not running ($STATE)"; return 0; }
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        case $name in postgres | redis) ;; *) stop_group "$name" ;; esac
    done
    stop_group redis
    if [ -f "$PIDS/postgres.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$(pg_dir)/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
        local pid
        pid=$(cat "$PIDS/postgres.pid")
        running "$pid" && kill -KILL "$pid"
        rm -f "$PIDS/postgres.pid"
    fi
    echo "cluster: stopped ($STATE)"
}

smoke() {
    [ -d "$SHARED_DATA/binance_vision" ] || { log "$SHARED_DATA is missing: the smoke reads the fixtures"; exit 1; }
    export RANGEBAR_BINANCE_BASE_URL=${RANGEBAR_BINANCE_BASE_URL:-file://$SHARED_DATA/binance_vision}
    export RANGEBAR_EXNESS_BASE_URL=${RANGEBAR_EXNESS_BASE_URL:-file://$SHARED_DATA/exness}
    if [ -f "$STATE/env.sh" ] && alive webserver && ! grep -q "RANGEBAR_BINANCE_BASE_URL=" "$STATE/env.sh"; then
        log "the running cluster does not read a fixture mirror: run 'bash scripts/cluster.sh down' first"
        exit 1
    fi
    up >/dev/null
    (set -a && . "$STATE/env.sh" && "$PY/python" -m rangebar_pipeline.cluster.smoke \
        --port "$WEB_PORT" --golden "$SHARED_DATA/golden" "$@")
}

case ${1:-} in
install) install ;;
up) up ;;
down) down ;;
status) status ;;
smoke) shift && smoke "$@" ;;
*) echo "usage: $0 install|up|down|status|smoke [--series N]" >&2 && exit 2 ;;
esac
