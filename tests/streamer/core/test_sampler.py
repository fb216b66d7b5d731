import pytest

from streamer.core.sampler import Sampler


def test_two_fps_on_25fps_video_takes_every_12_5th_frame_on_a_grid():
    sampler = Sampler(2.0)
    taken = [i for i in range(100) if sampler.take("s", i / 25)]
    assert taken == [0, 13, 25, 38, 50, 63, 75, 88]  # t = 0, 0.52, 1.0, 1.52, 2.0, …


def test_none_takes_every_frame():
    sampler = Sampler(None)
    assert all(sampler.take("s", i / 30) for i in range(50))


def test_streams_are_independent_and_grid_starts_at_first_frame():
    sampler = Sampler(1.0)
    assert sampler.take("a", 10.0)
    assert sampler.take("b", 3.3)
    assert not sampler.take("a", 10.5)
    assert sampler.take("a", 11.0)
    assert not sampler.take("b", 4.0)
    assert sampler.take("b", 4.3)


def test_a_gap_does_not_cause_a_burst():
    sampler = Sampler(1.0)
    assert sampler.take("s", 0.0)
    assert sampler.take("s", 5.5)  # after a gap: one frame, then back on the grid
    assert not sampler.take("s", 5.9)
    assert sampler.take("s", 6.0)


def test_rejects_non_positive_rate():
    with pytest.raises(ValueError, match="must be > 0"):
        Sampler(0)


def test_a_stream_given_its_own_rate_changes_from_its_next_frame_and_alone():
    sampler = Sampler(1.0)
    times = [i / 10 for i in range(40)]  # 4 s at 10 fps
    assert sum(sampler.take("a", t) for t in times[:20]) == 2  # 1 per second
    sampler.set_rate("a", 5.0)
    assert sampler.rate("a") == 5.0 and sampler.rate("b") == 1.0
    assert sampler.take("a", times[20])  # the new grid starts at once
    assert sum(sampler.take("a", t) for t in times[21:]) == 9  # then 5 per second
    assert sum(sampler.take("b", t) for t in times) == 4  # the other stream keeps its rate
    sampler.forget("a")
    assert sampler.rate("a") == 1.0
