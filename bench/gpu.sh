#!/usr/bin/env bash
# The GPU benchmark suite (bench/gpu_suite.py) on a lent GPU machine, which has no network.
#
#   bench/gpu.sh fetch [DIR]        here, where pip reaches PyPI: download the wheels the GPU
#                                   machine lacks (PyAV, open_clip, ftfy, wcwidth; CPython 3.12,
#                                   x86-64) into DIR (default .whl; keep it out of git, e.g. in
#                                   .git/info/exclude) and carry DIR and .cache/samples along
#   bench/gpu.sh [OUT] [ARGS...]    there: install the carried wheels if av/open_clip are
#                                   missing (pip --no-index), then run the suite, writing
#                                   gpu_suite.json and gpu_suite.md into OUT (default: $OUT,
#                                   else gpu-results). ARGS go to bench/gpu_suite.py, e.g.
#                                   --sections streams (only the 32 live 1080p25 streams;
#                                   --streams, --stream-size, --stream-seconds); its
#                                   docstring lists every section.
#
# Environment: PYTHON (default python3), WHEELS (the carried wheels, default .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
# Versions the project is tested with; the GPU machine has torch, transformers, timm, numpy,
# aiohttp and opencv already (docs/testing.md §6).
PACKAGES=(av==18.1.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4)

if [[ "${1:-}" == "fetch" ]]; then
    dest=${2:-$WHEELS}
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" "${PACKAGES[@]}"
    echo "wheels in $dest; carry it and .cache/samples (the sample clip: streamer sample)"
    exit 0
fi

out=${1:-${OUT:-gpu-results}}
shift || true
if ! "$PYTHON" -c "import av, open_clip, ftfy" 2>/dev/null; then
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "gpu.sh: PyAV/open_clip are missing and there are no wheels in $WHEELS:" \
            "run 'bench/gpu.sh fetch' where pip works, and carry $WHEELS" >&2
        exit 1
    fi
    site=${TMPDIR:-/tmp}/streamer-site
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$WHEELS"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
exec "$PYTHON" bench/gpu_suite.py --out "$out" "$@"
