"""bench/whole_process.py's report: medians, each mode's range, and each ratio beside the range
of the ratios within the rounds (a floor and a streamer run timed close together)."""

import json
import types

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/whole_process.py")


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


def test_a_fixed_cost_rate_splits_a_run_into_what_it_pays_once_and_per_analysis(
    bench, tmp_path, capsys
):
    # (seconds, CPU seconds, frames analysed): 3 analyses at 0.1 fps, 43 at 2 fps.
    seconds = {
        ("floor", None, "2 fps"): [(4.6, 7.0), (4.7, 7.1)],
        ("naive", None, "2 fps"): [(12.0, 18.0), (12.2, 18.0)],
        ("streamer", "openvino", "2 fps"): [(5.8, 10.6, 43), (5.9, 10.7, 43)],
        ("streamer", "openvino", "0.1 fps"): [(5.3, 8.3, 3), (5.4, 8.4, 3)],
    }
    args = types.SimpleNamespace(model="ViT-B/32", preset="veryfast", rounds=2,
                                 json=str(tmp_path / "out.json"))  # fmt: skip
    bench._report(args, 4, 528, ["2 fps", "0.1 fps"], ["openvino"], seconds)
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("|")}  # fmt: skip
    assert "0.1 fps: streamer / naive" not in rows  # no naive loop at that rate
    assert "| 0.70 |" in rows["what a run pays once: 0.1 fps streamer − floor (s)"]  # 5.35-4.65
    # (5.85 - 5.35) s over 40 analyses more: 12.5 ms each
    per = "what an analysis adds: (2 fps − 0.1 fps) ÷ frames analysed more (ms)"
    assert "| 12.5 |" in rows[per]
    saved = json.loads((tmp_path / "out.json").read_text())["ratios"]
    assert saved["fixed seconds"]["openvino"] == pytest.approx(0.7)
    assert saved["ms per analysis"]["openvino"] == pytest.approx(12.5)


def test_round_ratios_pair_the_runs_of_each_round(bench):
    assert bench._round_ratios([(4.0, 0), (6.0, 0)], [(5.0, 0), (6.0, 0)]) == [0.8, 1.0]
    with pytest.raises(ValueError):  # a round without its pair is a bug, not a shorter list
        bench._round_ratios([(4.0, 0)], [(5.0, 0), (6.0, 0)])
