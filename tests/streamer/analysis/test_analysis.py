import asyncio

import numpy as np
import pytest

from streamer.analysis.analyzer import Analyzer, Vocabulary
from streamer.analysis.captioner import (
    CaptionPolicy,
    CaptionSchedule,
    LlmCaptioner,
    near_duplicate,
    tag_caption,
    tag_caption_text,
)
from streamer.analysis.labels import default_labels, load_labels, prompts
from streamer.core.frame import Annotation, Tag
from streamer.llm import CaptionRequest, LlmUnavailableError


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _vocab():
    emb = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0]), _unit([0, 0, 1])])
    return Vocabulary(("dog", "cat", "car"), emb, logit_scale=100.0)


def test_tags_are_a_softmax_over_the_vocabulary_best_first():
    analyzer = Analyzer(_vocab(), top_k=2)
    ann = analyzer.analyze("s", 0, 0.0, _unit([0.2, 1.0, 0.1]))
    assert [t.label for t in ann.tags] == ["cat", "dog"]
    assert ann.tags[0].score > 0.99  # scaled by 100, the nearest label dominates
    full = Analyzer(_vocab(), top_k=3).analyze("s", 0, 0.0, _unit([0.2, 1.0, 0.1]))
    assert sum(t.score for t in full.tags) == pytest.approx(1.0, abs=1e-5)


def test_scene_score_is_distance_from_the_caption_reference_per_stream():
    analyzer = Analyzer(_vocab())
    a = _unit([1, 0, 0])
    assert analyzer.analyze("s", 0, 0.0, a).scene_score == 0.0  # no reference yet
    analyzer.set_reference("s", a)
    assert analyzer.analyze("s", 1, 1.0, a).scene_score == pytest.approx(0.0, abs=1e-6)
    assert analyzer.analyze("s", 2, 2.0, _unit([0, 1, 0])).scene_score == pytest.approx(1.0)
    assert analyzer.analyze("other", 0, 0.0, _unit([0, 1, 0])).scene_score == 0.0


def test_a_stream_with_labels_of_its_own_is_tagged_from_them_the_others_from_the_runs():
    analyzer = Analyzer(_vocab(), top_k=1)
    own = Vocabulary(("boat", "tree"), np.stack([_unit([0, 1, 0]), _unit([1, 0, 0])]))
    analyzer.use("yard", own)
    frame = _unit([1.0, 0.1, 0.0])
    assert analyzer.analyze("yard", 0, 0.0, frame).tags[0].label == "tree"
    assert analyzer.analyze("door", 0, 0.0, frame).tags[0].label == "dog"
    assert analyzer.vocabulary_of("yard") is own and analyzer.vocabulary_of("door") is not own
    analyzer.use("yard", None)  # back to the run's
    assert analyzer.analyze("yard", 1, 0.5, frame).tags[0].label == "dog"
    analyzer.use("yard", own)
    analyzer.set_reference("yard", frame)
    analyzer.forget("yard")  # a stream that left: nothing of it kept
    assert analyzer.vocabulary_of("yard") is analyzer.vocabulary
    assert analyzer.analyze("yard", 2, 1.0, _unit([0, 1, 0])).scene_score == 0.0


def test_no_vocabulary_means_no_tags():
    assert Analyzer(None).analyze("s", 0, 0.0, _unit([1, 0, 0])).tags == ()


def _ann(pts, scene, stream="s"):
    return Annotation(stream, int(pts * 25), pts, (Tag("dog", 0.9),), scene)


def test_schedule_first_frame_scene_change_and_max_age():
    schedule = CaptionSchedule(CaptionPolicy(min_interval=2.0, max_age=10.0, scene_threshold=0.3))
    assert schedule.due(_ann(0.0, 0.0))  # first analysed frame
    assert not schedule.due(_ann(1.0, 0.9))  # scene change, but too soon
    assert not schedule.due(_ann(3.0, 0.1))  # old enough, but same scene
    assert schedule.due(_ann(3.5, 0.5))  # scene change after min_interval
    assert not schedule.due(_ann(13.0, 0.0))
    assert schedule.due(_ann(13.5, 0.0))  # refresh: last caption 10 s old
    assert schedule.due(_ann(0.0, 0.0, stream="other"))


def test_policy_validation_names_the_field():
    with pytest.raises(ValueError, match="scene_threshold must be a cosine distance > 0"):
        CaptionPolicy(scene_threshold=0)
    with pytest.raises(ValueError, match=r"max_age must be ≥ min_interval \(5\), got 1"):
        CaptionPolicy(min_interval=5, max_age=1)


def test_tag_captions_are_marked():
    first = tag_caption(_ann(0.0, 0.0))
    assert first.source == "tags" and first.text == "Looks like: dog"
    assert "text tower" in tag_caption_text(Annotation("s", 0, 0.0, (), 0.0))


def test_a_stream_added_again_under_a_name_is_captioned_from_its_first_frame():
    # Its times start at 0 again: with the earlier stream's last caption time kept, it had
    # no caption until it had run as long as that one had (minutes, days).
    schedule = CaptionSchedule(CaptionPolicy(min_interval=2.0, max_age=10.0, scene_threshold=0.3))
    assert schedule.due(_ann(0.0, 0.0)) and schedule.due(_ann(150.0, 0.0))
    schedule.forget("s")
    assert schedule.due(_ann(0.0, 0.0))
    assert schedule.due(_ann(150.0, 0.0))  # the removed stream's last analysis, late
    assert schedule.due(_ann(0.5, 0.0))  # time went back: the new stream, afresh
    assert not schedule.due(_ann(1.0, 0.0))


def test_labels_default_list_file_and_errors(tmp_path):
    labels = default_labels()
    assert len(labels) > 50 and "dog" in labels and len(set(labels)) == len(labels)
    assert load_labels("dog, cat ,dog") == ("dog", "cat")
    f = tmp_path / "l.txt"
    f.write_text("# mine\nforklift\n\npallet # wooden\n")
    assert load_labels(str(f)) == ("forklift", "pallet")
    with pytest.raises(ValueError, match="does not exist"):
        load_labels(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="no labels"):
        load_labels(" , ")
    assert prompts(("dog",)) == ["a photo of dog."]


class _GatedClient:
    """An LLM client whose answers the test releases one by one."""

    def __init__(self):
        self.asked: list[float] = []
        self.gates: list[asyncio.Event] = []

    async def caption(self, request):
        self.asked.append(request.time)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return f"caption for t={request.time}"


async def test_live_llm_captioner_keeps_one_request_in_flight_and_the_newest_candidate():
    client = _GatedClient()
    tasks = []
    captioner = LlmCaptioner(client, max_in_flight=1, spawn=lambda c: tasks.append(
        asyncio.ensure_future(c)) or tasks[-1])  # fmt: skip
    shown = []
    for t in (1.0, 2.0, 3.0):  # 2.0 waits as the candidate, then 3.0 replaces it
        ann = _ann(t, 0.5)
        captioner.for_live(CaptionRequest("s", t), ann, shown.append, lambda: 99.0)
        await asyncio.sleep(0)
    assert client.asked == [1.0]
    client.gates[0].set()
    await asyncio.sleep(0.01)
    assert [c.text for c in shown] == ["caption for t=1.0"] and shown[0].pts == 99.0
    assert client.asked == [1.0, 3.0]  # the newest candidate, not the stale one
    client.gates[1].set()
    await asyncio.gather(*tasks)
    assert [c.source for c in shown] == ["llm", "llm"]


async def test_a_live_caption_point_gets_the_tags_while_the_request_out_is_too_slow():
    # A server that took the request and never answered left the caption of 40 s ago on
    # screen: now a caption point after `slow_after` shows the tags, and the LLM's answer
    # still shows when it comes, then the newest candidate is asked.
    client = _GatedClient()
    tasks = []
    clock = [100.0]
    captioner = LlmCaptioner(client, 1, spawn=lambda c: tasks.append(asyncio.ensure_future(c))
                             or tasks[-1], slow_after=5.0, clock=lambda: clock[0])  # fmt: skip
    shown = []
    for t, now in ((1.0, 100.0), (3.0, 104.0), (11.0, 110.0), (21.0, 120.0)):
        clock[0] = now
        captioner.for_live(CaptionRequest("s", t), _ann(t, 0.5), shown.append, lambda: clock[0])
        await asyncio.sleep(0)
    # 3.0 came 4 s in (within slow_after): nothing; 11.0 and 21.0 came later: the tags
    assert [(c.source, c.pts) for c in shown] == [("tags", 110.0), ("tags", 120.0)]
    assert shown[0].frame_index == _ann(11.0, 0.5).frame_index
    client.gates[0].set()
    await asyncio.sleep(0.01)
    assert [c.source for c in shown] == ["tags", "tags", "llm"]
    assert client.asked == [1.0, 21.0]
    client.gates[1].set()
    await asyncio.gather(*tasks)


async def test_llm_failure_falls_back_to_the_tag_caption():
    class Down:
        async def caption(self, request):
            raise LlmUnavailableError("server down", kind="unreachable")

    tasks = []
    captioner = LlmCaptioner(Down(), 1, spawn=lambda c: tasks.append(asyncio.ensure_future(c))
                             or tasks[-1])  # fmt: skip
    caption = await captioner.for_file(CaptionRequest("s", 0.0), _ann(0.0, 0.0))
    assert caption.source == "tags" and caption.text == "Looks like: dog"


def test_near_duplicates():
    assert near_duplicate("A dog runs.", "a dog runs!")
    assert not near_duplicate("A dog runs on grass.", "A cat sleeps on a sofa.")
