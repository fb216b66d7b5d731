"""Whole processes, start to exit: `streamer run` against a naive loop and the floor.

What a user waits for is the whole process: imports, the model, the label embeddings, every
frame, the files closed. Each run here is one child process timed by this one from its spawn
to its exit, on the same 720p clip (the sample clip looped), all in one run:

  floor      decode + draw + H.264 encode, no analysis (`streamer.bench.file` floor+draw)
  naive      one thread, frame by frame: PyAV decode, open_clip's PIL preprocessing and torch
             encode of each analysed frame, cv2 text, write (`streamer.bench.file` naive)
  streamer   `python -m streamer run CLIP -o OUT.mp4 --backend B ...`, as a user types it

each at the default analysis rate (2 frames/s) and with every frame analysed; `streamer` once
per backend asked for. Caches are warm, as for every run after a user's first: one untimed run
per backend fills the export and label-embedding caches and Python's bytecode cache first
(`streamer.bench.measure.child_env`; the naive loop gets the same label cache, so it does not
pay its text tower either). The order alternates over `--rounds`
(forward, then backward, ...) so a drift of the machine's load cancels out; the table has each
mode's median seconds and the range of its rounds (the floor alone moves by a few per cent
between runs), and the CPU seconds the child used (user + system), which over its seconds say
how many cores it kept busy.

Ratios (the targets of issue 16 in brackets): every frame analysed, streamer / naive
(>= 2.5x); default rate, streamer / floor (>= 0.85). Each is the ratio of the medians, with
the range of the ratio within each round beside it (its two runs timed close together), which
says how much of a difference is the machine drifting. Random weights: speed does not depend on
them.

With `--rates "2 fps,0.1 fps"` (a rate that leaves a run little but its fixed cost) the report
also splits a run's time: what it pays once (0.1 fps against the floor: imports, the model,
the first frame, the exit) and what each analysis adds (2 fps against 0.1 fps, over the frames
analysed more, counted from the run's summary line). On a short clip the first weighs on the
default-rate ratio.

Run:  python bench/whole_process.py [--loops 4] [--backends torch,openvino,onnxruntime+int8]
                                   [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from streamer.bench.clips import looped_clip  # noqa: E402
from streamer.bench.file import ModeConfig  # noqa: E402
from streamer.bench.measure import child_env, cpu_line  # noqa: E402
from streamer.core.samples import sample_clip  # noqa: E402

RATES = {"2 fps": "2", "every frame": "all", "0.1 fps": "0.1"}
#: The rate that leaves a run little but its fixed cost (imports, model, first and last frame):
#: against the floor it says what a run pays once, against 2 fps what an analysis costs.
FIXED = "0.1 fps"
#: What `--backends openvino+VARIANT` adds to the run's command line (bf16: a CPU with it only).
VARIANTS = {"": [], "int8": ["--int8"], "bf16": ["--precision", "bf16"]}


def _command(mode: str, backend: str | None, rate: str, clip: Path, out: Path, args) -> list[str]:
    """The child's command line for one mode at one rate."""
    if mode == "streamer":
        name, _, variant = (backend or "").partition("+")  # "onnxruntime+int8": --int8
        return [sys.executable, "-m", "streamer", "run", str(clip), "-o", str(out),
                "--encoder", "clip", "--model", args.model, "--weights", "random",
                "--device", "cpu", "--backend", name, *VARIANTS[variant],
                "--analyze-fps", rate, "--preset", args.preset, "--no-audio"]  # fmt: skip
    config = ModeConfig(
        mode="floor+draw" if mode == "floor" else "naive",
        clip=str(clip),
        out=str(out),
        model=args.model,
        preset=args.preset,
        analyze_fps=None if rate == "all" else float(rate),
        text_cache=str(Path(os.environ["XDG_CACHE_HOME"]) / "streamer" / "text"),
    )
    return [sys.executable, "-m", "streamer.bench.file", json.dumps(asdict(config))]


def _frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.demux(container.streams.video[0]) if _.size)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int | None]:
    """The child's seconds from spawn to exit, the CPU seconds it used (user + system, its own
    children included) and, for `streamer run`, the frames it analysed (its summary line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command[:6])} ...\n{done.stderr[-3000:]}")
    analysed = re.search(r"done: \d+ frames, (\d+) analysed", done.stderr)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, used, int(analysed.group(1)) if analysed else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", type=int, default=4, help="sample clip repeated this many times")
    parser.add_argument(
        "--backends",
        default="torch,openvino",
        help="comma-separated; BACKEND+int8 adds --int8 (calibrated on the clip), "
        "openvino+bf16 --precision bf16 (a CPU with bf16 arithmetic)",
    )
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="2 fps,every frame", help="comma-separated, of: "
                        + ", ".join(RATES))  # fmt: skip
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend.partition("+")[2] not in VARIANTS:
            parser.error(f"--backends {backend!r}: after '+' give int8 or bf16")
    rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = child_env(XDG_CACHE_HOME=str(folder / "cache"))
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
        clip, loops = looped_clip(sample_clip(REPO / ".cache" / "samples"), 0, folder / "clip.mp4",
                                  args.loops)  # fmt: skip
        frames = _frames(clip)
        modes = [("floor", None), ("naive", None), *(("streamer", b) for b in backends)]
        runs = [
            (m, b, r)
            for r in rates
            for (m, b) in modes
            if not (m == "floor" and r != rates[0]) and not (m == "naive" and r == FIXED)
        ]
        for backend in backends:  # fill the export and label caches: later runs are warm
            print(f"warming the caches for {backend} ...", file=sys.stderr)
            _timed(_command("streamer", backend, "2", clip, folder / "warm.mp4", args), env)
        _timed(_command("naive", None, "2", clip, folder / "warm.mp4", args), env)
        seconds: dict[tuple, list[tuple[float, float, int | None]]] = {run: [] for run in runs}
        for round_ in range(args.rounds):
            for run in runs if round_ % 2 == 0 else runs[::-1]:
                mode, backend, rate = run
                out = folder / f"{mode}-{backend}-{RATES[rate]}.mp4"
                print(f"round {round_ + 1}: {mode} {backend or ''} {rate} ...", file=sys.stderr)
                seconds[run].append(
                    _timed(_command(mode, backend, RATES[rate], clip, out, args), env)
                )
                written = _frames(out)
                if written != frames:
                    sys.exit(f"{out.name}: {written} frames written, the clip has {frames}")
        _report(args, loops, frames, rates, backends, seconds)


def _report(args, loops, frames, rates, backends, seconds) -> None:
    median = {run: statistics.median(v[0] for v in values) for run, values in seconds.items()}
    cpu = {run: statistics.median(v[1] for v in values) for run, values in seconds.items()}
    print(f"Machine: {cpu_line()}, Python {platform.python_version()}; "
          f"sample clip x{loops} ({frames} frames, 720p); CLIP {args.model}, random weights; "
          f"x264 {args.preset}; median of {args.rounds} rounds, start to exit.\n")  # fmt: skip
    print("| mode | backend | analysed | seconds | rounds' range | frames/s | CPU seconds | "
          "cores busy |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for (mode, backend, rate), value in median.items():
        shown = "" if mode == "floor" else rate
        used = cpu[(mode, backend, rate)]
        runs = [v[0] for v in seconds[(mode, backend, rate)]]
        spread = f"{min(runs):.2f}–{max(runs):.2f}"
        print(f"| {mode} | {backend or ''} | {shown} | {value:.2f} | {spread} | "
              f"{frames / value:.1f} | {used:.2f} | {used / value:.2f} |")  # fmt: skip
    print(
        "\n| ratio of medians (range of the rounds' own) | "
        + " | ".join(backends)
        + " | target |\n|---|"
        + "---|" * len(backends)
        + "---|"
    )
    ratios = {}
    floor_run = next(run for run in seconds if run[0] == "floor")
    for rate in rates:
        for label, base, target in ((f"{rate}: streamer / naive", ("naive", None, rate),
                                     "≥ 2.5" if rate == "every frame" else ""),
                                    (f"{rate}: streamer / floor", floor_run,
                                     "≥ 0.85" if rate == "2 fps" else "")):  # fmt: skip
            if base not in median:  # no naive loop at the fixed-cost rate
                continue
            row = [median[base] / median[("streamer", b, rate)] for b in backends]
            ratios[label] = dict(zip(backends, row, strict=True))
            paired = [_round_ratios(seconds[base], seconds[("streamer", b, rate)])
                      for b in backends]  # fmt: skip
            print(f"| {label} | " + " | ".join(
                f"{v:.2f} ({min(p):.2f}–{max(p):.2f})" for v, p in zip(row, paired, strict=True)
            ) + f" | {target} |")  # fmt: skip
    if FIXED in rates and "2 fps" in rates:
        ratios.update(_fixed_and_per_analysis(median, seconds, floor_run, backends))
    if args.json:
        runs = {" ".join(filter(None, map(str, k))): v for k, v in seconds.items()}
        Path(args.json).write_text(json.dumps({
            "frames": frames, "loops": loops, "wall_cpu_seconds": runs, "ratios": ratios,
        }, indent=2))  # fmt: skip


def _fixed_and_per_analysis(median, seconds, floor_run, backends) -> dict[str, dict]:
    """Print and return what a run pays once (at `FIXED` against the floor) and what each
    analysis adds (2 fps against `FIXED`, over the difference in frames analysed)."""
    fixed, per = {}, {}
    for b in backends:
        low, high = ("streamer", b, FIXED), ("streamer", b, "2 fps")
        fixed[b] = median[low] - median[floor_run]
        counts = [[v[2] for v in seconds[run]] for run in (low, high)]
        known = all(c is not None for runs in counts for c in runs)
        more = statistics.median(counts[1]) - statistics.median(counts[0]) if known else 0
        per[b] = (median[high] - median[low]) / more * 1000 if more > 0 else float("nan")
    print(f"| what a run pays once: {FIXED} streamer − floor (s) | "
          + " | ".join(f"{fixed[b]:.2f}" for b in backends) + " | |")  # fmt: skip
    print(f"| what an analysis adds: (2 fps − {FIXED}) ÷ frames analysed more (ms) | "
          + " | ".join(f"{per[b]:.1f}" for b in backends) + " | |")  # fmt: skip
    return {"fixed seconds": fixed, "ms per analysis": per}


def _round_ratios(base: list[tuple], run: list[tuple]) -> list[float]:
    """The ratio within each round (base ÷ run, the two timed close together), whose range
    says how much of a difference between medians is the machine drifting."""
    return [b[0] / r[0] for b, r in zip(base, run, strict=True)]


if __name__ == "__main__":
    run_script(main)
