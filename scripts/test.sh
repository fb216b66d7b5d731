#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite on the CPU; extra arguments go to
# pytest. The lint comes first and fails the script on its own: `ruff check` (the rules in
# pyproject.toml) and `ruff format --check` (no file would be reformatted). Both always run, so
# one call shows every complaint.
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
exec .venv/bin/python -m pytest "$@"
