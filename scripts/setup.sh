#!/usr/bin/env bash
# Set up streamer in a virtual environment (.venv) beside this script's repository.
#   bash scripts/setup.sh          the package and its runtime dependencies
#   bash scripts/setup.sh --test   also the test tools and Debian's ffmpeg (ffprobe checks outputs)
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed (found: $("$python" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi

if [ "$want_tests" = 1 ] && ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's ffmpeg (ffprobe validates what the tests write)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "setup: the tests need ffprobe: install ffmpeg (e.g. 'sudo apt-get install ffmpeg')" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
extras=""
[ "$want_tests" = 1 ] && extras="[test]"
stamp=".venv/.streamer-installed$extras"
digest=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "setup: installing streamer$extras and its dependencies into .venv (torch is large: minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".$extras"
  echo "$digest" > "$stamp"
fi
