#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite on the CPU. The lint comes first and
# fails the script on its own: `ruff check` (the rules in pyproject.toml) and `ruff format
# --check` (no file would be reformatted). Both always run, so one call shows every complaint.
#
# Without arguments (as CI runs it) the suite runs as two pytest processes side by side: the
# encoder tests (tests/encoders: exports and model comparisons, busy on a CPU and not timed,
# with one thread) beside the rest (live sources, servers, clusters and subprocess runs, which
# spend much of their time waiting on the clock). That takes about 5 minutes less on two cores
# than one process. The encoder tests' report follows the rest's; either failing fails the
# script (pytest's own exit status, so "no tests collected" fails too).
# With arguments, one pytest runs with them: `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
lint=0
.venv/bin/ruff check . || lint=1
.venv/bin/ruff format --check . || lint=1
if [ "$lint" != 0 ]; then
  echo "test: ruff found problems (above); fix them (ruff check --fix, ruff format) and rerun" >&2
  exit 1
fi
if [ "$#" != 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
report=$(mktemp)
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q --durations=15 tests/encoders >"$report" 2>&1 &
beside=$!
trap 'kill "$beside" 2>/dev/null || true; rm -f "$report"' EXIT
rest=0
.venv/bin/python -m pytest -q --durations=30 --ignore=tests/encoders || rest=$?
encoders=0
wait "$beside" || encoders=$?
echo "== tests/encoders (run beside the rest, one thread): exit status $encoders =="
cat "$report"
if [ "$rest" != 0 ]; then
  exit "$rest"
fi
exit "$encoders"
