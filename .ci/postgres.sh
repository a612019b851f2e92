#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: installs Debian's postgresql package when
# initdb/pg_ctl are missing, creates a cluster in a temporary directory on a free port, starts
# it and prints the URL the tests read:
#
#   eval "$(.ci/postgres.sh start)"   # exports SUPPRESSD_TEST_DATABASE_URL and PG_TEST_DIR
#   .ci/postgres.sh stop "$PG_TEST_DIR"
#
# For fault tests on a cluster of their own (`start` keeps the cluster's server options in
# DIR/options, so that it comes back on the same port):
#
#   .ci/postgres.sh kill DIR      # crashes it: `pg_ctl stop -m immediate`, no clean shutdown
#   .ci/postgres.sh restart DIR   # starts it again on the same port and options (crash recovery)
#
# As root the cluster belongs to the `postgres` user (initdb refuses to run as root).
set -euo pipefail

find_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$found" ]; then
        echo "$found"
    fi
}

ensure_installed() {
    if [ -z "$(find_bin initdb)" ] || [ -z "$(find_bin pg_ctl)" ]; then
        echo "postgres.sh: installing Debian's postgresql package" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    fi
}

# Runs a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A port nothing listens on, from a range above the usual ones.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "postgres.sh: no free port found" >&2
    exit 1
}

start() {
    ensure_installed
    local initdb pg_ctl dir port
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    dir=$(mktemp -d /tmp/suppressd-pg.XXXXXX)
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        chown postgres "$dir"
    fi
    port=$(free_port)
    as_owner "$initdb" -D "$dir/data" -U suppressd --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    # Throwaway data: no fsync (a crash of the server alone loses nothing the kernel holds);
    # enough connections for the tests' pools.
    echo "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=300" >"$dir/options"
    run_server "$dir"
    echo "export SUPPRESSD_TEST_DATABASE_URL='postgres://suppressd@127.0.0.1:$port/postgres'"
    echo "export PG_TEST_DIR='$dir'"
}

# Starts the cluster in DIR with the options `start` kept.
run_server() {
    local dir=$1
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$(cat "$dir/options")" start >&2 || { cat "$dir/server.log" >&2; exit 1; }
}

kill_server() {
    local dir=${1:?usage: postgres.sh kill DIR}
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m immediate -w stop >&2
}

restart() {
    local dir=${1:?usage: postgres.sh restart DIR}
    run_server "$dir"
}

stop() {
    local dir=${1:?usage: postgres.sh stop DIR}
    local pg_ctl
    pg_ctl=$(find_bin pg_ctl)
    as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-start}" in
start) start ;;
stop) shift; stop "$@" ;;
kill) shift; kill_server "$@" ;;
restart) shift; restart "$@" ;;
*) echo "usage: $0 start | stop DIR | kill DIR | restart DIR" >&2; exit 2 ;;
esac
