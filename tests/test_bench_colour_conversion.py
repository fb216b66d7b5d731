"""bench/colour_conversion.py: the three conversions timed side by side, refused when their
pixels differ."""

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/colour_conversion.py")


def test_each_way_gets_a_row_against_the_view(bench, sample_clip, capsys):
    bench.main(["--clip", str(sample_clip), "--frames", "3", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "1280x720, 3 frames × 1 rounds" in out
    assert out.startswith("Machine: ")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(rows) == {"fresh", "copy", "view"}
    assert rows["view"].endswith("1.00x view")


def test_a_way_that_changes_the_pixels_is_refused(bench, sample_clip, monkeypatch):
    def darker(image, reformatter):
        return bench.to_yuv420(image // 2, reformatter)

    monkeypatch.setitem(bench.WAYS, "copy", darker)
    with pytest.raises(SystemExit, match="different pixels"):
        bench.main(["--clip", str(sample_clip), "--frames", "2", "--rounds", "1"])


def test_no_frames_to_time_is_said_not_divided_by(bench, sample_clip):
    with pytest.raises(SystemExit, match="no frame decoded"):
        bench.main(["--clip", str(sample_clip), "--frames", "0", "--rounds", "1"])
