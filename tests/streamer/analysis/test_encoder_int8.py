"""`--int8` and `--calibrate`: declared once on `EncoderChoice`, calibrated on the run's own
first file input unless told otherwise, refused early where no backend quantises, and made
ahead of time by `streamer encoders export --int8`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from encoders.backends import EXPORTED
from streamer.analysis.worker import EncoderChoice
from streamer.cli.main import build_parser, main
from streamer.errors import ConfigError

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")
pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")


def _encoder(tmp_path, *argv: str):
    from streamer.cli.run import config_from_args

    args = build_parser().parse_args(["run", *argv, "-o", str(tmp_path / "o.mp4")])
    return config_from_args(args).encoder


def test_int8_calibrates_on_the_first_file_input_unless_told(tmp_path) -> None:
    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    flags = ["--backend", "openvino", "--device", "cpu", "--int8"]
    live = "rtsp://127.0.0.1:9/cam"
    assert _encoder(tmp_path, live, str(clip), *flags).calibrate == str(clip)
    chosen = _encoder(tmp_path, str(clip), *flags, "--calibrate", "other.mp4")
    assert chosen.int8 and chosen.calibrate == "other.mp4"
    assert _encoder(tmp_path, live, *flags).calibrate is None  # the sample clip, when loaded
    assert _encoder(tmp_path, str(clip), "--device", "cpu").calibrate is None  # no int8
    toml = tmp_path / "run.toml"
    toml.write_text('[encoder]\nbackend = "onnxruntime"\ndevice = "cpu"\nint8 = true\n')
    from_file = _encoder(tmp_path, str(clip), "--config", str(toml))
    assert from_file.int8 and from_file.backend == "onnxruntime"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"backend": "torch"}, "--backend torch --int8: int8 (--int8) runs on backend 'openvino'"),
        ({"backend": "onnxruntime", "device": "cuda"}, "runs on the CPU only"),
        ({"backend": "auto", "device": "cuda"}, "no backend can run int8 so"),
    ],
)
def test_int8_where_nothing_quantises_is_a_config_error(options, words) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        EncoderChoice(int8=True, **options)
    assert EncoderChoice(int8=True, backend="auto", device="cpu").runs_on in EXPORTED


@pytest.mark.slow  # the tiny CLIP exported and quantised: about 10 s
def test_encoders_export_int8_calibrates_and_a_bad_clip_names_the_fix(
    tmp_path, monkeypatch, capsys, small_clip
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    argv = ["encoders", "export", "--backend", "onnxruntime", "--model", "tiny", "--weights",
            "random", "--int8"]  # fmt: skip
    assert main([*argv, "--calibrate", str(small_clip)]) == 0
    printed = capsys.readouterr().out.strip()
    assert f"(int8, calibrated on {small_clip}): " in printed
    folder = Path(printed.rpartition(": ")[2])
    assert folder.name.startswith("clip-tiny-64px-int8-") and (folder / "image.onnx").is_file()
    assert len([p for p in folder.parent.iterdir() if p.is_dir()]) == 2  # and its fp32 source
    assert main([*argv, "--calibrate", str(tmp_path / "nope.mp4")]) == 1
    err = capsys.readouterr().err
    assert "cannot calibrate int8 on" in err and "nope.mp4" in err and "--calibrate PATH" in err
    assert "Traceback" not in err
