"""Hybrid search: self-retrieval by picture with the tiny random CLIP, captions found through
the full-text side, filters, the ANN index, and the queries refused with a clear message."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import cv2
import numpy as np
import pytest
from index_helpers import annotate_clip, decoded_frames, random_moments, tiny_spec

from streamer.archive.archive import Archive
from streamer.archive.embedder import Embedder
from streamer.archive.index import IndexPolicy
from streamer.archive.search import Query, parse_when
from streamer.archive.writer import WriterPolicy
from streamer.errors import ConfigError

NOW = time.time()


def build(root, encoder, moments, index_policy=None):
    """An archive holding `moments`, written through the writer; closed again."""
    with Archive.create(root, tiny_spec(encoder)) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=64, flush_s=0.1), index_policy)
        for moment in moments:
            writer.put(moment)
        assert writer.flush(60) and writer.wait_for_indexes(120)
        assert writer.stats().index_error is None
    return Archive(root, embedder=Embedder.of(encoder))


@pytest.fixture(scope="module")
def clip_moments(tiny_encoder, sample_clip):
    return annotate_clip(tiny_encoder, sample_clip, every=5)


@pytest.fixture(scope="module")
def bunny(tmp_path_factory, tiny_encoder, clip_moments):
    """The sample clip's moments in an archive (one row a second), one of them captioned by
    an "LLM" with words no tag caption has."""
    moments = list(clip_moments)
    moments[3] = dataclasses.replace(
        moments[3], caption="A delivery van stops at the gate.", caption_source="llm"
    )
    return build(tmp_path_factory.mktemp("bunny"), tiny_encoder, moments)


def jpeg_file(folder, name, image):
    path = folder / name
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def test_the_clip_is_indexed_a_row_a_second(clip_moments):
    assert [m.media_time for m in clip_moments] == pytest.approx([0, 1, 2, 3, 4, 5])
    assert all(m.thumbnail and m.tags and m.caption.startswith("Looks like") for m in clip_moments)


def test_an_indexed_frame_searched_as_a_picture_comes_back_first_at_its_time(
    bunny, clip_moments, sample_clip, tmp_path
):
    frames = dict(decoded_frames(sample_clip))
    for moment in clip_moments:
        photo = jpeg_file(tmp_path, f"at-{moment.media_time}.jpg", frames[moment.media_time])
        best = bunny.search(image=photo, k=3)[0]
        assert best.moment.media_time == moment.media_time
        assert best.similarity > 0.999 and best.vector_rank == 1 and best.text_rank is None


def test_frames_between_the_rows_come_back_within_a_second(bunny, sample_clip, tmp_path):
    frames = decoded_frames(sample_clip)[1::3]  # none of them an indexed frame
    near = 0
    for pts, image in frames:
        best = bunny.search(image=image, k=1)[0]
        near += abs(best.moment.media_time - pts) <= 1.0
    # Random weights carry no meaning, but neighbouring frames share most of their pixels and
    # so most of their embedding; a few frames at a cut may land on another second.
    assert near / len(frames) >= 0.9


def test_a_word_of_a_caption_finds_its_moment_through_the_text_side(bunny):
    for words in ("delivery van", "vans", "the GATE"):  # stemmed, case-folded
        best = bunny.search(words, k=3)[0]
        assert best.moment.caption == "A delivery van stops at the gate.", words
        assert best.text_rank == 1 and best.vector_rank is not None  # both sides found it
        assert best.moment.media_time == pytest.approx(3.0)


def test_without_a_text_tower_words_search_the_captions_only(bunny, tiny_encoder):
    captions_only = Embedder(Embedder.of(tiny_encoder).image, None, tiny_spec(tiny_encoder))
    archive = Archive(bunny.root, embedder=captions_only)
    hits = archive.search("delivery", k=5)
    assert [h.moment.media_time for h in hits] == pytest.approx([3.0])
    assert hits[0].vector_rank is None and hits[0].similarity is None
    assert archive.search("helicopter", k=5) == []


def test_a_thumbnail_can_be_written_to_a_file(bunny, tmp_path):
    hit = bunny.search("delivery van", k=1)[0]
    path = hit.save_thumbnail(tmp_path / "hit.jpg")
    picture = cv2.imread(str(path))
    assert picture is not None and max(picture.shape[:2]) == 192


# --- filters ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yard(tmp_path_factory, tiny_encoder, clip_moments):
    """Three streams: "front" seen 5 h, 3 h, 1 h and 10 min ago; "back" now, tagged "a parked car"
    at one moment; "o'hare" (a quote in its name)."""
    global NOW  # "now" is when the rows are made: a long session before must not age them
    NOW = time.time()
    ago = (5 * 3600, 3 * 3600, 3600, 600)
    front = [dataclasses.replace(m, stream="front", wall_time=NOW - s)
             for m, s in zip(clip_moments, ago, strict=False)]  # fmt: skip
    back = [dataclasses.replace(m, stream="back", wall_time=NOW - 60 + m.media_time)
            for m in clip_moments]  # fmt: skip
    tags = (("a parked car", 0.8), ("a wet road", 0.1), ("o'neil's 50%_off", 0.05))
    back[2] = dataclasses.replace(back[2], tags=tags)
    quoted = [dataclasses.replace(clip_moments[0], stream="o'hare", wall_time=NOW)]
    return build(tmp_path_factory.mktemp("yard"), tiny_encoder, front + back + quoted)


def search_all(archive, **filters):
    hits = archive.search(image=np.full((16, 16, 3), 90, np.uint8), k=100, **filters)
    return sorted((h.moment.stream, round(NOW - h.moment.wall_time)) for h in hits)


def test_filters_by_stream_and_by_a_name_with_a_quote(yard):
    assert {s for s, _ in search_all(yard, stream="front")} == {"front"}
    assert len(search_all(yard, stream="back")) == 6
    assert search_all(yard, stream="o'hare") == [("o'hare", 0)]


def test_filters_by_time_relative_and_absolute(yard):
    assert search_all(yard, stream="front", since="2h ago") == [("front", 600), ("front", 3600)]
    assert search_all(yard, stream="front", until="2 hours ago") == [("front", 10800),
                                                                     ("front", 18000)]  # fmt: skip
    four_hours_ago = dt.datetime.fromtimestamp(NOW - 4 * 3600)
    assert search_all(yard, stream="front", since=four_hours_ago.isoformat(),
                      until=NOW - 1800) == [("front", 3600), ("front", 10800)]  # fmt: skip


def test_filters_by_a_tag_among_the_tags(yard):
    assert search_all(yard, tag="a parked car") == [("back", 58)]
    assert search_all(yard, tag="a wet road") == [("back", 58)]  # not only the first tag
    assert search_all(yard, tag="a submarine") == []


def test_a_tag_matches_a_whole_label_in_any_case_and_as_written(yard):
    assert search_all(yard, tag="A Parked Car ") == [("back", 58)]
    assert search_all(yard, tag="a parked") == [] and search_all(yard, tag="car") == []
    assert search_all(yard, tag="O'Neil's 50%_OFF") == [("back", 58)]
    # LIKE's wildcards in a label are its own characters, not patterns
    for pattern in ("o'neil's 50%xoff", "o'neil's 50x_off", "%", "_", "a parked car%"):
        assert search_all(yard, tag=pattern) == [], pattern


def test_filters_combine(yard):
    assert search_all(yard, stream="back", tag="a parked car", since=NOW - 300) == [("back", 58)]
    assert search_all(yard, stream="front", tag="a parked car") == []


# --- the ANN index ------------------------------------------------------------------------------


def test_past_the_threshold_an_ann_index_is_built_and_self_retrieval_still_holds(
    tmp_path, tiny_encoder, clip_moments, sample_clip
):
    noise = random_moments(400, tiny_encoder.info.dim, start_wall=1e9)
    archive = build(tmp_path / "a", tiny_encoder, [*noise, *clip_moments],
                    IndexPolicy(ann_rows=300))  # fmt: skip
    assert archive.info().vector_index
    frames = dict(decoded_frames(sample_clip))
    for moment in clip_moments:
        best = archive.search(image=frames[moment.media_time], k=1)[0]
        assert (best.moment.stream, best.moment.media_time) == ("bunny", moment.media_time)


# --- queries refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "needs words to look for, or a picture"),
        ({"text": "   "}, "needs words to look for"),
        ({"text": "x", "k": 0}, "-k must be an integer ≥ 1, got 0"),
        ({"text": "x", "since": "1h ago", "until": "2h ago"}, r"--since \(.*\) is after --until"),
        ({"text": "x", "since": "last tuesday"}, "--since 'last tuesday' is not a time"),
        ({"text": "x", "until": "2024-13-45"}, "--until '2024-13-45' is not a time"),
    ],
    ids=["nothing", "blank", "k", "since-after-until", "bad-since", "bad-until"],
)
def test_bad_queries_are_config_errors_naming_the_problem(query, message):
    with pytest.raises(ConfigError, match=message):
        Query(**query)


def test_an_unknown_stream_is_refused_listing_the_streams(yard):
    with pytest.raises(ConfigError, match="unknown stream 'side'; the archive's streams: back, "
                                          "front, o'hare"):  # fmt: skip
        yard.search("van", stream="side")


def test_an_unreadable_picture_is_refused_naming_the_file(bunny, tmp_path):
    with pytest.raises(ConfigError, match=r"--image .*nope\.jpg: no such file"):
        bunny.search(image=tmp_path / "nope.jpg")
    # ... as the query is made: before the archive's encoder loads (seconds) to embed it
    with pytest.raises(ConfigError, match=r"--image .*nope\.jpg: no such file"):
        Query(image=str(tmp_path / "nope.jpg"))
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ConfigError, match=r"--image .*notes\.jpg: cannot read it as a picture"):
        bunny.search(image=text)
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        bunny.search(image=np.zeros((4, 4), np.uint8))


def test_times_relative_to_now():
    now = dt.datetime(2024, 5, 2, 15, 30).timestamp()
    assert parse_when("2h ago", now, "--since") == now - 7200
    assert parse_when("90m ago", now, "--since") == now - 5400
    assert parse_when("45 seconds ago", now, "--since") == now - 45
    assert parse_when("1.5 days ago", now, "--since") == now - 1.5 * 86400
    assert parse_when("1w ago", now, "--since") == now - 7 * 86400
    assert parse_when("now", now, "--until") == now
    assert parse_when("today", now, "--since") == dt.datetime(2024, 5, 2).timestamp()
    assert parse_when("Yesterday", now, "--since") == dt.datetime(2024, 5, 1).timestamp()
    assert (
        parse_when("2024-05-01T14:30", now, "--since")
        == dt.datetime(2024, 5, 1, 14, 30).timestamp()
    )
    assert (
        parse_when("2024-05-01T14:30:00Z", now, "--since")
        == dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.UTC).timestamp()
    )
    assert parse_when(1234.5, now, "--since") == 1234.5
    assert parse_when(None, now, "--since") is None


def test_rows_written_after_the_indexes_are_found_by_filters_and_words(
    tmp_path, tiny_encoder, clip_moments
):
    with Archive.create(tmp_path / "a", tiny_spec(tiny_encoder)) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=64, flush_s=0.05), IndexPolicy(ann_rows=10))
        for moment in clip_moments:
            writer.put(moment)
        assert writer.flush(60) and writer.wait_for_indexes(60)
        late = dataclasses.replace(
            clip_moments[2], stream="late", caption="A heron lands.", tags=(("a heron", 0.7),)
        )
        writer.put(late)  # after every index was built: in no index yet
        assert writer.flush(60)
        assert archive.table().lance.list_indices()[0].num_unindexed_rows == 1
        reader = Archive(tmp_path / "a", embedder=Embedder.of(tiny_encoder))
        for hits in (reader.search("heron", k=3), reader.search("x", stream="late", k=3),
                     reader.search("x", tag="a heron", k=3)):  # fmt: skip
            assert hits and hits[0].moment.caption == "A heron lands."
