"""What `--cluster` costs and buys on one machine: a simulated Ray cluster beside one process.

Every measured run is a fresh child process that starts its own simulated cluster
(`ray.cluster_utils.Cluster`: a raylet and its workers per node, all on this machine) where it
needs one; conditions alternate A B B A … over `--rounds`, so a drift of the machine cancels out.
The encoder is `--encoder` (default: the `default` random ViT) with random weights on the CPU.
Analysis is timed at the encoder-service seam from outside `streamer/` (`bench/_cluster_probe.py`).

  overhead  --streams live RTSP test patterns (--size, 25 fps, GStreamer on loopback) for
            --seconds from the moment every stream is online, JSON Lines per stream, the default
            analyse rate: (a) `run_pipeline` in one process, (b) `run_cluster` on two simulated
            nodes of one CPU each, one encoder replica (one torch thread; the one-process run
            gets one too). Per condition: delivered fps per stream, latency p50/p99 (capture →
            record written), analysed frames/s, drops (all; of the analysis lanes), the analysis
            latency (a sampled frame's submit → its embedding back) and its part outside the
            model; then cluster − one-process p50 and the ratio of throughputs.
  replicas  --files clips of --file-seconds (320x240, 25 fps), every frame analysed, on two
            simulated nodes of one CPU each: `--encoders 1` vs `--encoders 2` (one CPU, one torch
            thread each). Analysed frames/s from the first frame submitted to the last embedding
            back (the pool's start-up left out), and the ratio.
  bytes     one clip on the cluster, every frame analysed: the bytes of each call from a shard
            to a replica (its arguments and its result, sized by Ray's own serializer on the
            objects sent), per analysed frame, beside 224 × 224 × 3 = 150,528.
  gpu       the clips of `replicas`, every frame analysed on the GPU (--device cuda): one
            process vs the cluster with one GPU replica (the head node of the simulated cluster
            has the GPU). Analysed frames/s of each, their ratio, and whether both wrote the
            same tags for every frame.

Run:  python bench/cluster.py [overhead|replicas|bytes|gpu ...] [--rounds 2] [--seconds 20]
      (--clips DIR: use DIR's .mp4 files instead of making them with ffmpeg)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from bench._live_setup import abba, pattern_server  # noqa: E402
from streamer.bench.measure import child_env  # noqa: E402

MODES = ("overhead", "replicas", "bytes", "gpu")
FRAME_BYTES = 224 * 224 * 3  # one analysis-size uint8 frame
ONLINE_TIMEOUT_S = 240.0  # a simulated cluster on two busy cores takes a while to start


# --- the child runs -----------------------------------------------------------------------------


@contextlib.contextmanager
def simulated_cluster(nodes: int, cpus: float, probe: Path, gpus: int = 0) -> Iterator[None]:
    """`nodes` Ray nodes of `cpus` CPUs each on this machine, joined by this process, with the
    probe installed in every worker; the head node has `gpus` GPUs, the others none (one
    machine's GPU must not be counted once per simulated node)."""
    import ray
    from ray.cluster_utils import Cluster

    from bench._cluster_probe import PROBE_DIR

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus})
    for _ in range(nodes - 1):
        made.add_node(num_cpus=cpus, num_gpus=0)
    hook = {"worker_process_setup_hook": "bench._cluster_probe.install",
            "env_vars": {PROBE_DIR: str(probe)}}  # fmt: skip
    ray.init(address=made.address, namespace="streamer", logging_level=logging.WARNING,
             runtime_env=hook)  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
        made.shutdown()


def _config(job: dict, inputs: list[str], folder: Path, *, every_frame: bool, encoders: int = 1):
    from streamer.analysis.options import AnalysisConfig
    from streamer.analysis.worker import EncoderChoice
    from streamer.cluster.options import ClusterConfig
    from streamer.config import RunConfig
    from streamer.outputs.options import OutputConfig

    kind, _, model = job["encoder"].partition(":")
    cluster = ClusterConfig("auto", encoders=encoders, encoder_cpus=1) if job["cluster"] else None
    return RunConfig(
        input=tuple(inputs),
        outputs=OutputConfig(jsonl=str(folder / "{stream}.jsonl")),
        encoder=EncoderChoice(
            kind=kind, model=model or None, weights="random", device=job.get("device", "cpu")
        ),
        analysis=AnalysisConfig(analyze_fps=None if every_frame else job.get("analyze_fps", 2.0)),
        llm=None,
        cluster=cluster,
    )


def _niceness(job: dict) -> None:
    """Ray starts its workers at niceness 15 unless `RAY_worker_niceness` says otherwise (read
    by the raylets this process starts)."""
    if job.get("niceness") is not None:
        os.environ["RAY_worker_niceness"] = str(job["niceness"])  # noqa: SIM112 (Ray spells it so)


def child_live(job: dict) -> dict:
    """Run the live streams in one process or on the cluster; returns the numbers of the run."""
    from bench._cluster_probe import PROBE_DIR, collect

    _niceness(job)
    folder = Path(job["folder"])
    probe = folder / "probe"
    probe.mkdir()
    os.environ[PROBE_DIR] = str(probe)
    names = [f"cam{i + 1}" for i in range(len(job["urls"]))]
    inputs = [f"{name}={url}" for name, url in zip(names, job["urls"], strict=True)]
    config = _config(job, inputs, folder, every_frame=False)
    cluster = simulated_cluster(2, 1, probe) if job["cluster"] else contextlib.nullcontext()
    with cluster:
        summary, online, stopped = asyncio.run(_timed_live(config, folder, names, job["seconds"]))
    return _live_numbers(summary, online, stopped, collect(probe))


async def _timed_live(config, folder: Path, names: list[str], seconds: float):
    """Start the run, wait until every stream is online, let it run `seconds`, stop it."""
    stop = asyncio.Event()
    if config.cluster is not None:
        from streamer.cluster.driver import run_cluster

        task = asyncio.create_task(run_cluster(config, stop=stop))
    else:
        import torch

        from bench._cluster_probe import ProbedLocal
        from streamer.analysis.worker import load_encoder
        from streamer.pipeline import run_pipeline

        torch.set_num_threads(1)  # as a replica of one CPU runs
        service = ProbedLocal(load_encoder(config.encoder), config.analysis.batch)
        task = asyncio.create_task(run_pipeline(config, stop=stop, service=service))
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    online: dict[str, float] = {}
    while len(online) < len(names):
        if task.done() or time.monotonic() > deadline:
            task.cancel()
            raise RuntimeError(f"streams never came online: {sorted(set(names) - set(online))}")
        await asyncio.sleep(0.25)
        online.update({n: t for n in names if n not in online and (t := _online_at(folder, n))})
    await asyncio.sleep(seconds)
    stop.set()
    stopped = time.time()
    return await task, online, stopped


def _online_at(folder: Path, stream: str) -> float | None:
    """When a stream first came online (its JSON Lines status record), None if not yet."""
    path = folder / f"{stream}.jsonl"
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if '"status"' in line and line.endswith("}"):
            record = json.loads(line)
            if record["type"] == "status" and record["state"] == "online":
                return record["wall"]
    return None


def _live_numbers(summary, online: dict[str, float], stopped: float, probes: list[dict]) -> dict:
    streams = summary.streams
    spans = {s.name: stopped - online[s.name] for s in streams}
    analysis = [ms for p in probes for ms in p["latency_ms"]]
    outside = [t - m for p in probes for t, m in zip(p["latency_ms"], p["model_ms"], strict=True)]
    return {
        "fps": statistics.mean(s.frames / spans[s.name] for s in streams),
        "p50": statistics.mean(s.latency_ms[0] for s in streams),
        "p99": max(s.latency_ms[2] for s in streams),
        "analysed/s": sum(s.analysed / spans[s.name] for s in streams),
        "drops": sum(s.dropped for s in streams),
        "ana_drops": sum(p["lane_drops"] for p in probes),
        "ana_p50": _quantile(analysis, 0.5),
        "ana_p99": _quantile(analysis, 0.99),
        "ana_wait_p50": _quantile(outside, 0.5),
        **_bytes_numbers(probes),
    }


def child_files(job: dict) -> dict:
    """Analyse every frame of the clips on the cluster with `job["encoders"]` replicas, or in
    one process (`job["cluster"]` false)."""
    from bench._cluster_probe import PROBE_DIR, collect
    from streamer.cluster.driver import run_cluster

    _niceness(job)
    folder = Path(job["folder"])
    probe = folder / "probe"
    probe.mkdir()
    os.environ[PROBE_DIR] = str(probe)
    config = _config(job, job["clips"], folder, every_frame=True,
                     encoders=job.get("encoders", 1))  # fmt: skip
    if job["cluster"]:
        with simulated_cluster(2, 1, probe, gpus=job.get("gpus", 0)):
            summary = asyncio.run(run_cluster(config))
    else:
        summary = asyncio.run(_one_process(config))
    probes = collect(probe)
    span = max(p["last_wall"] for p in probes) - min(
        p["first_wall"] for p in probes if p["first_wall"]
    )
    return {"analysed": summary.analysed, "span_s": span, "analysed/s": summary.analysed / span,
            "tags": _tags_digest(folder), **_bytes_numbers(probes)}  # fmt: skip


async def _one_process(config):
    from bench._cluster_probe import ProbedLocal
    from streamer.analysis.worker import load_encoder
    from streamer.pipeline import run_pipeline

    service = ProbedLocal(load_encoder(config.encoder), config.analysis.batch)
    return await run_pipeline(config, service=service)


def _tags_digest(folder: Path) -> str:
    """A digest of every analysis record's (stream, frame, tag labels) in the run's JSON
    Lines: two runs that tagged every frame alike have the same one (scores may differ in the
    last digits between a batch of one size and another)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("type") == "analysis":
                labels = [t["label"] for t in record.get("tags", [])]
                digest.update(json.dumps([path.stem, record.get("frame"), labels]).encode())
    return digest.hexdigest()[:12]


def _bytes_numbers(probes: list[dict]) -> dict:
    """Bytes per analysed frame each way, from the probes' per-call sizes (zeros in one
    process: nothing crosses)."""
    frames = sum(n for p in probes for n in p["frames_sent"])
    if not frames:
        return {}
    calls = sum(len(p["frames_sent"]) for p in probes)
    return {
        "calls": calls,
        "frames/call": frames / calls,
        "out/frame": sum(b for p in probes for b in p["bytes_out"]) / frames,
        "back/frame": sum(b for p in probes for b in p["bytes_back"]) / frames,
        "shapes": _shapes(probes),
    }


def _shapes(probes: list[dict]) -> dict[str, int]:
    """Frames sent to the replicas by their shape: a live frame the decoder did not resize
    (`Frame.analysis_image` falls back to the full picture) crosses at full size."""
    shapes: dict[str, int] = {}
    for probe in probes:
        for shape, count in probe["sent_shapes"].items():
            shapes[shape] = shapes.get(shape, 0) + count
    return shapes


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the parent: order, children, tables -------------------------------------------------------


def spawn(job: dict) -> dict:
    """Run one job in a fresh interpreter; its last stdout line is the result."""
    env = child_env()
    env.pop("RAY_ADDRESS", None)  # the child's own simulated cluster, never another
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"a {job['kind']} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(base: dict, conditions: dict[str, dict], rounds: int) -> dict[str, list[dict]]:
    """Each condition's results over `rounds` of A B B A."""
    first, second = conditions
    results: dict[str, list[dict]] = {first: [], second: []}
    for condition in abba(first, second, rounds):
        with tempfile.TemporaryDirectory() as folder:
            result = spawn({**base, **conditions[condition], "folder": folder})
        results[condition].append(result)
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in result.items())
        print(f"  {condition:<12}{shown}", flush=True)
    return results


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _mean(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def table(results: dict[str, list[dict]], keys: tuple[str, ...]) -> None:
    """Means over the rounds, a row per condition."""
    print(f"{'':<12}" + "".join(f"{k:>13}" for k in keys))
    for name, rows in results.items():
        cells = (f"{_mean(rows, k):>13.2f}" if all(k in r for r in rows) else f"{'-':>13}"
                 for k in keys)  # fmt: skip
        print(f"{name:<12}" + "".join(cells))


def overhead(args: argparse.Namespace) -> dict:
    server, names = pattern_server(args.streams, args.size)
    try:
        base = {"kind": "live", "urls": [server.url(n) for n in names], "seconds": args.seconds,
                "encoder": args.encoder, "niceness": args.worker_niceness,
                "analyze_fps": args.analyze_fps}  # fmt: skip
        print(f"\noverhead: {args.streams} RTSP streams {args.size} 25 fps, {args.seconds:g} s "
              f"from all online, JSON Lines out, {args.encoder} random weights, 1 torch thread, "
              f"{args.analyze_fps:g} analysed frames/s per stream; "
              "cluster: 2 simulated nodes x 1 CPU, 1 replica")  # fmt: skip
        results = measure(base, {"one": {"cluster": False}, "cluster": {"cluster": True}},
                          args.rounds)  # fmt: skip
    finally:
        server.kill()
    keys = ("fps", "p50", "p99", "analysed/s", "drops", "ana_drops", "ana_p50", "ana_p99",
            "ana_wait_p50")  # fmt: skip
    print(f"\noverhead: mean of {args.rounds} runs each (latencies in ms)")
    table(results, keys)
    one, cluster = results["one"], results["cluster"]
    added = {k: _mean(cluster, k) - _mean(one, k) for k in ("p50", "ana_p50", "ana_wait_p50")}
    print(f"added p50 latency {added['p50']:+.2f} ms (target <= 3), "
          f"throughput {_mean(cluster, 'fps') / _mean(one, 'fps'):.3f}x (target >= 0.9), "
          f"analysed {_mean(cluster, 'analysed/s') / _mean(one, 'analysed/s'):.3f}x, "
          f"added analysis p50 {added['ana_p50']:+.2f} ms (outside the model "
          f"{added['ana_wait_p50']:+.2f} ms)")  # fmt: skip
    _print_bytes("live", cluster)
    return results


def make_clips(folder: Path, count: int, seconds: float) -> list[str]:
    """`count` different test clips (320x240, 25 fps, x264)."""
    clips = []
    for i in range(count):
        path = folder / f"clip{i + 1}.mp4"
        source = f"testsrc2=size=320x240:rate=25:duration={seconds}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-vf",
                        f"hue=h={i * 40}", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", str(path)], check=True)  # fmt: skip
        clips.append(str(path))
    return clips


def replicas(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        clips = _clips(args, Path(folder), args.files)
        base = {"kind": "files", "clips": clips, "encoder": args.encoder, "cluster": True,
                "niceness": args.worker_niceness}  # fmt: skip
        print(f"\nreplicas: {args.files} clips x {args.file_seconds:g} s 320x240 25 fps, every "
              f"frame analysed, {args.encoder} random weights; 2 simulated nodes x 1 CPU, "
              "replicas of 1 CPU / 1 torch thread")  # fmt: skip
        results = measure(base, {"1 replica": {"encoders": 1}, "2 replicas": {"encoders": 2}},
                          args.rounds)  # fmt: skip
    print(f"\nreplicas: mean of {args.rounds} runs each")
    table(results, ("analysed", "span_s", "analysed/s"))
    ratio = _mean(results["2 replicas"], "analysed/s") / _mean(results["1 replica"], "analysed/s")
    print(f"2 replicas / 1: {ratio:.3f}x analysed frames/s (target >= 1.7)")
    return results


def gpu(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        clips = _clips(args, Path(folder), args.files)
        base = {"kind": "files", "clips": clips, "encoder": args.encoder, "device": "cuda",
                "gpus": 1, "niceness": args.worker_niceness}  # fmt: skip
        print(f"\ngpu: {len(clips)} clips, every frame analysed, {args.encoder} random weights "
              "on cuda: one process vs the cluster (2 simulated nodes x 1 CPU, the head with "
              "the GPU, 1 GPU replica)")  # fmt: skip
        results = measure(base, {"one": {"cluster": False}, "cluster": {"cluster": True}},
                          args.rounds)  # fmt: skip
    print(f"\ngpu: mean of {args.rounds} runs each")
    table(results, ("analysed", "span_s", "analysed/s"))
    ratio = _mean(results["cluster"], "analysed/s") / _mean(results["one"], "analysed/s")
    same = len({r["tags"] for rows in results.values() for r in rows}) == 1
    print(f"cluster / one process: {ratio:.3f}x analysed frames/s; every frame's tags "
          f"{'the same in every run' if same else 'DIFFER between runs'}")  # fmt: skip
    return results


def _clips(args: argparse.Namespace, folder: Path, count: int) -> list[str]:
    """`--clips DIR`'s first `count` .mp4 files, else `count` clips made here."""
    if args.clips is not None:
        found = sorted(str(p) for p in args.clips.glob("*.mp4"))[:count]
        if len(found) < count:
            sys.exit(f"--clips {args.clips}: {len(found)} .mp4 files, {count} needed")
        return found
    return make_clips(folder, count, args.file_seconds)


def bytes_mode(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        clips = _clips(args, Path(folder), 1)
        job = {"kind": "files", "clips": clips, "encoder": args.encoder, "cluster": True,
               "encoders": 1, "niceness": args.worker_niceness}  # fmt: skip
        with tempfile.TemporaryDirectory() as out:
            result = spawn({**job, "folder": out})
    print(f"\nbytes: 1 clip x {args.file_seconds:g} s, every frame analysed, 1 replica")
    _print_bytes("file", [result])
    return result


def _print_bytes(what: str, rows: list[dict]) -> None:
    if not all("out/frame" in r for r in rows):
        print(f"bytes ({what}): no call to a replica was seen")
        return
    out, back = _mean(rows, "out/frame"), _mean(rows, "back/frame")
    shapes = _shapes([{"sent_shapes": r["shapes"]} for r in rows])
    shown = ", ".join(f"{n} at {shape}" for shape, n in sorted(shapes.items(), key=lambda i: -i[1]))
    print(f"bytes ({what}): frames sent {shown} (uint8); {_mean(rows, 'frames/call'):.2f} "
          f"frames per call; per analysed frame {out:,.0f} B to the replica "
          f"({out / FRAME_BYTES:.4f} x 150,528), {back:,.0f} B back, "
          f"{(out + back) / FRAME_BYTES:.4f} x 150,528 both ways")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shown = ", ".join(MODES)
    parser.add_argument("modes", nargs="*", help=f"of {shown} (default: the first three)")
    parser.add_argument("--rounds", type=int, default=2, help="A B B A: 2 rounds = 4 runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="live run, from all online")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--analyze-fps", type=float, default=2.0, help="overhead: per stream")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--file-seconds", type=float, default=8.0)
    parser.add_argument("--encoder", default="default", help="kind[:model], random weights")
    parser.add_argument("--out", type=Path, help="also write every result here (JSON)")
    parser.add_argument("--worker-niceness", type=int, help="Ray workers' niceness (Ray: 15)")
    parser.add_argument("--clips", type=Path, help="a folder of .mp4 clips to use (files modes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s) {sorted(unknown)}: choose from {', '.join(MODES)}")
    if args.child:
        job = json.loads(args.child)
        print(json.dumps((child_live if job["kind"] == "live" else child_files)(job)))
        return
    import ray
    import torch

    print(
        f"{datetime.date.today()}  machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}"
    )
    print("command: python bench/cluster.py " + shlex.join(sys.argv[1:]))
    nice = "Ray's default (15)" if args.worker_niceness is None else args.worker_niceness
    print(f"Ray workers' niceness: {nice}; this process's: {os.nice(0)}")
    runs = {"overhead": overhead, "replicas": replicas, "bytes": bytes_mode, "gpu": gpu}
    results = {mode: runs[mode](args) for mode in args.modes or MODES[:3]}
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    run_script(main)
