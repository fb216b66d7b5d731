"""Start-up: how long `streamer run CLIP -o OUT.mp4` takes to its first analysed frame.

Each run is a child process, `python -m streamer run ... --profile-startup`, as a user types it;
its start-up table (`streamer.core.startup`, printed once the first frame is analysed) says
where the time went, in seconds since the process started. Side by side, per backend:

  cold   an empty cache (`XDG_CACHE_HOME` in a fresh folder): the export made and the label
         embeddings computed, as on a user's first run (with `-- --live`, a live run's: the
         export made by a child process while the first frames run on torch)
  second the run after it, the first to open the export (OpenVINO compiles it once more,
         into its own cache of compiled models)
  warm   the same cache again, Python's bytecode cache included
         (`streamer.bench.measure.child_env`): every run after the first
  alert  warm, with an `--alert` query no run embedded before (another each round): its
         text is embedded at start-up, on the export's text tower where the backend has one

The table has each phase's end (median of `--rounds`), the first analysed frame last (the
number issue 16 targets: <= 2 s warm) and the whole process, start to exit. Random weights: the
start does not depend on them.

Run:  python bench/startup.py [--backends default,torch,openvino] [--rounds 3] [--model ViT-B/32]

"default" runs without `--backend`, as `streamer run clip.mp4 -o out.mp4` is typed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from streamer.bench.measure import child_env, cpu_line  # noqa: E402
from streamer.core.samples import sample_clip  # noqa: E402
from streamer.core.startup import LAST  # noqa: E402

PHASES = ("imports", "config", "source open", "model create", "LLM client", "text embeddings",
          "first frame decoded", LAST)  # fmt: skip
_ROW = re.compile(r"streamer:\s+(.+?)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)$")


def _command(clip: Path, out: Path, backend: str, args) -> list[str]:
    return [sys.executable, "-m", "streamer", "run", str(clip), "-o", str(out),
            "--encoder", "clip", "--model", args.model, "--weights", "random",
            *(() if backend == "default" else ("--backend", backend)),
            "--no-audio", "--no-progress", "--profile-startup", *args.extra]  # fmt: skip


def _run(command: list[str], env: dict[str, str]) -> tuple[dict[str, float], float]:
    """(phase → its end, seconds since the process started; start to exit)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command[:8])} ...\n{done.stderr[-3000:]}")
    ends = {}
    for line in done.stderr.splitlines():
        found = _ROW.match(line.strip())
        if found:
            ends[found.group(1).strip()] = float(found.group(3))
    if LAST not in ends:
        sys.exit(f"no start-up table in the output of {' '.join(command[:8])} ...\n"
                 f"{done.stderr[-3000:]}")  # fmt: skip
    return ends, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends",
        default="default,torch",
        help="comma-separated; 'default': no --backend flag, as a user types it",
    )
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--rounds", type=int, default=3, help="warm runs per backend")
    parser.add_argument("extra", nargs="*", help="more `streamer run` options (after --)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    clip = sample_clip(REPO / ".cache" / "samples")
    results: dict[tuple[str, str], list[tuple[dict[str, float], float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            cache = Path(tmp) / f"cache-{backend}"
            env = child_env(XDG_CACHE_HOME=str(cache))
            out = Path(tmp) / f"{backend}.mp4"
            print(f"{backend}: cold ...", file=sys.stderr)
            results[(backend, "cold")] = [_run(_command(clip, out, backend, args), env)]
            print(f"{backend}: second ...", file=sys.stderr)
            results[(backend, "second")] = [_run(_command(clip, out, backend, args), env)]
            results[(backend, "warm")], results[(backend, "alert")] = [], []
            for round_ in range(args.rounds):
                print(f"{backend}: warm {round_ + 1} ...", file=sys.stderr)
                results[(backend, "warm")].append(_run(_command(clip, out, backend, args), env))
                alert = ["--alert", f"a parcel left at door number {round_} {time.time():.0f}"]
                results[(backend, "alert")].append(
                    _run([*_command(clip, out, backend, args), *alert], env)
                )
    _report(args, results)


def _report(args, results) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Machine: {cpu_line()}, Python "
        f"{platform.python_version()}, load average {load:.1f} at the end; CLIP {args.model}, "
        f"random weights; the sample clip (720p); warm: median of {args.rounds} runs.\n"
    )
    columns = list(results)
    print("| phase ends at (s) | " + " | ".join(f"{b} {c}" for b, c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in PHASES:
        cells = []
        for key in columns:
            ends = [run[0][name] for run in results[key] if name in run[0]]
            cells.append(f"{statistics.median(ends):.2f}" if ends else "")
        label = f"**{name}**" if name == LAST else name
        print(f"| {label} | " + " | ".join(cells) + " |")
    walls = [f"{statistics.median(w for _, w in results[key]):.2f}" for key in columns]
    print("| whole process, start to exit | " + " | ".join(walls) + " |")


if __name__ == "__main__":
    run_script(main)
