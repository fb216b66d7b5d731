#!/usr/bin/env bash
# bench/cluster.py's file modes on a lent GPU machine (16 cores, no network): the encoder
# pool with 1 vs 2 CPU replicas on idle cores, and one GPU replica beside one process on the
# GPU. The machine lacks Ray, PyAV and open_clip: their CPython 3.12 wheels are carried in
# WHEELS (see bench/gpu.sh fetch; add ray==2.60.0 jsonschema referencing
# jsonschema-specifications rpds-py) and installed with pip --no-index. Clips: CLIPS (made
# elsewhere with `python -c "from bench.cluster import make_clips; ..."`: the machine may
# lack ffmpeg). Results go to OUT (default: $OUT, else cluster-results).
#
#   bench/cluster_device.sh [OUT]
#
# Environment: PYTHON (python3), WHEELS (.whl), CLIPS (.cache/cluster-clips), ROUNDS (2).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
CLIPS=${CLIPS:-.cache/cluster-clips}
ROUNDS=${ROUNDS:-2}
out=${1:-${OUT:-cluster-results}}
mkdir -p "$out"
if ! "$PYTHON" -c "import ray, av, open_clip" 2>/dev/null; then
    site=${TMPDIR:-/tmp}/streamer-site
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
"$PYTHON" -c "import ray, av, open_clip, torch; print('ray', ray.__version__, 'av', av.__version__, 'torch', torch.__version__, torch.cuda.is_available())" || exit 1
timeout 300 "$PYTHON" bench/cluster.py replicas --rounds "$ROUNDS" --clips "$CLIPS" \
    --out "$out/replicas.json" 2>&1 | grep -v "^\s*$" | tee "$out/replicas.txt"
timeout 240 "$PYTHON" bench/cluster.py gpu --rounds 1 --clips "$CLIPS" --encoder clip:ViT-B-32 \
    --out "$out/gpu.json" 2>&1 | grep -v "^\s*$" | tee "$out/gpu_mode.txt"
