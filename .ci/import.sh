#!/usr/bin/env bash
# `suppressd import` end to end (CI: .ci/run, block "import"): starts `suppressd serve` on
# loopback with an auth file, imports every sample export of tests/data/import/ twice with an
# operator token (SUPPRESSD_TOKEN), and checks that the second run imports nothing and that a
# reader's token is refused.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet --bin suppressd
work=$(mktemp -d)
cp "${CARGO_TARGET_DIR:-target}/debug/suppressd" "$work/"

server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$work/suppressd" token new --name importer --tenant '*' --role operator >"$work/op.out" 2>/dev/null
"$work/suppressd" token new --name viewer --tenant '*' --role reader >"$work/reader.out" 2>/dev/null
{ tail -n +3 "$work/op.out"; echo; tail -n +3 "$work/reader.out"; } >"$work/auth.toml"

"$work/suppressd" --log-format text serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    --auth-file "$work/auth.toml" >"$work/server.log" 2>&1 &
server=$!
grpc=""
for _ in $(seq 1 100); do
    grpc=$(grep -o 'store open addr=[0-9.:]*' "$work/server.log" | head -n 1 | cut -d= -f2 || true)
    [ -n "$grpc" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
[ -n "$grpc" ] || { echo "the server did not start"; cat "$work/server.log"; exit 1; }

if SUPPRESSD_TOKEN=$(head -n 1 "$work/reader.out") "$work/suppressd" import --addr "$grpc" \
    --tenant acme --format csv tests/data/import/generic.csv >/dev/null 2>"$work/refused"; then
    echo "a reader's token imported"; exit 1
fi
grep -q PermissionDenied "$work/refused" || grep -qi "permission" "$work/refused" \
    || { cat "$work/refused"; exit 1; }
echo "ok - a reader's token is refused"

export SUPPRESSD_TOKEN
SUPPRESSD_TOKEN=$(head -n 1 "$work/op.out")
for file in tests/data/import/*; do
    name=$(basename "$file")
    format=${name%%[_.]*}
    [ "$format" = generic ] && format=csv
    first=$("$work/suppressd" import --addr "$grpc" --tenant acme --format "$format" "$file" 2>/dev/null)
    second=$("$work/suppressd" import --addr "$grpc" --tenant acme --format "$format" "$file" 2>/dev/null)
    imported=$(sed -n 's/^imported: //p' <<<"$first")
    grep -qx "imported: 0" <<<"$second" || { echo "not ok - $name: the second run imported"; echo "$second"; exit 1; }
    echo "ok - $name: $imported imported, the second run none ($(grep -c '^  line' <<<"$first" || true) rows listed)"
done

kill "$server"
wait "$server"
server=""
