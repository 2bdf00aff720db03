#!/usr/bin/env bash
# Benchmark (not part of the tests): every performance scenario of docs/performance.md against the Graph
# sandbox, in one invocation, one table at the end (see examples/bench.py for the scenarios,
# the columns and the options).
#
#   bash examples/bench.sh                       # quota scenarios under --throttle scaled:10
#   bash examples/bench.sh --quota real          # ... under the real write quota (~11 min more)
#   bash examples/bench.sh --only plan --users 20000
#
# Needs python3 and /usr/bin/time (Debian: apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
exec python3 examples/bench.py "$@"
