"""A first run's export made by a child process while the torch model runs the frames."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from live_helpers import alive

import encoders
from encoders.backends.background import pending_exports, wait_for_exports
from encoders.exported import ExportedEncoder

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

ROOT = Path(__file__).resolve().parents[2]
TINY = {"weights": "random", "backend": "openvino"}

# A process whose encoder's export is still being made when it ends.
_ENDS_EARLY = """
import logging, signal, sys
# as at a terminal, whatever the test runner's parent ignores (a background job ignores SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)
logging.basicConfig(level=logging.INFO, format="%(message)s")
import encoders
encoders.create_encoder("clip", "tiny", weights="random", backend="openvino",
                        export_cache=sys.argv[1], export_in_background=True)
print("RETURNED", flush=True)
"""


def test_a_first_run_starts_on_torch_and_moves_onto_the_export_its_child_makes(
    tmp_path, video_frames
) -> None:
    cache = tmp_path / "exports"
    encoder = encoders.create_encoder("clip", "tiny", **TINY, export_cache=cache,
                                      export_in_background=True)  # fmt: skip
    assert encoder.info.backend == "torch" and encoder.runtime is None
    digest = encoder.info.weights_digest  # known before the export: what the run caches is
    assert digest is not None  # keyed as the runs opened from the export look it up
    (job,) = pending_exports()
    on_torch = encoder.embed_array(video_frames)
    assert job.wait(180) and job.succeeded
    assert encoder.info.backend == "openvino" and not pending_exports()
    on_export = encoder.embed_array(video_frames)
    assert np.min(np.sum(on_torch * on_export, axis=1)) >= 0.9999
    assert encoder.info.weights_digest == digest
    # the child wrote the locator: the next run opens the export without building
    again = encoders.create_encoder("clip", "tiny", **TINY, export_cache=cache,
                                    export_in_background=True)  # fmt: skip
    assert isinstance(again, ExportedEncoder) and not pending_exports()
    assert again.info.weights_digest == digest


def test_a_child_that_fails_leaves_the_encoder_on_torch_and_says_why(
    tmp_path, caplog, video_frames
) -> None:
    checkpoint = encoders.create_encoder("clip", "tiny", weights="random",
                                         device="cpu").save(tmp_path / "tiny.pt")  # fmt: skip
    encoder = encoders.create_encoder("clip", "tiny", weights=str(checkpoint),
                                      backend="openvino", export_cache=tmp_path / "exports",
                                      export_in_background=True)  # fmt: skip
    checkpoint.unlink()  # before the child (still importing torch) reads it
    (job,) = pending_exports()
    assert job.wait(180) and job.succeeded is False
    (warning,) = [r.getMessage() for r in caplog.records if "made in the background" in r.message]
    assert "failed (exit 1" in warning and "stays on torch" in warning
    assert "tiny.pt" in warning  # the child's own error, naming the missing checkpoint
    assert encoder.info.backend == "torch"
    assert encoder.embed_array(video_frames[:1]).shape == (1, encoder.dim)


@pytest.mark.slow
def test_an_int8_export_is_calibrated_and_quantised_by_the_child(tmp_path, sample_clip) -> None:
    from encoders.backends.calibration import Calibration

    asked = {**TINY, "export_cache": tmp_path, "int8": True,
             "calibration": Calibration(sample_clip, 8), "export_in_background": True}  # fmt: skip
    encoder = encoders.create_encoder("clip", "tiny", **asked)
    assert encoder.info.backend == "torch"
    (job,) = pending_exports()
    assert job.what == "openvino int8 export of clip 'tiny'"
    assert job.wait(300) and job.succeeded
    assert encoder.info.backend == "openvino" and encoder.info.dtype == "int8"
    again = encoders.create_encoder("clip", "tiny", **asked)  # the same calibration: found
    assert isinstance(again, ExportedEncoder) and again.info.dtype == "int8"


@pytest.mark.slow
def test_a_process_done_with_its_encoders_waits_without_moving_them(tmp_path) -> None:
    done = encoders.create_encoder("clip", "tiny", **TINY, export_cache=tmp_path / "a",
                                   export_in_background=True)  # fmt: skip
    wait_for_exports()  # (what a command line does before it ends)
    assert not pending_exports() and done.info.backend == "torch"  # nothing compiled for it
    assert encoders.open_export("clip", "tiny", weights="random", export_cache=tmp_path / "a")
    later = encoders.create_encoder("clip", "tiny", **TINY, export_cache=tmp_path / "b",
                                    export_in_background=True)  # fmt: skip
    (job,) = pending_exports()
    assert job.wait(180) and later.info.backend == "openvino"  # a later one still moves


def test_without_export_in_background_the_export_is_made_before_the_encoder_returns(tmp_path):
    encoder = encoders.create_encoder("clip", "tiny", **TINY, export_cache=tmp_path)
    assert encoder.info.backend == "openvino" and not pending_exports()


@pytest.mark.slow
def test_a_process_that_ends_first_waits_for_the_export_at_exit(tmp_path) -> None:
    cache = tmp_path / "exports"
    done = subprocess.run([sys.executable, "-c", _ENDS_EARLY, str(cache)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "RETURNED"
    assert "waiting for the openvino export of clip 'tiny'" in done.stderr
    opened = encoders.open_export("clip", "tiny", weights="random", export_cache=cache,
                                  backend="openvino")  # fmt: skip
    assert isinstance(opened, ExportedEncoder)


@pytest.mark.slow
def test_ctrl_c_while_waiting_at_exit_stops_the_child_and_the_next_run_exports(tmp_path):
    cache = tmp_path / "exports"
    with subprocess.Popen([sys.executable, "-c", _ENDS_EARLY, str(cache)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:  # fmt: skip
        waiting = ""
        while "waiting for the openvino export" not in waiting:
            line = process.stderr.readline()
            assert line, "the process ended without waiting for its export"
            waiting = line
        child = int(waiting.split("(process ")[1].split(")")[0])
        assert alive(child)
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(30) == 0, rest
    assert "stopped the export made in the background" in rest and "failed" not in rest
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:  # (reaped by init: gone soon)
        time.sleep(0.1)
    assert not alive(child)
    assert encoders.open_export("clip", "tiny", weights="random", export_cache=cache) is None
    encoder = encoders.create_encoder("clip", "tiny", **TINY, export_cache=cache)
    assert encoder.info.backend == "openvino"
