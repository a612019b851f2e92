#!/usr/bin/env bash
# Scrapes a real server (CI: .ci/run, block "deploy"): starts `suppressd serve` on loopback with
# an auth file and a metrics port, sends it the calls of examples/metrics_traffic.rs, waits for
# the journal's first checkpoint, and writes one scrape of /metrics to $1. The exposition is
# linted by `promtool check metrics`; check.py then compares it with the dashboard and alerts.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1

cargo build --locked --quiet --bin suppressd --example metrics_traffic
target=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)
cp "$target/suppressd" "$target/examples/metrics_traffic" "$work/"

server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; fi
    rm -rf "$work"
}
trap cleanup EXIT

# An admin token for every tenant, and the auth file that holds its hash.
"$work/suppressd" token new --name ci --tenant '*' --role admin >"$work/token.out" 2>/dev/null
token=$(head -n 1 "$work/token.out")
tail -n +3 "$work/token.out" >"$work/auth.toml"

"$work/suppressd" --log-format text serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$work/data" --auth-file "$work/auth.toml" >"$work/server.log" 2>&1 &
server=$!

# The ports the server bound, from its log.
grpc="" metrics=""
for _ in $(seq 1 100); do
    grpc=$(grep -o 'store open addr=[0-9.:]*' "$work/server.log" | head -n 1 | cut -d= -f2 || true)
    metrics=$(grep -o 'serving Prometheus metrics addr=[0-9.:]*' "$work/server.log" | head -n 1 | cut -d= -f2 || true)
    [ -n "$grpc" ] && [ -n "$metrics" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
[ -n "$grpc" ] && [ -n "$metrics" ] || { echo "the server did not start"; cat "$work/server.log"; exit 1; }
echo "server on $grpc, metrics on $metrics"

"$work/metrics_traffic" "http://$grpc" "$token"

# The journal checkpoints after a few idle seconds; its metrics come with the first one.
for _ in $(seq 1 60); do
    curl -fsS "http://$metrics/metrics" >"$out"
    grep -q '^suppressd_checkpoint_seconds_count' "$out" && break
    sleep 1
done
grep -q '^suppressd_checkpoint_seconds_count' "$out" || { echo "no checkpoint within 60 s"; exit 1; }

promtool check metrics <"$out"
echo "a few samples of the scrape:"
grep -E '^suppressd_(source_health|send_results_total|serving|auth_failures_total|group_commit_seconds_bucket\{le="1"\})' "$out"

kill "$server"
wait "$server"
server=""
echo "the server stopped cleanly"
