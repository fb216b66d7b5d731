"""Text-query alerts: the tracker's rules stepped by hand, then whole runs on a real clip."""

from __future__ import annotations

import asyncio
import itertools
import time

import av
import numpy as np
import pytest
from media import read_jsonl

from streamer import ConfigError, OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertDetector, AlertRule, AlertTracker, check_rule_streams
from streamer.cli.exits import EXIT_USAGE
from streamer.cli.main import build_parser, main
from streamer.core.events import Observer
from streamer.outputs.overlay import Hud, Overlay

# ---------------------------------------------------------------------------------------------
# The tracker: pure logic over (score, time) pairs.


def fired(tracker: AlertTracker, steps: list[tuple[float, float]]) -> list[float]:
    """The times at which `tracker` fires over `steps` of (score, time)."""
    return [t for score, t in steps if tracker.update(score, t)]


def test_fires_after_n_consecutive_frames_at_or_above_the_threshold():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=3, cooldown_s=100))
    steps = [(0.31, 0.0), (0.30, 0.5), (0.35, 1.0), (0.4, 1.5)]
    assert fired(tracker, steps) == [1.0]  # the third in a row; 0.30 counts (at the threshold)


def test_a_frame_below_the_threshold_starts_the_count_again():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=2, cooldown_s=0))
    steps = [(0.5, 0.0), (0.1, 0.5), (0.5, 1.0), (0.29, 1.5), (0.5, 2.0), (0.5, 2.5)]
    assert fired(tracker, steps) == [2.5]


def test_the_cooldown_keeps_it_quiet_then_a_lasting_match_fires_again():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=2, cooldown_s=10))
    above = [(0.5, t / 2) for t in range(60)]  # 0.0 … 29.5 s, always matching
    assert fired(tracker, above) == [0.5, 10.5, 20.5]


def test_after_the_cooldown_a_new_match_needs_n_frames_again():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=2, cooldown_s=5))
    steps = [(0.5, 0.0), (0.5, 1.0), (0.0, 2.0), (0.5, 8.0), (0.5, 9.0)]
    assert fired(tracker, steps) == [1.0, 9.0]  # 8.0 is past the cooldown but alone


def steps_of(tracker: AlertTracker, steps: list[tuple[float, float]]) -> list[tuple[str, float]]:
    """What `tracker` says over `steps` of (score, time): ("fired" | "cleared", time)."""
    return [(said, t) for score, t in steps if (said := tracker.step(score, t)) is not None]


def test_a_fired_rule_clears_after_n_frames_without_a_match_once_its_cooldown_is_over():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=2, cooldown_s=5))
    match, miss = 0.5, 0.1
    steps = [(match, 0.0), (match, 1.0), (miss, 2.0), (miss, 3.0), (miss, 4.0), (miss, 6.0)]
    # Two misses at 3 s, but it fired at 1 s with a 5-s cooldown: it clears at 6 s.
    assert steps_of(tracker, steps) == [("fired", 1.0), ("cleared", 6.0)]
    assert not tracker.on
    # Back after it cleared: the cooldown is over, so it fires as soon as it matches n frames.
    assert steps_of(tracker, [(match, 7.0), (match, 8.0)]) == [("fired", 8.0)]


def test_a_match_back_before_it_cleared_keeps_it_on_and_one_miss_does_not_clear_it():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=2, cooldown_s=2))
    steps = [(0.5, 0.0), (0.5, 1.0), (0.1, 2.0), (0.5, 3.0), (0.1, 4.0), (0.5, 5.0),
             (0.5, 6.0), (0.1, 7.0), (0.1, 8.0)]  # fmt: skip
    # Never two misses in a row until 8 s; the lasting match fires again at 6 s (cooldown over).
    assert steps_of(tracker, steps) == [("fired", 1.0), ("fired", 6.0), ("cleared", 8.0)]


def test_a_rule_that_never_fired_never_clears():
    tracker = AlertTracker(AlertRule("a dog", threshold=0.3, frames=1, cooldown_s=0))
    assert steps_of(tracker, [(0.1, float(t)) for t in range(5)]) == []


def test_the_detector_says_which_rule_cleared_on_which_frame():
    rule = AlertRule("a dog", threshold=0.5, frames=1, cooldown_s=0)
    detector = AlertDetector((rule,), np.eye(1, 2, dtype=np.float32), clock=lambda: 50.0)
    on, off = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert detector.scan("door", 3, 1.5, on)[1] == []
    fired, (cleared,) = detector.scan("door", 4, 2.0, off)
    assert fired == [] and detector.check("door", 5, 2.5, off) == []
    assert (cleared.stream, cleared.query, cleared.frame_index, cleared.time) == (
        "door",
        "a dog",
        4,
        2.0,
    )
    assert (cleared.fired, cleared.wall, cleared.score) == (1.5, 50.0, 0.0)


def test_a_stream_that_stops_delivering_clears_the_rules_that_are_on_and_only_those():
    on_rule = AlertRule("a dog", threshold=0.5, frames=1, cooldown_s=10)
    off_rule = AlertRule("a cat", threshold=0.5, frames=1, cooldown_s=0)
    detector = AlertDetector((on_rule, off_rule), np.eye(2, dtype=np.float32), clock=lambda: 7.0)
    dog = np.array([1.0, 0.0], np.float32)
    assert [a.query for a in detector.check("door", 3, 1.5, dog)] == ["a dog"]
    assert detector.check("yard", 3, 1.5, dog)
    (cleared,) = detector.clear("door", 4.0, 3)
    assert (cleared.query, cleared.time, cleared.frame_index) == ("a dog", 4.0, 3)
    assert cleared.fired == 1.5
    assert (cleared.reason, cleared.wall, np.isnan(cleared.score)) == ("offline", 7.0, True)
    assert detector.clear("door", 5.0, 3) == []  # off now: cleared once
    # Back online within the cooldown: quiet (off); after it, a match fires again.
    assert detector.check("door", 5, 6.0, dog) == [] and detector.check("door", 6, 12.0, dog)
    assert [c.query for c in detector.clear("yard", 4.0, 3)] == ["a dog"]  # its own state


def test_each_stream_has_its_own_trackers_and_a_rule_can_watch_one_stream():
    everywhere = AlertRule("anything", threshold=0.5, frames=2, cooldown_s=0)
    door_only = AlertRule("a person", streams=("door",), threshold=0.5, frames=1, cooldown_s=0)
    detector = AlertDetector((everywhere, door_only), np.eye(2, 4, dtype=np.float32))
    both = np.array([0.8, 0.6, 0.0, 0.0], np.float32)  # cosine 0.8 and 0.6 with the two queries
    # Interleaved frames of two streams: neither's run of matches counts for the other.
    door1 = detector.check("door", 0, 0.0, both)
    yard1 = detector.check("yard", 0, 0.0, both)
    door2 = detector.check("door", 1, 0.5, both)
    yard2 = detector.check("yard", 1, 0.5, both)
    assert [a.query for a in door1] == ["a person"]
    assert yard1 == []
    assert sorted(a.query for a in door2) == ["a person", "anything"]
    assert [(a.stream, a.query, a.frame_index, a.time) for a in yard2] == [
        ("yard", "anything", 1, 0.5)
    ]
    assert yard2[0].score == pytest.approx(0.8)


def test_a_stream_given_its_own_rules_is_checked_against_them_only():
    everywhere = AlertRule("anything", threshold=0.5, frames=1, cooldown_s=0)
    detector = AlertDetector((everywhere,), np.eye(1, 3, dtype=np.float32))
    frame = np.array([0.8, 0.6, 0.0], np.float32)
    assert [a.query for a in detector.check("door", 0, 0.0, frame)] == ["anything"]
    a_car = AlertRule("a car", ("door",), threshold=0.5, frames=1, cooldown_s=0)
    detector.set_rules("door", (a_car,), np.eye(2, 3, dtype=np.float32)[1:])
    assert detector.rules_for("door") == (a_car,)
    assert [(a.query, round(a.score, 3)) for a in detector.check("door", 1, 0.5, frame)] == [
        ("a car", 0.6)
    ]
    assert [a.query for a in detector.check("yard", 0, 0.0, frame)] == ["anything"]
    detector.set_rules("door", (), np.zeros((0, 3), np.float32))  # none: it fires no more
    assert detector.check("door", 2, 1.0, frame) == [] and detector.rules_for("door") == ()
    detector.forget("door")  # gone, then back under that name: the run's rules again
    assert detector.rules_for("door") == (everywhere,)
    with pytest.raises(ValueError, match="one row per rule"):
        detector.set_rules("door", (a_car,), np.zeros((2, 3), np.float32))


def test_a_rule_kept_across_a_new_set_keeps_its_count_and_cooldown():
    keep = AlertRule("a dog", ("door",), threshold=0.5, frames=2, cooldown_s=10)
    detector = AlertDetector((), np.zeros((0, 2), np.float32))
    detector.set_rules("door", (keep,), np.array([[1.0, 0.0]], np.float32))
    match = np.array([1.0, 0.0], np.float32)
    fired = [bool(detector.check("door", i, float(i), match)) for i in range(2)]
    assert fired == [False, True]
    other = AlertRule("a cat", ("door",), threshold=0.5, frames=1, cooldown_s=0)
    both = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    detector.set_rules("door", (keep, other), both)  # "a dog" is in its cooldown still
    assert [a.query for a in detector.check("door", 2, 2.0, match)] == ["a cat"]
    assert [a.query for a in detector.check("door", 12, 12.0, match)] == ["a dog", "a cat"]


def test_an_alert_keeps_the_frame_for_its_snapshot():
    detector = AlertDetector(
        (AlertRule("x", threshold=-1.0, frames=1),), np.eye(1, 3), clock=lambda: 123.0
    )
    image = np.zeros((4, 6, 3), np.uint8)
    (alert,) = detector.check("cam", 7, 2.5, np.array([0.0, 1.0, 0.0]), image)
    assert alert.image is image and alert.wall == 123.0 and alert.threshold == -1.0
    assert alert.banner == "ALERT x 0.00"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "  "}, "query"),
        ({"threshold": 1.5}, "-1..1"),
        ({"threshold": float("nan")}, "-1..1"),
        ({"frames": 0}, "frames must be a whole number ≥ 1, got 0 .--alert-frames."),
        ({"cooldown_s": -1}, "cooldown_s must be a number of seconds ≥ 0, got -1"),
        ({"streams": "door"}, "tuple of stream names"),
    ],
)
def test_a_bad_rule_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AlertRule(**{"query": "a dog", **kwargs})


def test_a_rule_for_a_stream_the_run_does_not_have_is_refused():
    rules = (AlertRule("a dog", streams=("gate",)),)
    with pytest.raises(ConfigError, match=r"'gate'.*door, yard"):
        check_rule_streams(rules, ["door", "yard"])


# ---------------------------------------------------------------------------------------------
# The overlay's banner.


def test_the_alert_banner_is_red_across_the_top():
    overlay = Overlay()
    plain = overlay.draw(np.full((360, 640, 3), 90, np.uint8), annotation=None, caption=None,
                         now_pts=0.0, hud=Hud())  # fmt: skip
    alerted = overlay.draw(
        np.full((360, 640, 3), 90, np.uint8), annotation=None, caption=None, now_pts=0.0,
        hud=Hud(alert="ALERT a person at the door 0.31"),
    )  # fmt: skip
    top = alerted[:20].astype(int)
    assert (top[..., 0] - top[..., 1]).mean() > 60  # red dominates the band
    assert np.array_equal(plain[200:], alerted[200:])  # nothing else moved


# ---------------------------------------------------------------------------------------------
# Whole runs on the small clip (2 s, 50 frames; analysed at 2 per second) with the tiny random
# CLIP: its scores mean nothing, so a threshold of -1 always matches and 1 never does.


class AlertLog(Observer):
    def __init__(self) -> None:
        self.alerts: list = []
        self.run = None

    async def start(self, run) -> None:
        self.run = run

    def alert(self, stream, alert) -> None:
        self.alerts.append(alert)


def alert_config(clip, folder, name: str, threshold: float, **rule) -> RunConfig:
    outputs = OutputConfig(video=str(folder / f"{name}.mp4"), jsonl=str(folder / f"{name}.jsonl"),
                           preset="ultrafast")  # fmt: skip
    rules = (AlertRule("a rabbit in a meadow", threshold=threshold, **rule),)
    return RunConfig(input=f"clip={clip}", outputs=outputs, alerts=rules)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_clip, tiny_encoder):
    """The clip with an alert that always matches (cooldown 1 s) and one that never does."""
    folder = tmp_path_factory.mktemp("alerts")
    observer = AlertLog()
    loud = alert_config(small_clip, folder, "loud", -1.0, frames=2, cooldown_s=1.0)
    quiet = alert_config(small_clip, folder, "quiet", 1.0, frames=2, cooldown_s=1.0)

    async def both():
        first = await run_pipeline(loud, encoder=tiny_encoder, observers=[observer])
        return first, await run_pipeline(quiet, encoder=tiny_encoder)

    loud_summary, quiet_summary = asyncio.run(both())
    return {
        "folder": folder, "observer": observer,
        "loud": (loud_summary, read_jsonl(folder / "loud.jsonl")),
        "quiet": (quiet_summary, read_jsonl(folder / "quiet.jsonl")),
    }  # fmt: skip


def test_alerts_are_recorded_at_media_time_after_n_frames_and_a_cooldown(two_runs):
    _, records = two_runs["loud"]
    analysed = [r["pts"] for r in records if r["type"] == "analysis"]
    alerts = [r for r in records if r["type"] == "alert"]
    # The same rule applied by hand: the 2nd analysed frame, then the first ≥ 1 s later.
    expected, last = [], None
    for i, pts in enumerate(analysed):
        if i >= 1 and (last is None or pts - last >= 1.0):
            expected.append(pts)
            last = pts
    assert len(expected) >= 2
    assert [a["pts"] for a in alerts] == expected
    for a in alerts:
        assert a["stream"] == "clip" and a["query"] == "a rabbit in a meadow"
        assert -1.0 <= a["score"] <= 1.0 and a["threshold"] == -1.0
        assert a["caption"]  # the caption in force at that frame
        assert "wall" not in a  # a file's records are the same every run


def test_a_file_records_each_alert_right_after_its_frame_analysis(two_runs):
    _, records = two_runs["loud"]
    for i, record in enumerate(records):
        if record["type"] == "alert":
            analysis = next(r for r in reversed(records[:i]) if r["type"] == "analysis")
            assert (analysis["frame"], analysis["pts"]) == (record["frame"], record["pts"])


def test_alerts_leave_the_frames_and_the_other_records_as_they_were(two_runs, probe):
    loud_summary, loud = two_runs["loud"]
    quiet_summary, quiet = two_runs["quiet"]
    assert loud_summary.frames == quiet_summary.frames == 50
    assert not [r for r in quiet if r["type"] == "alert"]  # a threshold of 1 never fires
    assert loud[-1]["type"] == "alert_cleared"  # on at the file's end: over then
    assert [r for r in loud if r["type"] not in ("alert", "alert_cleared")] == quiet
    folder = two_runs["folder"]
    for name in ("loud", "quiet"):
        (video,) = [
            s for s in probe(folder / f"{name}.mp4")["streams"] if s["codec_type"] == "video"
        ]
        assert video["nb_read_frames"] == "50"


def test_observers_get_each_alert_with_its_caption_and_frame(two_runs):
    _, records = two_runs["loud"]
    alerts = two_runs["observer"].alerts
    recorded = [r for r in records if r["type"] == "alert"]
    assert [(a.time, a.caption) for a in alerts] == [(r["pts"], r["caption"]) for r in recorded]
    assert all(a.image is not None and a.image.shape == (180, 320, 3) for a in alerts)
    (stream,) = two_runs["observer"].run.streams
    assert stream.stats.alerts == len(recorded) > 0


def test_the_video_shows_the_alert_banner_from_the_alert_frame(two_runs):
    """The frame at an alert time carries a red band under the random-weights warning that the
    quiet run's frame does not; the first frame (before any alert) is alike in both."""
    folder = two_runs["folder"]
    _, records = two_runs["loud"]
    first_alert = next(r["pts"] for r in records if r["type"] == "alert")

    def frames(name):
        with av.open(str(folder / f"{name}.mp4")) as container:
            return {round(float(f.time), 2): f.to_ndarray(format="rgb24")
                    for f in container.decode(video=0)}  # fmt: skip

    loud, quiet = frames("loud"), frames("quiet")

    def redness(image):
        band = image[18:40].astype(int)  # under the warning banner of a 180-row frame
        return float((band[..., 0] - (band[..., 1] + band[..., 2]) / 2).mean())

    at = round(first_alert, 2)
    assert redness(loud[at]) - redness(quiet[at]) > 30
    assert abs(redness(loud[0.0]) - redness(quiet[0.0])) < 5


async def test_a_live_stream_records_alerts_on_its_timeline_with_wall_time(
    tmp_path, small_clip, tiny_encoder
):
    observer = AlertLog()
    rule = AlertRule("a rabbit", threshold=-1.0, frames=1, cooldown_s=0.6)
    config = RunConfig(input=f"cam={small_clip}", live=True, alerts=(rule,),
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    before = time.time()
    summary = await run_pipeline(config, encoder=tiny_encoder, observers=[observer])
    alerts = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "alert"]
    assert summary.frames > 0 and len(alerts) >= 2
    times = [a["pts"] for a in alerts]
    assert all(t >= 0 for t in times)  # seconds since the stream's first frame
    assert all(b - a >= 0.6 for a, b in itertools.pairwise(times))  # the cooldown
    assert all(before <= a["wall"] <= time.time() for a in alerts)
    assert [a.time for a in observer.alerts] == pytest.approx(times, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# The command line.


def args_for(*argv: str):
    return build_parser().parse_args(["run", *argv, "--jsonl", "out.jsonl"])


def test_cli_alert_names_a_stream_only_when_the_run_has_it(tmp_path):
    from streamer.cli.run import config_from_args

    config = config_from_args(args_for(
        "door=rtsp://cam/1", "yard.mp4", "--alert", "door=a person at the door",
        "--alert", "yard=a fox", "--alert", "e=mc2", "--alert", "a parcel",
        "--alert-threshold", "0.3", "--alert-frames", "3", "--alert-cooldown", "5",
    ))  # fmt: skip
    rules = [(r.query, r.streams) for r in config.alerts]
    assert rules == [
        ("a person at the door", ("door",)),
        ("a fox", ("yard",)),  # an unnamed input is named by its file: yard
        ("e=mc2", ()),  # "e" is no stream of this run: the whole value is the query
        ("a parcel", ()),
    ]
    assert {(r.threshold, r.frames, r.cooldown_s) for r in config.alerts} == {(0.3, 3, 5.0)}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # --alert-threshold, --alert-frames and --alert-cooldown are checked when parsed
        # (tests/streamer/cli/test_cli_values.py); here what only the run's configuration can tell
        (["--alert", "cam="], "no query text"),
        (["--alert", "x", "--webhook", "ftp://host/hook"], "--webhook must be an http"),
        (["--webhook", "http://127.0.0.1:9/hook"], "--webhook sends alerts.*--alert"),
    ],
)
def test_cli_bad_alert_options_name_the_flag(argv, message):
    from streamer.cli.run import config_from_args

    with pytest.raises(ConfigError, match=message):
        config_from_args(args_for("cam=clip.mp4", *argv))


@pytest.mark.parametrize("encoder", ["default", "dinov2"])
def test_cli_alert_without_a_text_tower_is_a_usage_error_before_any_work(
    tmp_path, small_clip, capsys, encoder
):
    out = tmp_path / "out.jsonl"
    code = main(["run", str(small_clip), "--jsonl", str(out), "--encoder", encoder,
                 "--alert", "a person at the door", "--no-progress"])  # fmt: skip
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--alert" in err and "text tower" in err and "--encoder clip" in err
    assert not out.exists()


async def test_an_encoder_without_text_passed_in_is_refused_too(tmp_path, small_clip):
    import encoders

    encoder = encoders.create_encoder("default", weights="random", device="cpu")
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                       alerts=(AlertRule("a dog"),))  # fmt: skip
    with pytest.raises(ConfigError, match="--encoder clip"):
        await run_pipeline(config, encoder=encoder)
    assert not (tmp_path / "a.jsonl").exists()
