#!/usr/bin/env bash
# The suppressd benchmark, end to end, in one command (see bench/README.md):
#
#   bench/run.sh              N = 1,000,000 suppressed addresses, 1M-contact import, 1M-event ingest
#   bench/run.sh 2000000      another N
#   bench/run.sh --quick      smoke run: N = 100,000, 100,000 contacts and events, 2 s per loop
#   bench/run.sh --big        also the 10M-address phase (storage, RSS, start-up); slow
#   bench/run.sh --big-only   only the 10M-address phase
#   bench/run.sh --engine redb  the server on another storage engine (default sled)
#   bench/run.sh --engine postgres  the server on a database of the throw-away PostgreSQL cluster,
#                             then a second replica on the same database (the replicas phase)
#   bench/run.sh --startup    also time a restart on the main data directory (after its phases)
#
# It builds the release binaries, installs PostgreSQL with apt-get if it is missing, starts a
# throw-away PostgreSQL cluster, the bare tonic echo baseline and suppressd on loopback, runs
# the measurements, prints one table and writes it to bench/results/<timestamp>.json. Last, the
# tls phase restarts suppressd on the same data directory with TLS and a bearer token
# (--tls-cert, --tls-key, --auth-file) beside the echo over TLS. Every process it started is
# stopped and every temporary directory removed on exit (BENCH_KEEP=1 keeps the work directory
# for inspection).
#
# Environment: CARGO_TARGET_DIR (default target/), BENCH_PREBUILT (a directory holding suppressd and
# suppressd-bench built earlier: no build), BENCH_BIG_N (default 10,000,000),
# BENCH_SECS (seconds per closed loop), BENCH_CONTACTS, BENCH_EVENTS, BENCH_PHASES (phases of
# the main run, comma-separated; PostgreSQL runs only with pgload or --engine postgres, the echo
# only with status, import, ingest, replicas or tls; BENCH_PHASES=load,tls runs only the TLS
# comparison; replicas runs only with --engine postgres).
set -euo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }

N=""
BIG=0
MAIN=1
QUICK=0
ENGINE="${SUPPRESSD_ENGINE:-sled}"
STARTUP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --big) BIG=1 ;;
        --big-only) BIG=1; MAIN=0 ;;
        --quick) QUICK=1 ;;
        --n) shift; N="$1" ;;
        --engine) shift; ENGINE="$1" ;;
        --startup) STARTUP=1 ;;
        -h | --help) usage; exit 0 ;;
        [0-9]*) N="$1" ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
N="${N//[,_]/}"
if [ "$QUICK" = 1 ]; then
    N="${N:-100000}"
    CONTACTS="${BENCH_CONTACTS:-100000}"
    EVENTS="${BENCH_EVENTS:-100000}"
    SECS="${BENCH_SECS:-2}"
    MODE="quick"
else
    N="${N:-1000000}"
    CONTACTS="${BENCH_CONTACTS:-1000000}"
    EVENTS="${BENCH_EVENTS:-1000000}"
    SECS="${BENCH_SECS:-5}"
    MODE="full"
fi
BIG_N="${BENCH_BIG_N:-10000000}"
case "$ENGINE" in sled | redb | postgres) ;; *) echo "run.sh: unknown engine $ENGINE (sled, redb or postgres)" >&2; exit 2 ;; esac
# Every suppressd this script starts, directly or through the harness, uses this engine.
export SUPPRESSD_ENGINE="$ENGINE"
PHASES="${BENCH_PHASES:-}"
has_phase() { [ -z "$PHASES" ] || [[ ",$PHASES," == *",$1,"* ]]; }
[ "$BIG" = 1 ] && MODE="$MODE+big"
[ "$MAIN" = 0 ] && MODE="big only"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
UPTIME_START="$(uptime)"
echo "== suppressd bench ($MODE, N=$N, engine $ENGINE) at $STARTED; load: $UPTIME_START"

# The revision that was built (others may commit while the run goes on).
GIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || GIT="$GIT (with uncommitted changes)"
if [ -n "${BENCH_PREBUILT:-}" ]; then
    # Binaries built earlier (copied aside to compare two builds): no build, and the revision
    # above is the work tree's, not necessarily theirs.
    echo "== prebuilt binaries from $BENCH_PREBUILT (no build)"
    BIN="$BENCH_PREBUILT/suppressd"
    BENCH="$BENCH_PREBUILT/suppressd-bench"
    GIT="binaries of $BENCH_PREBUILT; work tree $GIT"
else
    echo "== build (cargo build --release)"
    cargo build --release -p suppressd -p suppressd-bench
    BIN="$TARGET/release/suppressd"
    BENCH="$TARGET/release/suppressd-bench"
fi

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN="$(pg_bindir)"
# PostgreSQL runs for the baselines (pgload) and, with --engine postgres, as suppressd's store.
NEED_PG=0
{ [ "$MAIN" = 1 ] && has_phase pgload; } && NEED_PG=1
[ "$ENGINE" = postgres ] && NEED_PG=1
if [ "$NEED_PG" = 1 ] && { [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; }; then
    echo "== installing PostgreSQL (apt-get)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql
    PGBIN="$(pg_bindir)"
fi
# initdb refuses to run as root: as root, the cluster belongs to the postgres user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

WORK="$(mktemp -d /tmp/suppressd-bench.XXXXXX)"
chmod 755 "$WORK"
SPID=""
SPID2=""
EPID=""
PG_UP=0

stop_pid() { # pid: SIGTERM, then wait for it
    local pid="$1"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_pg() {
    if [ "$PG_UP" = 1 ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true
        PG_UP=0
    fi
}
cleanup() {
    stop_pid "$SPID"
    stop_pid "$SPID2"
    stop_pid "$EPID"
    stop_pg
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts suppressd on a free port and waits for health SERVING; sets LPID and LPORT. With
# --engine postgres the data directory is unused: the store is $SUPPRESSD_DATABASE_URL.
launch_suppressd() { # data-dir log
    LPORT="$("$BENCH" free-port)"
    "$BIN" serve --listen "127.0.0.1:$LPORT" --data-dir "$1" >"$2" 2>&1 &
    LPID=$!
    local where="data in $1"
    [ "$ENGINE" = postgres ] && where="database ${SUPPRESSD_DATABASE_URL##*/}"
    for _ in $(seq 1 1200); do
        if "$BIN" healthcheck --addr "http://127.0.0.1:$LPORT" >/dev/null 2>&1; then
            echo "suppressd (pid $LPID) SERVING on 127.0.0.1:$LPORT, $where"
            return 0
        fi
        kill -0 "$LPID" 2>/dev/null || { cat "$2" >&2; echo "suppressd exited" >&2; exit 1; }
        sleep 0.1
    done
    echo "suppressd did not answer SERVING within 120 s" >&2
    exit 1
}
start_suppressd() { # data-dir log
    launch_suppressd "$1" "$2"
    SPID="$LPID"
    SPORT="$LPORT"
}

# What tells the harness where the server keeps its data: its data directory, or with
# --engine postgres its database (for the database's size instead of the directory's).
server_store_args() { # data-dir
    if [ "$ENGINE" = postgres ]; then
        echo "--server-db"
        echo "$SUPPRESSD_DATABASE_URL"
    else
        echo "--data-dir"
        echo "$1"
    fi
}

# A database of the cluster for suppressd (--engine postgres), apart from the baseline's tables.
create_database() { # name
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U bench "$1"
    export SUPPRESSD_DATABASE_URL="postgres://bench@127.0.0.1:$PGPORT/$1"
}

# The tls phase's second half: suppressd on the main data directory (the plaintext server is
# stopped: one process owns a data directory) with --tls-cert, --tls-key and --auth-file, the
# echo over TLS, and `suppressd-bench run --phases tls` against both. Returns non-zero with
# TLS_FAILED set, and stops what it started, instead of failing the whole run: a server that
# refuses the flags exits at once, one that does not answer over TLS is given up after 120 s.
TLS_FAILED=""
run_tls() {
    local dir="$WORK/tls" log="$WORK/suppressd-tls.log" rc=0
    "$BENCH" tls-setup --dir "$dir" || { TLS_FAILED="tls-setup failed"; return 1; }
    SPORT="$("$BENCH" free-port)"
    "$BIN" serve --listen "127.0.0.1:$SPORT" --data-dir "$WORK/data" \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
        --auth-file "$dir/auth.toml" >"$log" 2>&1 &
    SPID=$!
    local up=0
    for _ in $(seq 1 1200); do
        if "$BENCH" serving --addr "https://127.0.0.1:$SPORT" --tls-ca "$dir/ca.pem"; then
            up=1
            break
        fi
        if ! kill -0 "$SPID" 2>/dev/null; then
            wait "$SPID" 2>/dev/null || rc=$?
            SPID=""
            tail -n 20 "$log" >&2
            TLS_FAILED="suppressd exited (status $rc) when started with --tls-cert, --tls-key and --auth-file: does this build have them? (log above, $log)"
            return 1
        fi
        sleep 0.1
    done
    if [ "$up" = 0 ]; then
        tail -n 20 "$log" >&2
        stop_pid "$SPID"
        SPID=""
        TLS_FAILED="suppressd started with --tls-cert, --tls-key and --auth-file did not answer health SERVING over TLS within 120 s (log above, $log)"
        return 1
    fi
    local where="data in $WORK/data"
    [ "$ENGINE" = postgres ] && where="database ${SUPPRESSD_DATABASE_URL##*/}"
    echo "suppressd (pid $SPID) SERVING over TLS on 127.0.0.1:$SPORT, $where"
    # Status lookups read the store until the known-address index is loaded in the background:
    # measure once it is, as the plaintext server was (the embedded engines' index).
    if [ "$ENGINE" != postgres ]; then
        for _ in $(seq 1 1200); do
            grep -q 'known-address index loaded' "$log" && break
            sleep 0.1
        done
        grep -q 'known-address index loaded' "$log" ||
            echo "warning: no 'known-address index loaded' in $log after 120 s; measuring anyway" >&2
    fi
    EPORT="$("$BENCH" free-port)"
    "$BENCH" echo-server --listen "127.0.0.1:$EPORT" \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" 2>"$WORK/echo-tls.log" &
    EPID=$!
    "$BENCH" run \
        --addr "https://127.0.0.1:$SPORT" \
        --echo-addr "https://127.0.0.1:$EPORT" \
        --tls-ca "$dir/ca.pem" \
        --token-file "$dir/token" \
        --phases tls \
        --server-pid "$SPID" \
        --data-dir "$WORK/data" \
        --n "$N" \
        --contacts "$CONTACTS" \
        --ingest-events "$EVENTS" \
        --secs "$SECS" \
        --out "$WORK/tls.json" || rc=$?
    stop_pid "$SPID"
    SPID=""
    stop_pid "$EPID"
    EPID=""
    if [ "$rc" != 0 ]; then
        TLS_FAILED="suppressd-bench run --phases tls over TLS failed (status $rc; see above)"
        return 1
    fi
}

start_pg() {
    echo "== PostgreSQL"
    PGPORT="$("$BENCH" free-port)"
    mkdir -p "$WORK/pg"
    chown postgres: "$WORK/pg" 2>/dev/null || true
    as_pg "$PGBIN/initdb" -D "$WORK/pg" -U bench --auth=trust -E UTF8 --locale=C >"$WORK/initdb.log"
    # fsync and synchronous commit on: a committed insert is durable, as a suppressd write is.
    # The rest lets PostgreSQL do its best: the data set in shared buffers, no checkpoint and no
    # autovacuum in the middle of a measurement (the harness vacuums after loading).
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w start -o \
        "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
         -c shared_buffers=1GB -c max_connections=300 -c autovacuum=off \
         -c max_wal_size=16GB -c checkpoint_timeout=1h" >/dev/null
    PG_UP=1
    PG_DSN="host=127.0.0.1 port=$PGPORT user=bench dbname=postgres"
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
}

if [ "$NEED_PG" = 1 ]; then
    start_pg
fi
if [ "$ENGINE" = postgres ] && [ "$MAIN" = 1 ]; then
    create_database suppressd
fi

INPUTS=()
if [ "$MAIN" = 1 ]; then
    PG_ARGS=()
    ECHO_ARGS=()
    if has_phase pgload; then
        PG_ARGS=(--pg "$PG_DSN")
    fi
    if has_phase status || has_phase import || has_phase ingest || has_phase tls ||
        { [ "$ENGINE" = postgres ] && has_phase replicas; }; then
        EPORT="$("$BENCH" free-port)"
        "$BENCH" echo-server --listen "127.0.0.1:$EPORT" 2>"$WORK/echo.log" &
        EPID=$!
        ECHO_ARGS=(--echo-addr "http://127.0.0.1:$EPORT")
    fi

    start_suppressd "$WORK/data" "$WORK/suppressd.log"
    mapfile -t STORE_ARGS < <(server_store_args "$WORK/data")
    # The measurements, with the running suppressd and the baselines: the phases given (all
    # when empty) less those of `except`.
    measure() { # out phases except
        local out="$1" phases="$2" except="$3"
        "$BENCH" run \
            --addr "http://127.0.0.1:$SPORT" \
            "${ECHO_ARGS[@]}" \
            "${PG_ARGS[@]}" \
            ${phases:+--phases "$phases"} \
            --except "$except" \
            --server-pid "$SPID" \
            "${STORE_ARGS[@]}" \
            --n "$N" \
            --contacts "$CONTACTS" \
            --ingest-events "$EVENTS" \
            --secs "$SECS" \
            --out "$out"
    }

    echo "== measurements (N=$N, $CONTACTS contacts, $EVENTS events, ${SECS}s loops)"
    if [ "$ENGINE" = postgres ]; then
        # One replica first; then a second replica on the same database for the replicas
        # phase only (it would otherwise take its share of the cores during the one-replica
        # figures); then, on one replica again, the tls phase's plaintext reference, right
        # before the restart with TLS as on the other engines.
        measure "$WORK/main.json" "$PHASES" replicas,tls
        INPUTS+=(--in "$WORK/main.json")
        if has_phase replicas; then
            echo "== replicas: a second suppressd on the same database, the load split across both"
            launch_suppressd "$WORK/data2" "$WORK/suppressd-2.log"
            SPID2="$LPID"
            "$BENCH" run \
                --addr "http://127.0.0.1:$SPORT" \
                --replica-addr "http://127.0.0.1:$LPORT" \
                --replica-pid "$SPID2" \
                "${ECHO_ARGS[@]}" \
                --phases replicas \
                --server-pid "$SPID" \
                --n "$N" \
                --contacts "$CONTACTS" \
                --ingest-events "$EVENTS" \
                --secs "$SECS" \
                --out "$WORK/replicas.json"
            stop_pid "$SPID2"
            SPID2=""
            INPUTS+=(--in "$WORK/replicas.json")
        fi
        if has_phase tls; then
            measure "$WORK/tls-ref.json" tls ""
            INPUTS+=(--in "$WORK/tls-ref.json")
        fi
    else
        measure "$WORK/main.json" "$PHASES" ""
        INPUTS+=(--in "$WORK/main.json")
    fi
    stop_pid "$SPID"
    SPID=""
    stop_pid "$EPID"
    EPID=""
    # Nothing else runs during the big phase (but the database of --engine postgres).
    [ "$ENGINE" = postgres ] || stop_pg
    if [ "$STARTUP" = 1 ]; then
        echo "== start-up on the main data directory (database with --engine postgres)"
        "$BENCH" startup \
            --suppressd "$BIN" \
            --data-dir "$WORK/data" \
            --n "$N" \
            --contacts 0 \
            --prefix "" \
            --log "$WORK/suppressd-startup-main.log" \
            --out "$WORK/startup-main.json"
        INPUTS+=(--in "$WORK/startup-main.json")
    fi
    if has_phase tls; then
        echo "== tls: suppressd restarted on the same data directory with TLS and a bearer token"
        if run_tls; then
            INPUTS+=(--in "$WORK/tls.json")
        else
            TLS_FAILED="${TLS_FAILED:-the tls phase failed}"
            echo "run.sh: tls phase FAILED: $TLS_FAILED" >&2
        fi
    fi
    rm -rf "$WORK/data"
fi

if [ "$BIG" = 1 ]; then
    echo "== big phase: $BIG_N addresses"
    # With --engine postgres, a database of its own (the main one keeps the main data set).
    if [ "$ENGINE" = postgres ]; then
        create_database suppressd_big
    fi
    start_suppressd "$WORK/big" "$WORK/suppressd-big.log"
    mapfile -t STORE_ARGS < <(server_store_args "$WORK/big")
    "$BENCH" run \
        --addr "http://127.0.0.1:$SPORT" \
        --server-pid "$SPID" \
        "${STORE_ARGS[@]}" \
        --n "$BIG_N" \
        --phases load,storage \
        --prefix big. \
        --out "$WORK/big.json"
    stop_pid "$SPID"
    SPID=""
    echo "== start-up on the $BIG_N-address data directory"
    "$BENCH" startup \
        --suppressd "$BIN" \
        --data-dir "$WORK/big" \
        --n "$BIG_N" \
        --contacts "$CONTACTS" \
        --log "$WORK/suppressd-startup.log" \
        --out "$WORK/startup.json"
    INPUTS+=(--in "$WORK/big.json" --in "$WORK/startup.json")
fi

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ).json"
echo
"$BENCH" report "${INPUTS[@]}" \
    --note "started=$STARTED" \
    --note "engine=$ENGINE" \
    --note "mode=$MODE${PHASES:+, phases $PHASES}, N=$([ "$MAIN" = 1 ] && echo "$N" || echo 'not run'), big N=$([ "$BIG" = 1 ] && echo "$BIG_N" || echo 'not run')" \
    --note "machine=$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); client and servers share these cores" \
    --note "git=$GIT" \
    ${TLS_FAILED:+--note "tls=FAILED: $TLS_FAILED"} \
    --note "load.start=$UPTIME_START" \
    --note "load.end=$(uptime)" \
    --out "$OUT"
if [ -n "$TLS_FAILED" ]; then
    echo "run.sh: the tls phase failed: $TLS_FAILED" >&2
    exit 1
fi
