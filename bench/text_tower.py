"""CLIP's text tower, torch against the one exported beside the image tower, side by side.

What a warm OpenVINO (or ONNX Runtime) run does for a label or alert query that is not in the
text cache: the encoder opened from the export cache embeds it on the exported text tower,
where it used to build the torch model. Printed: the torch model's build, the export's open,
the first exported call (its compile included), then the median of `--rounds` alternated
rounds of `--prompts` prompts each way, their ratio, and the lowest cosine between the two.
Random weights: the time does not depend on them, and nothing is downloaded. The export is
made first (untimed) in the cache `streamer run` uses, where it is not there yet.

Run:  python bench/text_tower.py [--model ViT-B/32] [--backend openvino] [--prompts 50]
                                 [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402

from bench._entry import run_script  # noqa: E402
from streamer.bench.measure import cpu_line  # noqa: E402
from streamer.core.samples import export_cache_dir  # noqa: E402

WORDS = ("a dog", "a cat", "a car", "a person", "a bicycle", "a bus", "a truck", "a bird",
         "a boat", "a train", "a parcel", "an empty street", "rain", "snow", "a fox")  # fmt: skip


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    import encoders

    torch.set_num_threads(args.threads)
    prompts = [f"a photo of {WORDS[i % len(WORDS)]}" for i in range(args.prompts)]
    cache = str(export_cache_dir())

    def create(backend: str) -> object:
        kept = cache if backend != "torch" else None
        return encoders.create_encoder("clip", args.model, weights="random", backend=backend,
                                       export_cache=kept)  # fmt: skip

    torch_model, built = _timed(lambda: create("torch"))
    create(args.backend)  # the export, made once where it is missing (untimed)
    exported, opened = _timed(lambda: create(args.backend))
    _, first = _timed(lambda: exported.embed_text(prompts))
    times: dict[str, list[float]] = {"torch": [], args.backend: []}
    for _ in range(args.rounds):
        for name, encoder in (("torch", torch_model), (args.backend, exported)):
            times[name].append(_timed(lambda e=encoder: e.embed_text(prompts))[1])
    a, b = torch_model.embed_text(prompts).numpy(), exported.embed_text(prompts).numpy()
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"Machine: {cpu_line()}; {args.threads} threads; clip {args.model}, random weights")
    print(f"opened as {type(exported).__name__}: {opened:.2f} s; torch model built: {built:.2f} s")
    print(
        f"first exported embed_text ({args.prompts} prompts, its compile included): {first:.2f} s"
    )
    for name, values in times.items():
        print(
            f"{name:>12}: median {medians[name]:.3f} s  ({', '.join(f'{v:.3f}' for v in values)})"
        )
    print(f"{args.backend} / torch: {medians[args.backend] / medians['torch']:.2f}")
    print(f"lowest cosine: {cosine.min():.7f}")


if __name__ == "__main__":
    run_script(main)
