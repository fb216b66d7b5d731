"""`--backend`: declared once on `EncoderChoice`, refused early when it cannot run as asked,
and reaching the encoder from the command line, a configuration file and the Python API."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from encoders.errors import EncoderError
from streamer.analysis.worker import EncoderChoice, load_encoder
from streamer.cli.main import build_parser, main
from streamer.errors import ConfigError

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")


def _run_config(tmp_path, *flags: str):
    from streamer.cli.run import config_from_args

    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    args = build_parser().parse_args(["run", str(clip), "-o", str(tmp_path / "o.mp4"), *flags])
    return config_from_args(args)


def test_the_default_backend_is_auto_and_is_decided_by_the_device_and_the_cache() -> None:
    cache = {"export_cache": "unused"}
    assert EncoderChoice().backend == "auto"
    assert EncoderChoice(device="cpu", **cache).runs_on == "openvino"
    assert EncoderChoice(device="cuda", **cache).runs_on == "torch"
    # no cache to keep the export: converting at every start costs more than it saves
    assert EncoderChoice(device="cpu").runs_on == "torch"
    # torch.compile is torch's: asked for, auto keeps torch rather than refuse
    assert EncoderChoice(device="cpu", compile=True, **cache).runs_on == "torch"


def test_auto_keeps_torch_when_the_cache_cannot_be_written(tmp_path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")  # a cache "inside" a file: no user, root included, can create it
    assert EncoderChoice(device="cpu", export_cache=str(blocker / "exports")).runs_on == "torch"
    deep = tmp_path / "not" / "made" / "yet"  # created on the first export
    assert EncoderChoice(device="cpu", export_cache=str(deep)).runs_on == "openvino"
    assert not deep.parent.exists()  # deciding creates nothing
    with pytest.raises(EncoderError, match=r"cannot be written.*--no-cache"):  # named outright
        load_encoder(
            EncoderChoice(
                "clip",
                "tiny",
                weights="random",
                device="cpu",
                backend="openvino",
                export_cache=str(blocker / "exports"),
            )
        )


@pytest.mark.parametrize(("vnni", "expected"), [(True, "openvino"), (False, "onnxruntime")])
def test_auto_int8_prefers_onnxruntime_on_a_cpu_without_vnni(monkeypatch, vnni, expected):
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")
    import encoders.backends as backends

    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: vnni)
    choice = EncoderChoice(device="cpu", int8=True)  # int8 exports, cache or not
    assert choice.runs_on == expected


def test_vnni_is_read_from_the_cpu_flags() -> None:
    from encoders.backends import cpu_has_vnni

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags line on this machine (not x86 Linux)")
    assert cpu_has_vnni() == bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"device": "cuda"}, "--backend openvino: backend 'openvino' runs on the CPU only"),
        ({"device": "cpu", "precision": "fp16"}, "in int8 \\(--int8\\), not 'fp16'"),
        ({"device": "cpu", "compile": True}, "applies to backend 'torch' only"),
    ],
)
def test_a_combination_openvino_cannot_run_is_a_config_error(options, words) -> None:
    with pytest.raises(ConfigError, match=words):
        EncoderChoice(backend="openvino", **options)


def test_an_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match="backend must be one of auto, torch, onnxruntime, openvino"
    ):
        EncoderChoice(backend="tensorrt")


def test_the_flag_and_the_file_key_reach_the_choice_with_the_export_cache(tmp_path) -> None:
    config = _run_config(tmp_path, "--backend", "openvino", "--device", "cpu")
    assert config.encoder.backend == "openvino"
    assert config.encoder.export_cache is not None
    assert config.encoder.export_cache.endswith(os.path.join("streamer", "exports"))
    assert _run_config(tmp_path, "--backend", "auto", "--no-cache").encoder.export_cache is None
    toml = tmp_path / "run.toml"
    toml.write_text('[encoder]\nbackend = "openvino"\ndevice = "cpu"\n')
    assert _run_config(tmp_path, "--config", str(toml)).encoder.backend == "openvino"


def test_the_command_line_refuses_it_before_loading_anything(tmp_path, capsys) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('[encoder]\nbackend = "openvino"\ndevice = "cuda"\n')
    assert main(["config", "--check", str(toml)]) == 2
    assert "runs on the CPU only" in capsys.readouterr().err


def _torch_lines(caplog, choice: EncoderChoice) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streamer.encoder"):
        load_encoder(choice)
    return [r.getMessage() for r in caplog.records if "runs on torch" in r.getMessage()]


def test_auto_without_an_export_cache_says_why_it_runs_torch_and_how_not_to(tmp_path, caplog):
    from streamer.core.samples import export_cache_dir

    tiny = {"kind": "clip", "model": "tiny", "weights": "random", "device": "cpu"}
    (line,) = _torch_lines(caplog, EncoderChoice(**tiny))  # the API's default: no cache
    assert line.startswith("clip 'tiny' runs on torch ") and "(cpu, float32)" in line
    assert "backend 'auto' runs openvino here only with an export cache" in line
    assert "export_cache=str(streamer.core.samples.export_cache_dir())" in line
    # ... which is the cache the command line gives a run
    assert _run_config(tmp_path).encoder.export_cache == str(export_cache_dir())
    # torch asked for by name: which backend runs, and no advice
    (line,) = _torch_lines(caplog, EncoderChoice(**tiny, backend="torch"))
    assert line.endswith("(cpu, float32)") and "auto" not in line


def test_a_no_cache_run_says_which_backend_runs(tmp_path, caplog) -> None:
    config = _run_config(tmp_path, "--no-cache", "--model", "tiny", "--weights", "random",
                         "--device", "cpu")  # fmt: skip
    (line,) = _torch_lines(caplog, config.encoder)
    assert line.startswith("clip 'tiny' runs on torch ") and "--no-cache" in line


@pytest.mark.slow
def test_load_encoder_runs_the_choice_on_openvino(tmp_path) -> None:
    choice = EncoderChoice("clip", "tiny", weights="random", device="cpu", backend="openvino",
                           export_cache=str(tmp_path))  # fmt: skip
    encoder = load_encoder(choice)
    assert encoder.info.backend == "openvino"
    assert list((tmp_path / "openvino").iterdir())  # exported into the given cache


@pytest.mark.slow
def test_encoders_export_converts_once_into_the_cache(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    argv = ["encoders", "export", "--backend", "openvino", "--model", "tiny", "--weights",
            "random"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip()
    folder = printed.rpartition(": ")[2]
    assert folder.startswith(str(tmp_path / "streamer" / "exports" / "openvino" / "clip-tiny-"))
    assert (Path(folder) / "manifest.json").is_file()
    assert main(argv) == 0 and capsys.readouterr().out.strip() == printed
    assert main(["encoders", "export", "--backend", "torch", "--model", "tiny"]) == 2
    assert "nothing to export" in capsys.readouterr().err


def test_encoders_export_into_a_cache_it_cannot_write_names_it(tmp_path, monkeypatch, capsys):
    import encoders.backends.export_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(encoders.backends.export_cache, "keeps_exports", lambda root: False)
    assert main(["encoders", "export", "--model", "tiny", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert f"the export cache {tmp_path / 'streamer' / 'exports'} cannot be written" in err
    assert "XDG_CACHE_HOME" in err and "nothing to export" not in err


@pytest.mark.slow
def test_bench_encoders_measures_the_openvino_backend(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu",
                 "--backend", "openvino", "--batches", "1,4", "--seconds", "0.05"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "| clip:tiny | openvino, float32 |" in printed
    # again: opened from the export cache (no torch model), measured alike
    assert main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu",
                 "--batches", "1", "--seconds", "0.05"]) == 0  # fmt: skip
    again = capsys.readouterr().out
    assert "| clip:tiny | openvino, float32 |" in again
    assert main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cuda",
                 "--backend", "openvino"]) == 2  # fmt: skip


def test_bench_encoders_leaves_the_first_runs_export_out_of_the_peak(tmp_path, monkeypatch):
    # A first run exports with the torch model and its capture in memory (~150 MB more for
    # the tiny model before); the row is the memory of a run that opens the export.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    peaks = []
    for name in ("cold.json", "warm.json"):
        assert main(["bench", "encoders", "--encoders", "clip:tiny", "--device", "cpu",
                     "--backend", "openvino", "--batches", "1", "--seconds", "0.05",
                     "--json", str(tmp_path / name)]) == 0  # fmt: skip
        [row] = json.loads((tmp_path / name).read_text())
        if row["memory_kind"] != "RSS peak delta":
            pytest.skip("this kernel cannot reset a process's peak memory (/proc/self/clear_refs)")
        peaks.append(row["peak_mb"])
    cold, warm = peaks
    assert cold < warm + 30, peaks
