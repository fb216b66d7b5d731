"""bench/whole_process.py's report: medians, each mode's range, and each ratio beside the range
of the ratios within the rounds (a floor and a streamer run timed close together)."""

import importlib.util
import json
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    path = REPO / "bench" / "whole_process.py"
    spec = importlib.util.spec_from_file_location("bench_whole_process", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_ratio_comes_with_the_range_of_its_rounds(bench, tmp_path, capsys):
    # Round 2 ran on a slower machine: both runs took longer, their ratio held.
    seconds = {
        ("floor", None, "2 fps"): [(5.0, 7.0), (6.0, 8.0), (5.2, 7.2)],
        ("naive", None, "2 fps"): [(12.0, 18.0), (14.0, 20.0), (12.2, 18.0)],
        ("streamer", "openvino", "2 fps"): [(6.0, 10.0), (7.5, 11.0), (6.5, 10.5)],
    }
    args = types.SimpleNamespace(model="ViT-B/32", preset="veryfast", rounds=3,
                                 json=str(tmp_path / "out.json"))  # fmt: skip
    bench._report(args, 4, 528, ["2 fps"], ["openvino"], seconds)
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("|")}
    assert "| 5.20 | 5.00–6.00 |" in rows["floor"]  # median, then the rounds' range
    # floor ÷ streamer: 5.2 / 6.5 = 0.80 of the medians; per round 0.83, 0.80, 0.80
    assert "| 0.80 (0.80–0.83) |" in rows["2 fps: streamer / floor"]
    assert "| 1.88 (1.87–2.00) |" in rows["2 fps: streamer / naive"]
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["ratios"]["2 fps: streamer / floor"]["openvino"] == pytest.approx(0.8)


def test_round_ratios_pair_the_runs_of_each_round(bench):
    assert bench._round_ratios([(4.0, 0), (6.0, 0)], [(5.0, 0), (6.0, 0)]) == [0.8, 1.0]
    with pytest.raises(ValueError):  # a round without its pair is a bug, not a shorter list
        bench._round_ratios([(4.0, 0)], [(5.0, 0), (6.0, 0)])
