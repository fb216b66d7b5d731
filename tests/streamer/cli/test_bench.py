"""`streamer bench`, the benchmark clip helper and the GPU suite, at tiny sizes.

These check that the benchmarks run and what they print, never how fast anything is.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from media import ffprobe, video_stream

from streamer.bench.clips import H264_ENCODERS, looped_clip, synthetic_clip
from streamer.bench.encoders import EncoderRow, markdown_table, parse_encoder_spec
from streamer.bench.file import ModeResult, PipelineEncoder
from streamer.bench.pipeline import PipelineBench, PipelineReport
from streamer.cli.main import main
from streamer.errors import SourceOpenError

REPO = Path(__file__).resolve().parents[3]
ENCODER_HEADER = (
    "| encoder | backend, dtype | params (M) | size (MB) | latency b1 (ms) | latency b4 (ms) "
    "| best batch | throughput (img/s) | peak memory (MB) |"
)


def _table_rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


# -- streamer bench encoders -------------------------------------------------------------------


@pytest.mark.slow
def test_bench_encoders_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "encoders.json"
    code = main(["bench", "encoders", "--encoders", "clip:tiny,default", "--device", "cpu",
                 "--batches", "1,4", "--seconds", "0.05", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "RANDOM weights" in printed and "Device cpu (" in printed
    rows = _table_rows(printed, ENCODER_HEADER)
    assert [r[0] for r in rows] == ["clip:tiny", "default"]
    for row in rows:
        assert row[1].endswith(", float32")  # torch, or OpenVINO under --backend auto
        params, size, b1, b4, best, throughput, peak = map(float, row[2:])
        assert params > 0 and size > 0 and b1 > 0 and b4 > 0 and throughput > 0 and peak >= 0
        assert best in (1, 4)
    assert float(rows[1][2]) == pytest.approx(30.8, abs=0.1)  # ViT 4x768: 30.8 M parameters
    data = json.loads(out.read_text())
    assert [d["encoder"] for d in data] == ["clip:tiny", "default"]
    assert set(data[0]["latency_ms"]) == {"1", "4"} and data[0]["random_weights"] is True
    assert data[0]["memory_kind"] in ("RSS peak delta", "RSS process peak")


def test_bench_encoders_from_frames(capsys) -> None:
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu",
                 "--batches", "2", "--seconds", "0.05", "--frames", "160x90"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "input: uint8 frames 160x90" in printed
    (row,) = _table_rows(printed, ENCODER_HEADER)
    assert row[4] == row[5] == "–" and row[6] == "2"  # no batch 1 or 4 measured


@pytest.mark.slow  # the tiny CLIP exported and quantised
def test_bench_encoders_measures_int8(tmp_path, monkeypatch, capsys, small_clip) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = tmp_path / "encoders.json"
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--backend", "onnxruntime",
                 "--int8", "--calibrate", str(small_clip), "--batches", "1",
                 "--seconds", "0.05", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    (row,) = _table_rows(printed, ENCODER_HEADER)
    assert row[1] == "onnxruntime, int8" and float(row[4]) > 0
    (export,) = [p for p in (tmp_path / "streamer" / "exports" / "onnxruntime").iterdir()
                 if "-int8-" in p.name and p.is_dir()]  # fmt: skip
    # the size is what the row ran, the int8 export on disk, not the fp32 torch model's
    on_disk = sum(f.stat().st_size for f in export.rglob("*") if f.is_file()) / 2**20
    (data,) = json.loads(out.read_text())
    assert data["size_mb"] == pytest.approx(on_disk)
    assert "speed-ups" not in printed  # torch's, and no row runs torch


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "0"], "--threads must be ≥ 1"),
        (["--batches", "0,4"], "--batches must be positive integers"),
        (["--batches", "one"], "--batches must be positive integers"),
        (["--frames", "1280"], "--frames must be WIDTHxHEIGHT"),
        (["--seconds", "0"], "--seconds must be > 0"),
        (["--encoders", "clip:ViT-Q/99"], "unknown clip model"),
        (["--encoders", "resnet"], "unknown encoder kind"),
    ],
)
def test_bench_encoders_rejects_bad_flags(flags, message, capsys) -> None:
    code = main(["bench", "encoders", "--device", "cpu", "--seconds", "0.01", *flags])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bench_encoders_json_says_how_many_threads_each_row_ran_with(tmp_path, capsys) -> None:
    import torch

    out = tmp_path / "rows.json"
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu", "--backend",
                 "torch", "--batches", "1", "--seconds", "0.01", "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (row,) = json.loads(out.read_text())
    # The table's header says it; the JSON, read without the header, needs it for a per-core rate.
    assert row["threads"] == torch.get_num_threads() >= 1


def test_bench_encoders_refuses_a_json_file_it_cannot_write_before_measuring(tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "rows.json"
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu",
                 "--batches", "1", "--seconds", "0.01", "--json", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "does not exist; create it first" in err, err
    assert "measuring" not in err  # refused before the minutes of measuring, not after


def test_bench_encoders_says_calibrate_does_nothing_without_int8(tmp_path, caplog) -> None:
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu", "--backend",
                 "torch", "--batches", "1", "--seconds", "0.01", "--calibrate",
                 str(tmp_path / "street.mp4")])  # fmt: skip
    assert code == 0
    assert "--calibrate" in caplog.text and "does nothing without --int8" in caplog.text


def test_the_encoder_table_header_agrees_with_its_rows() -> None:
    timing = {"latency_ms": {1: 2.5}, "throughput": {1: 400.0}, "memory_kind": "RSS peak delta"}
    torch_row = EncoderRow("clip:tiny", "cpu", "float32", "eager", 3.4, 13.0, **timing)
    openvino_row = EncoderRow("clip:tiny", "cpu", "int8", "none", 3.4, 0.9, **timing,
                              backend="openvino")  # fmt: skip
    converted = EncoderRow("default", "cpu", "float32", "none", 30.8, None, **timing,
                           backend="openvino")  # fmt: skip
    both = markdown_table([torch_row, openvino_row])
    assert "torch speed-ups: eager" in both and "speed-ups: none" not in both
    assert "size: torch's weights in memory, another backend's image-tower export on disk" in both
    assert [r[3] for r in _table_rows(both, ENCODER_HEADER)] == ["13", "1"]
    alone = markdown_table([openvino_row, converted])
    assert "speed-ups" not in alone  # no row runs torch
    assert [r[3] for r in _table_rows(alone, ENCODER_HEADER)] == ["1", "–"]  # in memory only
    assert "size:" not in markdown_table([torch_row])


def test_markdown_table_marks_missing_batches() -> None:
    row = EncoderRow("clip:tiny", "cpu", "float32", "eager", 3.4, 13.0,
                     latency_ms={1: 2.5, 16: 20.0}, throughput={1: 400.0, 16: 800.0},
                     peak_mb=50.0, memory_kind="RSS peak delta")  # fmt: skip
    (cells,) = _table_rows(markdown_table([row]), ENCODER_HEADER)
    assert cells == ["clip:tiny", "torch, float32", "3.4", "13", "2.50", "–", "16", "800.0", "50"]
    assert row.to_json()["best_batch"] == 16


def test_encoder_specs_keep_open_clip_tags() -> None:
    assert parse_encoder_spec("clip:ViT-B/32") == ("clip", "ViT-B/32")
    assert parse_encoder_spec("clip:ViT-B-32:laion2b_s34b_b79k") == (
        "clip",
        "ViT-B-32:laion2b_s34b_b79k",
    )
    assert parse_encoder_spec("default") == ("default", None)


# -- the benchmark clip ------------------------------------------------------------------------


def test_looped_clip_repeats_the_clip_whole_and_decodes(small_clip, tmp_path) -> None:
    out, loops = looped_clip(small_clip, 3.0, tmp_path / "looped.mp4")
    assert loops == 2
    video = video_stream(ffprobe(out))
    assert int(video["nb_read_frames"]) == 100  # 2 x 50 frames, every one decodable
    assert float(video["duration"]) == pytest.approx(4.0, abs=0.1)
    assert "audio" not in [s["codec_type"] for s in ffprobe(out)["streams"]]


def test_trimmed_clip_keeps_a_decodable_prefix(small_clip, tmp_path) -> None:
    out, loops = looped_clip(small_clip, 0, tmp_path / "short.mp4", loops=3, trim=1.0)
    frames = int(video_stream(ffprobe(out))["nb_read_frames"])
    assert loops == 3 and 3 * 20 <= frames <= 3 * 26  # about 25 frames a copy


def test_synthetic_clip_moves_at_its_size_and_rate(tmp_path) -> None:
    import av
    import numpy as np

    out = tmp_path / "synthetic.mp4"
    codec = synthetic_clip(out, (96, 54), 1.0, fps=25)
    assert codec in H264_ENCODERS
    video = video_stream(ffprobe(out))
    assert (video["width"], video["height"], video["r_frame_rate"]) == (96, 54, "25/1")
    assert int(video["nb_read_frames"]) == 25
    with av.open(str(out)) as container:
        lumas = [f.to_ndarray(format="gray").astype(int) for f in container.decode(video=0)]
    moved = [np.abs(a - b).mean() for a, b in itertools.pairwise(lumas)]
    assert min(moved) > 1  # every frame differs from the last: the decoder has work to do


def test_synthetic_clip_takes_the_first_encoder_that_opens(tmp_path) -> None:
    codec = synthetic_clip(tmp_path / "a.mp4", (32, 32), 0.2, encoders=("no-such-codec", "mpeg4"))
    assert codec == "mpeg4" and video_stream(ffprobe(tmp_path / "a.mp4"))["codec_name"] == "mpeg4"
    with pytest.raises(SourceOpenError, match=r"no-such-codec: not in this build"):
        synthetic_clip(tmp_path / "b.mp4", (32, 32), 0.2, encoders=("no-such-codec",))
    with pytest.raises(SourceOpenError, match="even size"):
        synthetic_clip(tmp_path / "c.mp4", (33, 32), 0.2)


# -- streamer bench pipeline -------------------------------------------------------------------


@pytest.mark.slow
def test_bench_pipeline_reports_every_mode_and_the_ratios(small_clip, tmp_path, capsys) -> None:
    out = tmp_path / "pipeline.json"
    code = main(["bench", "pipeline", "--clip", str(small_clip), "--seconds", "1",
                 "--model", "tiny", "--preset", "ultrafast", "--skip-every-frame",
                 "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(out.read_text())
    results = data["results"]
    assert list(results) == ["file floor", "file floor+draw", "file naive @2 fps",
                             "file pipeline @2 fps", "live floor", "live naive @2 fps",
                             "live pipeline @2 fps"]  # fmt: skip
    for name, r in results.items():
        assert r["fps"] > 0 and r["peak_rss_mb"] > 0, name
        assert (r["latency_ms"] is not None) == name.startswith("live"), name
        if name.startswith("file") or name in ("live floor", "live naive @2 fps"):
            assert r["frames"] == 50, name  # nothing dropped: files, and loops that cannot drop
        if "floor" in name:
            assert r["analysed"] == 0, name
        else:  # 2 s of media at 2 analysed frames per second
            assert 3 <= r["analysed"] <= 5, name
    assert 0 < results["live pipeline @2 fps"]["frames"] <= 50
    assert set(data["ratios"]) == {
        "file @2 fps: pipeline/floor",
        "file @2 fps: pipeline/(floor+draw)",
        "file @2 fps: pipeline/naive",
        "live: delivered fps pipeline/floor",
        "live: latency p50 naive/pipeline",
        "live: latency p99 naive/pipeline",
    }
    assert all(v > 0 for v in data["ratios"].values() if not math.isnan(v))
    rows = _table_rows(printed, printed.splitlines()[2])
    assert [r[0] for r in rows] == list(results)
    assert "| file @2 fps: pipeline/naive |" in printed


def test_bench_pipeline_rejects_a_missing_clip(tmp_path, capsys) -> None:
    code = main(["bench", "pipeline", "--clip", str(tmp_path / "nope.mp4")])
    assert code == 2 and "is not a file" in capsys.readouterr().err


@pytest.mark.slow  # the tiny CLIP exported and quantised, then four short modes
def test_bench_pipeline_loads_its_encoder_as_run_does(small_clip, tmp_path, monkeypatch, capsys):
    pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = tmp_path / "pipeline.json"
    code = main(["bench", "pipeline", "--clip", str(small_clip), "--seconds", "1",
                 "--model", "tiny", "--preset", "ultrafast", "--skip-every-frame", "--no-live",
                 "--backend", "openvino", "--int8", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    header = printed.out.splitlines()[0]
    assert "pipeline openvino, int8 on cpu (--backend openvino)" in header
    assert "naive loop torch, float32 on cpu" in header  # the baseline stays torch
    results = json.loads(out.read_text())["results"]
    assert results["file pipeline @2 fps"]["encoder"] == "openvino, int8 on cpu"
    assert results["file naive @2 fps"]["encoder"] == "torch, float32 on cpu"
    assert results["file floor"]["encoder"] is None
    # Exported and quantised once, before the timed rows, into the cache `streamer run` uses,
    # calibrated on the clip as `streamer run` calibrates on its first file input.
    progress = [line for line in printed.err.splitlines() if line.startswith("streamer: running")]
    assert progress[0].startswith("streamer: running pipeline set-up")
    exports = tmp_path / "streamer" / "exports"
    assert [p for p in (exports / "openvino").iterdir() if "-int8-" in p.name and p.is_dir()]
    variants = [json.loads(p.read_text())["request"]["variant"]
                for p in (exports / "locators").glob("*.json")]  # fmt: skip
    assert [v for v in variants if v.startswith(f"int8 {small_clip.name} ")], variants


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backend", "openvino", "--device", "cuda"], "--backend openvino: "),
        (["--precision", "fp8"], "argument --precision: "),
        (["--backend", "onnx"], "argument --backend: "),
    ],
)
def test_bench_pipeline_refuses_an_encoder_run_would_refuse(flags, message, small_clip, capsys):
    try:
        code = main(["bench", "pipeline", "--clip", str(small_clip), *flags])
    except SystemExit as exc:  # argparse's own refusal of a value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "running" not in err  # before any mode ran


def _not_a_video(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("not a video\n")
    return path


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--preset", "quick"], 2, "--preset must be one of ultrafast, "),
        (["--model", "ViT-Q/99"], 2, "unknown clip model 'ViT-Q/99'"),
        (["--json", "{tmp}/no-such-folder/out.json"], 2, "does not exist; create it first"),
        (["--clip", "{not_a_video}"], 1, "is not a readable video"),
    ],
)
def test_bench_pipeline_refuses_bad_values_before_any_mode(
    flags, code, message, small_clip, tmp_path, capsys
):
    values = {"tmp": tmp_path, "not_a_video": _not_a_video(tmp_path)}
    flags = [flag.format(**values) for flag in flags]
    got = main(["bench", "pipeline", "--clip", str(small_clip), "--seconds", "1", "--no-live",
                "--skip-every-frame", "--model", "tiny", *flags])  # fmt: skip
    err = capsys.readouterr().err
    assert got == code and message in err, err
    assert "running" not in err and "Traceback" not in err  # no child started


def test_the_pipeline_report_names_what_ran_each_encoder(tmp_path) -> None:
    encoder = PipelineEncoder(int8=True, export_cache=str(tmp_path))
    bench = PipelineBench(tmp_path / "c.mp4", every_frame=False, live=False, encoder=encoder)

    def result(mode: str, encoder: str | None) -> ModeResult:
        return ModeResult(mode, False, 50, 4, 0, 1.0, 50.0, None, 100.0, encoder)

    report = PipelineReport(bench, 1, {
        "file floor": result("floor", None), "file floor+draw": result("floor+draw", None),
        "file naive @2 fps": result("naive", "torch, float32 on cpu"),
        "file pipeline @2 fps": result("pipeline", "openvino, int8 on cpu"),
    })  # fmt: skip
    header = report.markdown().splitlines()[0]
    assert ("CLIP ViT-B/32 (random weights): pipeline openvino, int8 on cpu (--backend auto), "
            "naive loop torch, float32 on cpu; x264 veryfast.") in header  # fmt: skip


# -- the GPU suite, on the CPU ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_gpu_suite_quick_runs_on_the_cpu_through_gpu_sh(small_clip, tmp_path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), str(out), "--device", "cpu", "--quick",
         "--models", "clip:tiny", "--clip", str(small_clip)],
        capture_output=True, text=True, env=env, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "gpu_suite.json").read_text())
    sections = results["sections"]
    eager, graphs = sections["encoders"]["rows"]
    assert (eager["variant"], eager["speedups"]) == ("eager", "eager")
    assert set(eager["ms"]) == {"1", "4"} and eager["min_cos_vs_eager"] == pytest.approx(1.0)
    assert graphs["skipped"] == "CUDA graphs need a CUDA device"
    assert "skipped" in sections["upload"]
    assert sections["preprocess"]["frames_to_embeddings_fps"] > 0
    assert sections["decode"]["AUTO decode+rgb24 fps"] > 0
    assert sections["decode"]["NVDEC"].startswith("skipped")
    pipeline = sections["pipeline"]["pipeline, every frame"]
    assert pipeline["analysed"] == pipeline["frames"] > 0 and pipeline["ratio_to_floor"] > 0
    assert sections["targets"]["status"].startswith("not yet measured")
    assert [r["stream"] for r in sections["streams"]["per_stream"]] == ["cam01", "cam02"]
    assert "not yet measured" in (out / "gpu_suite.md").read_text()


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists()
    or subprocess.run(["/usr/bin/python3", "-c", "import av"], capture_output=True).returncode == 0,
    reason="needs a python3 without PyAV, like the GPU machine's",
)
def test_gpu_sh_without_wheels_says_what_to_do(tmp_path) -> None:
    env = {**os.environ, "PYTHON": "/usr/bin/python3", "WHEELS": str(tmp_path)}
    command = ["bash", str(REPO / "bench" / "gpu.sh"), str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "bench/gpu.sh fetch" in done.stderr and str(tmp_path) in done.stderr


def test_gpu_sh_is_valid_bash() -> None:
    assert shutil.which("bash")
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")], check=True)


@pytest.mark.slow
def test_gpu_suite_streams_play_files_as_live_cameras(tmp_path, capsys) -> None:
    from bench import gpu_suite

    out = tmp_path / "results"
    # More streams than asyncio's default thread pool (cores + 4) holds: a file holds its
    # decode thread for as long as it plays, so files decoding on that pool started late.
    streams = (os.cpu_count() or 1) + 6
    code = gpu_suite.main(["--device", "cpu", "--quick", "--models", "clip:tiny",
                           "--sections", "streams", "--streams", str(streams),
                           "--stream-size", "160x90", "--stream-seconds", "3",
                           "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    section = json.loads((out / "gpu_suite.json").read_text())["sections"]["streams"]
    assert section["hwaccel"] == "none" and "nvdec_error" not in section  # no CUDA: not tried
    assert section["clip"]["encoder"] in H264_ENCODERS and section["size"] == "160x90"
    rows = section["per_stream"]
    names = [f"cam{i:02d}" for i in range(1, streams + 1)]
    assert [r["stream"] for r in rows] == names  # one clip, a name per stream
    clip_frames = round(section["clip"]["seconds"] * 25)
    for r in rows:
        assert r["error"] is None and r["analysed"] > 0
        # Paced like a 25 fps camera: delivered at about that rate, never as fast as the
        # decoder goes (hundreds of fps at this size). Pacing, not our speed.
        assert 12.5 <= r["fps"] <= 35, r
        assert r["frames"] > 0 and r["frames"] + r["dropped"] <= clip_frames, r
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
    assert section["window_s"] == pytest.approx(3.0, abs=0.5)
    assert section["target_fps_total"] == 25 * streams
    assert section["delivered_fps_total"] == pytest.approx(sum(r["fps"] for r in rows))
    assert section["slowest_stream"]["fps"] == min(r["fps"] for r in rows)
    assert section["worst_p95_ms"]["ms"] == max(r["p95_ms"] for r in rows)
    assert section["drops_total"] == sum(r["dropped"] for r in rows)
    assert section["cpu"]["cores"] == os.cpu_count() and section["cpu"]["cores_busy"] > 0
    assert "## streams" in printed and all(f"| {name} |" in printed for name in names)
    assert f"of {25 * streams} (" in printed
