#!/usr/bin/env bash
# Set up (if needed) and annotate the sample clip: out/annotated.mp4, .srt, .vtt, .jsonl.
# Uses pretrained CLIP ViT-B/32 weights when they can be had (cached, or downloadable); without
# them it says so and runs with random weights, labelled on the video.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
clip=$(.venv/bin/streamer sample)
mkdir -p out
exec .venv/bin/streamer run "$clip" -o out/annotated.mp4 --srt out/annotated.srt \
  --vtt out/annotated.vtt --jsonl out/annotated.jsonl --encoder clip --model ViT-B/32 \
  --weights auto "$@"
