#!/usr/bin/env bash
# The README's first command: plan, apply, plan again against the embedded Graph sandbox seeded
# with examples/sandbox/contoso.seed.yaml, using the desired state in examples/desired/.
# No credentials and no network needed. Starts from a fresh sandbox state each time.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet
pwdrift=target/debug/pwdrift
seed=examples/sandbox/contoso.seed.yaml
out=target/quickstart
rm -rf examples/sandbox/.pwdrift-sandbox "$out"
mkdir -p "$out"

echo "### 1. pwdrift validate examples/desired"
"$pwdrift" validate examples/desired

echo
echo "### 2. pwdrift plan (what would change)"
"$pwdrift" plan --sandbox "$seed" examples/desired --out "$out/plan.json"

echo
echo "### 3. pwdrift apply (the saved plan; generated passwords go to $out/secrets.jsonl, mode 0600)"
"$pwdrift" apply --sandbox "$seed" "$out/plan.json" --auto-approve \
  --secrets-out "$out/secrets.jsonl" --report "$out/report.json"

echo
echo "### 4. pwdrift plan again: nothing left to do"
"$pwdrift" plan --sandbox "$seed" examples/desired --detailed-exitcode
