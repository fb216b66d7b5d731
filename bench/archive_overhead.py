"""What `--archive` costs a run: the same work with and without it, side by side in one run.

Two workloads, each run in fresh child processes (so memory and CPU time are per run), in the
order A B B A … (`--rounds`), so that a drift of the machine over the benchmark cancels out:

  file   annotate the sample clip (repeated --loops times): CLIP --model with random weights
         on the CPU, analysis at the default rate, MP4 + JSON Lines out. With the archive the
         run also indexes its moments (thumbnails, LanceDB batches).
  live   --streams RTSP test patterns (640x360, 25 fps, GStreamer on loopback) for --seconds,
         the default encoder, MP4 + JSON Lines per stream. With the archive every stream is
         also recorded (packets remuxed into fragmented-MP4 segments) and its moments indexed.

A first run with the archive warms the caches (page cache, LanceDB import) and is not counted.
LanceDB is imported before each timed run with the archive, as the encoder is loaded before
it (a fixed cost at start that `streamer run` hides behind the encoder's load); its seconds
are printed as `import`.
Prints, per workload and condition, the means over rounds: wall time and frames/s (file),
delivered fps (from each stream's first frame), latency p50/p99 and drops (live), CPU seconds
of the process, and the ratio archive/plain. Then the archive's own size: index bytes per row
and recording bytes per stream-hour (live).

Run:  python bench/archive_overhead.py [--rounds 2] [--loops 8] [--streams 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from bench._live_setup import abba, pattern_server  # noqa: E402
from streamer.bench.measure import child_env  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _import_archive() -> float:
    """Import LanceDB before the timed run, as the encoder is loaded before it: its import is a
    fixed cost at start (a run hides it behind its encoder's load), not throughput. Returns
    its seconds, reported beside the ratios."""
    started = time.perf_counter()
    import lancedb  # noqa: F401

    return time.perf_counter() - started


def _archive_sizes(folder: Path) -> dict:
    """Rows and bytes of the archive a child wrote (zeros without one)."""
    root = folder / "archive"
    if not root.exists():
        return {"rows": 0, "index_bytes": 0, "recording_bytes": 0}
    from streamer.archive import Archive

    with Archive(root) as archive:
        info = archive.info()
    return {"rows": info.rows, "index_bytes": info.index_bytes,
            "recording_bytes": info.recordings_bytes}  # fmt: skip


def child_file(job: dict) -> dict:
    """Annotate the clip once, with or without the archive."""
    import torch

    from encoders import create_encoder
    from encoders.acceleration import Acceleration
    from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
    from streamer.archive.options import ArchiveConfig

    torch.set_num_threads(os.cpu_count() or 1)
    folder = Path(job["folder"])
    encoder = create_encoder("clip", job["model"], weights="random", device="cpu")
    encoder.accelerate(Acceleration())
    run = RunConfig(
        input=job["clip"],
        outputs=OutputConfig(
            video=str(folder / "out.mp4"),
            jsonl=str(folder / "out.jsonl"),
            preset="veryfast",
            copy_audio=False,
        ),
        analysis=AnalysisConfig(text_cache=job["text_cache"]),
        archive=ArchiveConfig(str(folder / "archive")) if job["archive"] else None,
    )
    startup = _import_archive() if job["archive"] else 0.0
    cpu, started = _cpu_seconds(), time.perf_counter()
    summary = asyncio.run(run_pipeline(run, encoder=encoder))
    wall = time.perf_counter() - started
    return {"frames": summary.frames, "wall": wall, "fps": summary.frames / wall,
            "cpu": _cpu_seconds() - cpu, "import": startup, **_archive_sizes(folder)}  # fmt: skip


def child_live(job: dict) -> dict:
    """Run the live streams for `seconds`, with or without the archive."""
    from encoders import create_encoder
    from streamer import OutputConfig, RunConfig, run_pipeline
    from streamer.archive.options import ArchiveConfig

    folder = Path(job["folder"])
    encoder = create_encoder("default", None, weights="random", device="cpu")
    run = RunConfig(
        input=tuple(job["urls"]),
        outputs=OutputConfig(
            video=str(folder / "{stream}.mp4"),
            jsonl=str(folder / "{stream}.jsonl"),
            preset="ultrafast",
        ),
        archive=ArchiveConfig(str(folder / "archive")) if job["archive"] else None,
    )

    async def timed():
        stop = asyncio.Event()
        task = asyncio.create_task(run_pipeline(run, encoder=encoder, stop=stop))
        await asyncio.sleep(job["seconds"])
        stop.set()
        return await task

    startup = _import_archive() if job["archive"] else 0.0
    cpu = _cpu_seconds()
    summary = asyncio.run(timed())
    stopped, cpu = time.time(), _cpu_seconds() - cpu
    streams = summary.streams
    return {
        # from each stream's first frame: opening the archive at the start is not throughput
        "fps": sum(s.frames / (stopped - _online_at(folder, s.name)) for s in streams)
        / len(streams),
        "p50": sum(s.latency_ms[0] for s in streams) / len(streams),
        "p99": max(s.latency_ms[2] for s in streams),
        "drops": sum(s.dropped for s in streams),
        "cpu": cpu,
        "import": startup,
        **_archive_sizes(folder),
    }


def _online_at(folder: Path, stream: str) -> float:
    """When a stream first came online (its JSON Lines status record)."""
    with open(folder / f"{stream}.jsonl", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["type"] == "status" and record["state"] == "online":
                return record["wall"]
    raise RuntimeError(f"{stream} never came online")


def spawn(job: dict) -> dict:
    """Run one job in a fresh interpreter; its last stdout line is the result."""
    env = child_env()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"a {job['kind']} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(kind: str, base: dict, rounds: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {"plain": [], "archive": []}
    with tempfile.TemporaryDirectory() as folder:  # a first run warms caches; not counted
        spawn({**base, "kind": kind, "folder": folder, "archive": True})
    for condition in abba("plain", "archive", rounds):
        with tempfile.TemporaryDirectory() as folder:
            job = {**base, "kind": kind, "folder": folder, "archive": condition == "archive"}
            result = spawn(job)
        results[condition].append(result)
        print(f"  {kind:<5}{condition:<9}" + "  ".join(f"{k} {v:.4g}" for k, v in result.items()),
              flush=True)  # fmt: skip
    return results


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def report(kind: str, results: dict[str, list[dict]], keys: tuple[str, ...]) -> None:
    plain, archive = results["plain"], results["archive"]
    print(f"\n{kind}: mean of {len(plain)} runs each")
    print(f"{'':<10}" + "".join(f"{k:>12}" for k in keys))
    for name, rows in (("plain", plain), ("archive", archive)):
        print(f"{name:<10}" + "".join(f"{_mean(rows, k):>12.2f}" for k in keys))
    print(f"{'ratio':<10}" + "".join(
        f"{_mean(archive, k) / _mean(plain, k) if _mean(plain, k) else float('nan'):>12.3f}"
        for k in keys))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B B A: 2 rounds = 4 runs each")
    parser.add_argument("--loops", type=int, default=8, help="sample clip repeated this often")
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=("file", "live"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps((child_file if job["kind"] == "file" else child_live)(job)))
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    if args.only in (None, "file"):
        file_workload(args)
    if args.only in (None, "live"):
        live_workload(args)


def file_workload(args: argparse.Namespace) -> None:
    from streamer.core.samples import sample_clip

    clip = sample_clip(REPO / ".cache" / "samples")
    with tempfile.TemporaryDirectory() as folder:
        looped = Path(folder) / "looped.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(args.loops - 1), "-i",
                        str(clip), "-c", "copy", str(looped)], check=True)  # fmt: skip
        base = {"clip": str(looped), "model": args.model,
                "text_cache": str(REPO / ".cache" / "text")}  # fmt: skip
        print(f"\nfile: {looped.name} ({args.loops} x the sample clip), CLIP {args.model} random "
              "weights on cpu, default analysis rate")  # fmt: skip
        results = measure("file", base, args.rounds)
    report("file", results, ("wall", "fps", "cpu", "import"))
    rows = results["archive"]
    print(
        f"index: {_mean(rows, 'rows'):.0f} rows, "
        f"{_mean(rows, 'index_bytes') / max(_mean(rows, 'rows'), 1) / 1024:.1f} KiB per row"
    )


def live_workload(args: argparse.Namespace) -> None:
    server, names = pattern_server(args.streams, "640x360")
    try:
        base = {"urls": [server.url(n) for n in names], "seconds": args.seconds}
        print(f"\nlive: {args.streams} RTSP streams 640x360 25 fps, {args.seconds:.0f} s each run, "
              "default encoder random weights on cpu")  # fmt: skip
        results = measure("live", base, args.rounds)
    finally:
        server.kill()
    report("live", results, ("fps", "p50", "p99", "drops", "cpu", "import"))
    rows = results["archive"]
    hours = args.streams * args.seconds / 3600
    print(
        f"index: {_mean(rows, 'rows'):.0f} rows, "
        f"{_mean(rows, 'index_bytes') / max(_mean(rows, 'rows'), 1) / 1024:.1f} KiB per row; "
        f"recordings {_mean(rows, 'recording_bytes') / hours / 1e6:.0f} MB per stream-hour"
    )


if __name__ == "__main__":
    run_script(main)
