"""A search's first query: the archive's encoder opened from a run's export against built on
torch, side by side, each in a fresh process (as `streamer search` starts).

Each round starts one child per way and alternates which goes first. A child loads the encoder
as `Embedder.load` does (with the export cache: `encoders.open_export`, a locator hit; without:
the torch model), embeds one text query and one 1280x720 picture, and reports the seconds of
each step from the start of the process (imports included) and its peak resident memory, after
the text query (what a text search holds) and at the end.
Printed: the median of each way, and the ratios export/torch. Random weights: the time does not
depend on them, and nothing is downloaded. The export is made first (untimed) in a cache of
its own.

Run:  python bench/search_start.py [--model ViT-B/32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402

STEPS = ("load_s", "text_s", "image_s", "total_s")
PEAKS = ("text_peak_rss_mb", "peak_rss_mb")


def _child(model: str, dim: int, cache: str | None) -> None:
    """One search's start, in this process; prints its numbers as JSON."""
    started = time.perf_counter()
    import numpy as np

    from streamer.archive.embedder import Embedder
    from streamer.archive.store import EncoderSpec

    spec = EncoderSpec("clip", model, "random", dim)
    embedder = Embedder.load(spec, Path("."), "cpu", cache)
    loaded = time.perf_counter()
    assert embedder.text is not None
    embedder.text("a red van at the gate")
    texted = time.perf_counter()
    text_peak = _peak_rss_mb()
    embedder.image(np.zeros((720, 1280, 3), np.uint8))
    done = time.perf_counter()
    print(json.dumps({
        "load_s": loaded - started, "text_s": texted - loaded, "image_s": done - texted,
        "total_s": done - started, "torch_imported": "torch" in sys.modules,
        "text_peak_rss_mb": text_peak, "peak_rss_mb": _peak_rss_mb(),
    }))  # fmt: skip


def _peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM), in MB. Not `getrusage`'s
    ru_maxrss: Linux carries the parent's peak into a child it starts, and this bench's parent
    holds a built model."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run(model: str, dim: int, cache: str | None) -> dict:
    args = [sys.executable, __file__, "--child", "--model", model, "--dim", str(dim)]
    if cache is not None:
        args += ["--cache", cache]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.model, args.dim, args.cache)
    from streamer.bench.measure import cpu_line

    with tempfile.TemporaryDirectory(prefix="search-start-") as cache:
        import encoders

        made = encoders.create_encoder("clip", args.model, weights="random", backend="auto",
                                       device="cpu", export_cache=cache)  # fmt: skip
        dim = made.info.dim  # and the export, made once (untimed)
        del made
        rows: dict[str, list[dict]] = {"export": [], "torch": []}
        for round_ in range(args.rounds):
            order = ("export", "torch") if round_ % 2 == 0 else ("torch", "export")
            for way in order:
                rows[way].append(_run(args.model, dim, cache if way == "export" else None))
    print(f"Machine: {cpu_line()}; clip {args.model}, random weights; {os.cpu_count()} CPUs")
    medians = {way: {k: statistics.median(r[k] for r in found) for k in (*STEPS, *PEAKS)}
               for way, found in rows.items()}  # fmt: skip
    for way, numbers in medians.items():
        steps = ", ".join(f"{k.removesuffix('_s')} {numbers[k]:.2f} s" for k in STEPS)
        torch_seen = {r["torch_imported"] for r in rows[way]}
        print(f"{way:>6}: {steps}, peak RSS after the text {numbers['text_peak_rss_mb']:.0f} MB, "
              f"at the end {numbers['peak_rss_mb']:.0f} MB "
              f"(torch imported: {'/'.join(map(str, sorted(torch_seen)))})")  # fmt: skip
    for key in (*STEPS, *PEAKS):
        ratio = medians["export"][key] / medians["torch"][key]
        print(f"export / torch, {key}: {ratio:.2f}")


if __name__ == "__main__":
    run_script(main)
