#!/usr/bin/env bash
# The contract checks: `buf lint` (STANDARD, see buf.yaml) and `buf breaking` of proto/ against
# the released v1 image, then proof that the breaking check bites: copies of the contract with
# a renamed field, a renumbered field or a renamed enum value must fail it, and an unchanged
# copy or one with an added field must pass. Needs `npm ci` in this directory first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
buf="$here/node_modules/.bin/buf"
baseline="$repo/proto/released/suppression-v1.binpb"
contract=suppression/v1/suppression.proto

if [ ! -x "$buf" ]; then
    echo "no buf at $buf: run 'npm ci' in clients/contract" >&2
    exit 1
fi
cd "$repo"
echo "buf $("$buf" --version)"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }

if "$buf" lint; then ok "buf lint: proto/ follows STANDARD"; else not_ok "buf lint"; fi
if "$buf" breaking --against "$baseline"; then
    ok "buf breaking: proto/ keeps every name and number of the released v1"
else
    not_ok "buf breaking against $baseline"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# mutant NAME SED-EXPRESSION: a copy of the module with the expression applied to the contract
# (an expression that changes nothing is an error, so a stale case never passes silently).
mutant() {
    local dir="$work/$1"
    mkdir -p "$dir"
    cp buf.yaml "$dir/"
    cp -r proto "$dir/proto"
    if [ -n "$2" ]; then
        sed -i -e "$2" "$dir/proto/$contract"
        if cmp -s "proto/$contract" "$dir/proto/$contract"; then
            echo "mutation '$2' matched nothing in proto/$contract" >&2
            exit 1
        fi
    fi
    echo "$dir"
}

# expect_pass NAME SED-EXPRESSION
expect_pass() {
    local dir out
    dir=$(mutant "$1" "$2")
    if out=$("$buf" breaking "$dir" --against "$baseline" 2>&1); then
        ok "$1 passes buf breaking"
    else
        not_ok "$1 should pass buf breaking: $out"
    fi
}

# expect_break NAME SED-EXPRESSION RULE: buf breaking must fail, reporting RULE.
expect_break() {
    local dir out
    dir=$(mutant "$1" "$2")
    if out=$("$buf" breaking "$dir" --against "$baseline" --error-format=json 2>&1); then
        not_ok "$1 passed buf breaking; it must fail"
    elif grep -q "\"type\":\"$3\"" <<<"$out"; then
        ok "$1 fails buf breaking ($3)"
    else
        not_ok "$1 failed buf breaking, but without $3: $out"
    fi
}

expect_pass "an unchanged copy" ""
expect_pass "an added field" \
    '/^message AddressStatus {/,/^}/ s/^  repeated string unsubscribed_lists = 17;$/&\n  string added_later = 18;/'
expect_break "a renamed field (SendResult.event_id)" \
    '/^message SendResult {/,/^}/ s/^  string event_id = 1;$/  string event_key = 1;/' FIELD_SAME_NAME
expect_break "a renumbered field (SendResult.address)" \
    '/^message SendResult {/,/^}/ s/^  string address = 2;$/  string address = 12;/' FIELD_NO_DELETE
expect_break "a renamed enum value (BOUNCE_REASON_MAILBOX_NOT_FOUND)" \
    's/BOUNCE_REASON_MAILBOX_NOT_FOUND = 1;/BOUNCE_REASON_NO_MAILBOX = 1;/' ENUM_VALUE_SAME_NAME

echo "contract: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
