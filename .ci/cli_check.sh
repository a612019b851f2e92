#!/usr/bin/env bash
# CI (.ci/run, block "cli"): `suppressd check` end to end on a CSV of $1 contacts (default
# 200,000) against a real server where every tenth is suppressed (examples/cli_screen_data.rs):
# one verdict row per contact in input order, exactly the suppressed tenth blocked, peak memory
# bounded by the in-flight window (not the file); then `export` lists exactly those addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-200000}
max_rss_kb=${CLI_MAX_RSS_KB:-64000}

cargo build --locked --quiet --bin suppressd --example cli_screen_data
target=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)
cp "$target/suppressd" "$target/examples/cli_screen_data" "$work/"

server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$work/suppressd" --log-format text serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    >"$work/server.log" 2>&1 &
server=$!
addr=""
for _ in $(seq 1 100); do
    addr=$(grep -o 'store open addr=[0-9.:]*' "$work/server.log" | head -n 1 | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start"; cat "$work/server.log"; exit 1; }

"$work/cli_screen_data" "$addr" "$rows" "$work/contacts.csv"

/usr/bin/time -v "$work/suppressd" check "$work/contacts.csv" --addr "$addr" \
    --out "$work/verdicts.csv" 2>"$work/check.err"
grep -v '^\s' "$work/check.err" | grep -v 'Command being timed' || true
rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/check.err")
echo "check: peak RSS ${rss} KiB (limit ${max_rss_kb})"

# Header, then row i is contact i; every tenth is block-suppressed, every other one allowed.
awk -F, -v rows="$rows" '
    NR == 1 { if ($0 != "id,address,decision,reason,since,suggestion") { print "header: " $0; bad = 1 }; next }
    {
        i = NR - 2
        want = (i % 10 == 0) ? "block-suppressed" : "allow"
        if ($1 != i || $2 != "contact" i "@example.com" || $3 != want) { if (errors++ < 5) print "row " i ": " $0; bad = 1 }
        if ($3 == "block-suppressed") blocked++
    }
    END {
        if (NR - 1 != rows) { print "rows: " NR - 1 " of " rows; bad = 1 }
        printf "verdicts: %d rows, %d blocked\n", NR - 1, blocked
        exit bad
    }' "$work/verdicts.csv"
[ "$rss" -le "$max_rss_kb" ] || { echo "check used ${rss} KiB, more than ${max_rss_kb}"; exit 1; }

exported=$("$work/suppressd" export --addr "$addr" | tail -n +2 | wc -l)
[ "$exported" -eq $(((rows + 9) / 10)) ] || { echo "export: $exported suppressions"; exit 1; }
echo "export: $exported suppressions"
