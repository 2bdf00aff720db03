#!/usr/bin/env bash
# Benchmark (not part of the tests): plan and apply at scale against the Graph sandbox.
#
#   bash examples/bench.sh [USERS] [DECLARED] [THROTTLE]
#
# Starts `pwdrift sandbox --generate USERS` (release build), declares DECLARED of its users
# (requirePasswordChange, so most of them change), then times `plan` and `apply` and prints the
# request counts the sandbox saw. THROTTLE is passed to --throttle (default: off, to measure
# pwdrift itself; `real` reproduces Graph's write quota of 3,000 writes per 2 min 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100000}
declared=${2:-$users}
throttle=${3:-off}

cargo build --release --locked --quiet
bin=target/release/pwdrift
work=$(mktemp -d)
trap 'kill $sandbox_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" sandbox --generate "$users" --rng-seed 42 --throttle "$throttle" --listen 127.0.0.1:0 >"$work/info.json" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$work/info.json" ] && break; sleep 0.1; done
info=$(head -1 "$work/info.json")
get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$info" "$1"; }
graph=$(get graph_url)

mkdir -p "$work/desired"
curl -s "$graph/_sandbox/state" | python3 -c "
import json, sys
state = json.load(sys.stdin)
t = state['tenants'][0]
users = [u for u in t['users'] if not u.get('directoryRoles')][: int(sys.argv[1])]
# files of at most 20,000 users (a desired-state file may be at most 10 MiB)
for n, i in enumerate(range(0, len(users), 20000)):
    with open('%s/part%03d.yaml' % (sys.argv[2], n), 'w') as f:
        f.write('version: 1\\ntenant: %s\\nusers:\\n' % t['initialDomain'])
        for u in users[i:i + 20000]:
            f.write('  - user: %s\\n    requirePasswordChange: { since: 2026-11-22T00:00:00Z }\\n' % u['userPrincipalName'])
print('declared', len(users), 'of', len(t['users']), 'users', file=sys.stderr)
" "$declared" "$work/desired"

export AZURE_CLIENT_ID=$(get client_id) AZURE_CLIENT_SECRET=$(get client_secret) AZURE_TENANT_ID=$(get tenant_id)
export PWDRIFT_GRAPH_URL=$graph AZURE_AUTHORITY_HOST=$(get authority_host) NO_COLOR=1

t0=$(date +%s.%N)
"$bin" validate "$work/desired"
t1=$(date +%s.%N)
"$bin" plan "$work/desired" --out "$work/plan.json" | tail -1
t2=$(date +%s.%N)
curl -s -X POST "$graph/_sandbox/reset-stats" >/dev/null
"$bin" apply "$work/plan.json" --auto-approve --force --concurrency 8 | tail -1
t3=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:])
print(f"validate {t1-t0:.2f}s  plan {t2-t1:.2f}s  apply (incl. stale check and verify) {t3-t2:.2f}s")
PY
curl -s "$graph/_sandbox/stats" | python3 -c "
import json, sys
s = json.load(sys.stdin)
print('apply requests:', s['total'], 'throttled:', s['throttled'])
for route, by in sorted(s['requests'].items()):
    print('  ', route, by)
"
