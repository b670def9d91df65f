#!/usr/bin/env bash
# Run one fault test (or a file of them) N times in a row, alone, and count the failures:
#   bench/fault_loop.sh 20 tests/training/test_mpi.py -k test_sync_killed_worker
# Prints "FAILURES failures in N runs" (and keeps each failing run's output under /tmp).
# The result table is in docs/reliability.md.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=$1; shift
failures=0
for i in $(seq "$runs"); do
  log=$(mktemp /tmp/fault-loop-XXXXXX.log)
  if .venv/bin/python -m pytest -q -p no:cacheprovider "$@" > "$log" 2>&1; then
    rm -f "$log"
  else
    failures=$((failures + 1)); echo "run $i failed: $log"
  fi
done
echo "$failures failures in $runs runs: $*"
