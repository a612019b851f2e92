#!/usr/bin/env bash
# `suppressd check` beside the bench harness's own CheckImport screen, in one window, on one
# server (see bench/README.md, "The command line: check"):
#
#   bench/cli_check.sh            1,000,000 contacts, 3 alternating rounds
#   bench/cli_check.sh 200000 2   another size and number of rounds
#
# It builds the release binaries, starts suppressd (redb) on loopback, loads the harness's data
# set (N = 1,000,000 suppressed) and the CLI's CSV (a tenth of its contacts hard-bounced), then
# alternates the harness's one-stream packed screen at batch 1,000 (`--phases import-packed`)
# with `suppressd check` on the CSV, so that both meet the same load. It prints each rate, the
# CLI's peak RSS, and the ratio of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
ROUNDS="${2:-3}"
ENGINE="${SUPPRESSD_ENGINE:-redb}"
cargo build --release --quiet --bin suppressd --example cli_screen_data -p suppressd -p suppressd-bench
T="${CARGO_TARGET_DIR:-target}/release"
WORK="$(mktemp -d)"
SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT="$("$T/suppressd-bench" free-port)"
"$T/suppressd" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --engine "$ENGINE" 2>"$WORK/server.log" &
SPID=$!
until "$T/suppressd" healthcheck --addr "127.0.0.1:$PORT" >/dev/null 2>&1; do sleep 0.2; done
echo "== load (harness data set, N=1,000,000; CLI CSV of $ROWS rows)"
"$T/suppressd-bench" run --addr "http://127.0.0.1:$PORT" --phases load --n 1000000 --contacts "$ROWS" --out "$WORK/load.json" >/dev/null
"$T/examples/cli_screen_data" "127.0.0.1:$PORT" "$ROWS" "$WORK/contacts.csv"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
harness=(); cli=()
for r in $(seq 1 "$ROUNDS"); do
    "$T/suppressd-bench" run --addr "http://127.0.0.1:$PORT" --phases import-packed --n 1000000 --contacts "$ROWS" --out "$WORK/h$r.json" >/dev/null
    h=$(python3 -c "import json,sys; m=json.load(open('$WORK/h$r.json')); v=[x for k,x in m.get('metrics',m).items() if k.startswith('import.packed.b1000.round') and k.endswith('.per_s')]; print(int(max(v)))")
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/rss" "$T/suppressd" check "$WORK/contacts.csv" --column email --id-column id \
        --addr "127.0.0.1:$PORT" --out "$WORK/verdicts.csv" >/dev/null 2>"$WORK/check.log"
    end=$(date +%s.%N)
    c=$(python3 -c "print(int($ROWS/($end-$start)))")
    harness+=("$h"); cli+=("$c")
    echo "round $r: harness ${h}/s, check ${c}/s, check peak RSS $(( $(cat "$WORK/rss") / 1024 )) MiB, load $(cut -d' ' -f1 /proc/loadavg)"
done
python3 - "${harness[*]}" "${cli[*]}" <<'PY'
import statistics, sys
h = [int(x) for x in sys.argv[1].split()]; c = [int(x) for x in sys.argv[2].split()]
mh, mc = statistics.median(h), statistics.median(c)
print(f"median: harness {mh:,.0f}/s, check {mc:,.0f}/s, ratio {mc/mh:.2f}")
PY
