"""LLM captions inside the pipeline: the file contract (media-time captions the output waits
for), the live contract (never in the way of the video), and a server that fails."""

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import pytest
from live_helpers import wait_until
from media import parse_srt, parse_vtt, read_jsonl
from servers.llm_server import llm_server  # noqa: F401  (session fixture)

from bench.harness.lmstudio import LmStudioDouble
from streamer import AnalysisConfig, CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.core.retry import RetryPolicy
from streamer.llm import DEFAULT_RETRY, LlmConfig

pytestmark = pytest.mark.integration


@pytest.fixture
async def double():
    server = LmStudioDouble()
    await server.start()
    yield server
    await server.stop()


def _config(clip, out, llm, **kwargs) -> RunConfig:
    outputs = OutputConfig(srt=str(out / "a.srt"), jsonl=str(out / "a.jsonl"))
    return RunConfig(input=str(clip), outputs=outputs, llm=llm, **kwargs)


def _captions(path) -> list[dict]:
    return [r for r in read_jsonl(path) if r["type"] == "caption"]


# One caption a second on a 2 s clip: points at 0 s and 1 s (every analysed frame a "change").
ONE_ATTEMPT = dataclasses.replace(DEFAULT_RETRY, max_attempts=1)  # the first failure counts
EVERY_SECOND = CaptionPolicy(min_interval=1.0, max_age=1.0, scene_threshold=1e-9)


async def test_file_captions_come_from_the_llm_at_media_time_with_the_frame(
    tmp_path, small_clip, tiny_encoder, double
):
    scenes = {1: "A big rabbit wakes up in a green meadow", 2: "Birds fly over the hills at dawn"}

    def answer(body, count):
        parts = body["messages"][-1]["content"]
        image = any(p.get("type") == "image_url" for p in parts if isinstance(p, dict))
        return f"{scenes[count]} ({'seen' if image else 'blind'})."

    double.answer = answer
    config = _config(small_clip, tmp_path, LlmConfig(url=double.url), captions=EVERY_SECOND)
    summary = await run_pipeline(config, encoder=tiny_encoder)
    captions = _captions(tmp_path / "a.jsonl")
    assert [c["source"] for c in captions] == ["llm", "llm"]
    assert [c["pts"] for c in captions] == [0.0, 1.0]
    assert all("(seen)" in c["text"] for c in captions)  # a vision model got the frame
    cues = parse_srt((tmp_path / "a.srt").read_text())
    assert [text for _, _, text in cues] == [c["text"] for c in captions]
    assert double.counts["POST /v1/chat/completions"] >= 2 and summary.captions == 2


async def test_a_near_duplicate_answer_is_not_a_new_caption(
    tmp_path, small_clip, tiny_encoder, double
):
    double.answer = lambda body, count: [
        "A grey rabbit sits in the grass.",
        "a grey rabbit sits in the grass!",
    ][count % 2]
    config = _config(small_clip, tmp_path, LlmConfig(url=double.url), captions=EVERY_SECOND)
    await run_pipeline(config, encoder=tiny_encoder)
    assert len(_captions(tmp_path / "a.jsonl")) == 1
    assert len(parse_srt((tmp_path / "a.srt").read_text())) == 1


def _answer_by_media_time(body, count) -> str:
    """Like a real model at temperature 0, the answer depends on the request, not on when it
    arrives: here on the media time the prompt names."""
    prompt = str(body["messages"][-1]["content"])
    return "The rabbit stretches." if "0:00:01" in prompt else "A rabbit in a meadow."


async def test_file_run_gives_identical_subtitles_at_any_server_speed(
    tmp_path, small_clip, tiny_encoder, double
):
    srts = []
    for name, delay in (("fast", 0.0), ("slow", 0.4)):
        double.delay_s = delay
        out = tmp_path / name
        out.mkdir()
        double.answer = _answer_by_media_time
        await run_pipeline(_config(small_clip, out, LlmConfig(url=double.url),
                                   captions=EVERY_SECOND), encoder=tiny_encoder)  # fmt: skip
        srts.append((out / "a.srt").read_text())
    assert srts[0] == srts[1] and "The rabbit stretches." in srts[0]


async def test_no_server_gives_tag_captions_and_says_so(tmp_path, small_clip, tiny_encoder, caplog):
    refused = LlmConfig(url="http://127.0.0.1:9/v1", connect_timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="streamer"):
        await run_pipeline(_config(small_clip, tmp_path, refused), encoder=tiny_encoder)
    assert {c["source"] for c in _captions(tmp_path / "a.jsonl")} == {"tags"}
    assert "captions come from the tags" in caplog.text


async def test_a_caption_slower_than_the_wait_falls_back_to_tags(
    tmp_path, small_clip, tiny_encoder, double
):
    double.delay_s = 1.0
    config = _config(small_clip, tmp_path, LlmConfig(url=double.url), caption_wait=0.1)
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert _captions(tmp_path / "a.jsonl")[0]["source"] == "tags"
    assert summary.frames == 50


async def test_live_captions_never_slow_the_video_and_respect_the_throttle(
    tmp_path, small_clip, tiny_encoder, double
):
    double.delay_s = 0.8  # a slow server: each caption takes most of a second
    policy = CaptionPolicy(min_interval=0.5, max_age=0.5, scene_threshold=1e-9)
    config = _config(small_clip, tmp_path, LlmConfig(url=double.url), live=True, captions=policy,
                     analysis=AnalysisConfig(analyze_fps=10.0))  # fmt: skip
    started = time.monotonic()
    summary = await run_pipeline(config, encoder=tiny_encoder)
    elapsed = time.monotonic() - started
    (stream,) = summary.streams
    assert stream.frames >= 45 and stream.latency_ms[2] < 500  # the video kept its pace
    # One request at a time per stream, each ~0.8 s: at most one per 0.8 s of the ~2 s clip,
    # plus the probe's; never one per analysed frame (20 of them).
    chats = double.counts["POST /v1/chat/completions"]
    assert 1 <= chats <= elapsed / 0.8 + 2
    assert double.max_in_flight == 1


async def test_server_down_mid_run_the_video_goes_on_and_captions_fall_back(
    tmp_path, small_clip, tiny_encoder, double
):
    policy = CaptionPolicy(min_interval=0.3, max_age=0.3, scene_threshold=1e-9)
    config = _config(small_clip, tmp_path, LlmConfig(url=double.url, connect_timeout=0.5,
                                                     retry=ONE_ATTEMPT),
                     live=True, captions=policy)  # fmt: skip

    async def take_it_down():
        await asyncio.sleep(0.7)
        await double.stop()

    summary, _ = await asyncio.gather(run_pipeline(config, encoder=tiny_encoder), take_it_down())
    assert summary.streams[0].frames >= 45
    sources = [c["source"] for c in _captions(tmp_path / "a.jsonl")]
    assert sources[0] == "llm" and "tags" in sources


@pytest.mark.slow
async def test_real_llama_cpp_server_same_file_twice_gives_identical_srt(
    tmp_path,
    small_clip,
    tiny_encoder,
    llm_server,  # noqa: F811
):
    srts = []
    for name in ("one", "two"):
        out = tmp_path / name
        out.mkdir()
        llm = LlmConfig(url=llm_server.url, temperature=0.0, read_timeout=60.0)
        # A generous wait: on a loaded 2-core machine the real server can take 15 s or more.
        config = _config(small_clip, out, llm, captions=EVERY_SECOND, caption_wait=180.0)
        await run_pipeline(config, encoder=tiny_encoder)
        captions = _captions(out / "a.jsonl")
        assert [c["source"] for c in captions] == ["llm"] * len(captions) and captions
        srts.append((out / "a.srt").read_text())
    assert srts[0] == srts[1]


async def test_real_llama_cpp_server_live_run_shows_its_captions(
    tmp_path,
    long_clip,
    tiny_encoder,
    llm_server,  # noqa: F811
):
    """Live against the real server: the first caption shown is the server's. The run goes on
    until it has come (a loaded machine can make the server take seconds), then stops; the
    request counts as slow (tags' captions meanwhile) only after 60 s, not the default 5."""
    policy = CaptionPolicy(min_interval=0.5, max_age=0.5, scene_threshold=1e-9)
    llm = LlmConfig(url=llm_server.url, temperature=0.0, read_timeout=60.0, slow_after=60.0)
    config = _config(long_clip, tmp_path, llm, live=True, captions=policy)
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    try:
        await wait_until(lambda: '"type": "caption"' in _whole_lines(tmp_path / "a.jsonl"), 90,
                         "a caption")  # fmt: skip
    finally:
        stop.set()
    summary = await asyncio.wait_for(run, 30)
    captions = _captions(tmp_path / "a.jsonl")
    assert summary.streams[0].frames > 0
    assert captions and captions[0]["source"] == "llm" and captions[0]["text"].strip()


def _whole_lines(path) -> str:
    """The complete lines written so far (none while the file does not exist yet)."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1]


# Faults a retry can cure (the client classes them as the server being unavailable), and one
# it cannot: an empty answer is not asked again, the same prompt would give the same nothing.
RETRYABLE = ["error-200", "loading-503", "500", "429", "drop", "garbage"]
# Only the first analysed frame is a caption point on the 2 s clip: one request, in order.
ONE_POINT = CaptionPolicy(min_interval=10.0, max_age=10.0, scene_threshold=2.0)
ONE_RETRY = {"retry": RetryPolicy(initial=0.05, cap=0.1, jitter=1.0, max_attempts=2)}
SECOND_ANSWER = "Caption 2 by qwen2-vl-2b-instruct, with an image."  # the double's 2nd reply


@pytest.mark.parametrize(
    ("fault", "times", "source", "chats"),
    [
        *[(fault, 1, "llm", 2) for fault in RETRYABLE],  # the retry gets the answer
        *[(fault, 2, "tags", 2) for fault in RETRYABLE],  # the retry fails too: tags
        ("empty", 1, "tags", 1),  # not retried: tags at once
    ],
)
async def test_a_server_fault_gives_the_caption_it_must(
    tmp_path, small_clip, tiny_encoder, double, fault, times, source, chats
):
    """File contract, one caption point (frame 0): what the JSON Lines and the SRT say after
    each fault, and how many requests it took."""
    double.faults.extend([fault] * times)
    llm = LlmConfig(url=double.url, **ONE_RETRY)
    summary = await run_pipeline(_config(small_clip, tmp_path, llm, captions=ONE_POINT),
                                 encoder=tiny_encoder)  # fmt: skip
    assert summary.frames == 50 and summary.captions == 1
    records = read_jsonl(tmp_path / "a.jsonl")
    (caption,) = _captions(tmp_path / "a.jsonl")
    first = next(r for r in records if r["type"] == "analysis")
    tags = "Looks like: " + ", ".join(tag["label"] for tag in first["tags"])
    assert (caption["source"], caption["frame"], caption["pts"]) == (source, 0, 0.0)
    assert caption["text"] == (SECOND_ANSWER if source == "llm" else tags)
    assert double.chat_count() == chats
    assert parse_srt((tmp_path / "a.srt").read_text()) == [(0.0, 2.0, caption["text"])]


@pytest.mark.parametrize("fault", RETRYABLE)
async def test_a_failing_server_opens_the_breaker_and_the_live_video_keeps_its_rate(
    tmp_path, small_clip, tiny_encoder, double, fault
):
    """Live: three failures in a row (the first caption's two attempts, the second's one)
    open the circuit breaker, so nothing more is sent during the 2 s clip; every caption
    comes from the tags, and the video never waits."""
    double.faults.extend([fault] * 3)
    policy = CaptionPolicy(min_interval=0.3, max_age=0.3, scene_threshold=1e-9)
    llm = LlmConfig(url=double.url, breaker_failures=3, **ONE_RETRY)
    summary = await run_pipeline(_config(small_clip, tmp_path, llm, live=True, captions=policy),
                                 encoder=tiny_encoder)  # fmt: skip
    (stream,) = summary.streams
    assert stream.frames >= 45 and stream.latency_ms[2] < 1000
    assert double.chat_count() == 3 and not double.faults
    captions = _captions(tmp_path / "a.jsonl")
    assert captions and {c["source"] for c in captions} == {"tags"}
    assert all(c["text"].startswith("Looks like: ") for c in captions)
    cues = parse_srt((tmp_path / "a.srt").read_text())
    assert [text for _, _, text in cues] == [c["text"] for c in captions]


async def test_an_empty_answer_live_shows_the_tags_then_the_next_answer(
    tmp_path, small_clip, tiny_encoder, double
):
    """Live: an empty answer is a failed request but not a server failure: the first caption
    comes from the tags, the breaker stays closed, and the next request's answer is shown."""
    double.faults.append("empty")
    policy = CaptionPolicy(min_interval=0.3, max_age=0.3, scene_threshold=1e-9)
    llm = LlmConfig(url=double.url, **ONE_RETRY)
    summary = await run_pipeline(_config(small_clip, tmp_path, llm, live=True, captions=policy),
                                 encoder=tiny_encoder)  # fmt: skip
    (stream,) = summary.streams
    assert stream.frames >= 45 and stream.latency_ms[2] < 1000
    captions = _captions(tmp_path / "a.jsonl")
    assert [c["source"] for c in captions[:2]] == ["tags", "llm"]
    assert captions[0]["text"].startswith("Looks like: ") and captions[1]["text"] == SECOND_ANSWER
    assert captions[0]["pts"] < captions[1]["pts"]  # live: each shows from when it arrived
    assert double.chat_count() >= 2


async def test_captions_resume_when_the_server_comes_back(
    tmp_path, long_clip, tiny_encoder, double, caplog
):
    caplog.set_level(logging.INFO, "streamer")
    policy = CaptionPolicy(min_interval=0.3, max_age=0.3, scene_threshold=1e-9)
    llm = LlmConfig(url=double.url, connect_timeout=0.5, retry=ONE_ATTEMPT, breaker_failures=1,
                    breaker_probe_every=0.5)  # fmt: skip
    double.answer = lambda body, count: ["A rabbit.", "Two birds fly.", "A tree falls."][count % 3]
    config = _config(long_clip, tmp_path, llm, live=True, captions=policy)
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    sources = lambda: [c["source"] for c in _captions(tmp_path / "a.jsonl")]  # noqa: E731
    try:
        await asyncio.sleep(1.5)
        await double.stop()
        await wait_until(lambda: sources()[-1:] == ["tags"], 10, "tag captions while it is down")
        await double.start()
        await wait_until(lambda: sources()[-1:] == ["llm"], 10, "LLM captions again")
    finally:
        stop.set()
    summary = await asyncio.wait_for(run, 30)
    assert summary.streams[0].frames > 0
    # The warning says why (it named only the time), and the return is told as one.
    (down,) = [r.getMessage() for r in caplog.records if "LLM down since" in r.getMessage()]
    assert "cannot reach the LLM server at" in down, down
    assert any(r.getMessage().startswith("LLM back: LLM ok") for r in caplog.records)


async def test_the_llm_sees_the_frame_without_the_overlay_drawn_on_it(
    tmp_path, small_clip, tiny_encoder, double, monkeypatch
):
    """Live, a frame is written while its caption request is still to be encoded: the writer
    draws on its own copy of a sampled frame, so the JPEG made later on the background thread
    shows the video, not the caption box and tags drawn for the output."""
    import base64

    import av
    import cv2
    import numpy as np

    import streamer.llm.client as client_module

    def late_jpeg(*args):  # a busy machine: the low-priority thread gets a core late
        time.sleep(0.3)
        return encode_jpeg(*args)

    encode_jpeg = client_module.encode_jpeg
    monkeypatch.setattr(client_module, "encode_jpeg", late_jpeg)

    config = RunConfig(
        input=str(small_clip),
        outputs=OutputConfig(video=str(tmp_path / "a.mp4"), jsonl=str(tmp_path / "a.jsonl")),
        llm=LlmConfig(url=double.url, jpeg_quality=95), captions=EVERY_SECOND, live=True,
    )  # fmt: skip
    await run_pipeline(config, encoder=tiny_encoder)
    parts = double.chat_bodies[0]["messages"][-1]["content"]
    uri = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
    jpeg = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    sent = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    with av.open(str(small_clip)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(tmp_path / "a.mp4")) as container:
        drawn = next(container.decode(video=0)).to_ndarray(format="rgb24")

    def worst_block(a, b) -> float:  # the largest mean difference over 20x20 blocks
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
        return float(diff.reshape(9, 20, 16, 20).mean(axis=(1, 3)).max())

    assert worst_block(drawn, first) > 40  # the output does carry an overlay ...
    assert worst_block(sent, first) < 12  # ... the LLM's frame does not (JPEG loss only)


HOSTILE = {  # by request; 1 and 2 are faults (bytes that are not UTF-8, an empty answer)
    3: "word " * 2000,  # huge
    4: "```python\nprint('x')\n```\n# Title\n- **A dog** runs on [grass](http://x)",
    5: "A\x00 cat\x1b[31m in red\u202e\n\n2\n00:00:00,000 --> 00:00:09,000\nfake cue "
    "<b>bold</b> & <script>alert(1)</script> {\\an8}top",
}


async def test_hostile_answers_leave_every_output_well_formed(tmp_path, small_clip, tiny_encoder,
                                                              double):  # fmt: skip
    """Huge, markdown, control characters, cue-breaking lines, markup, bytes that are not UTF-8,
    an empty answer: the video, SRT, WebVTT and JSON Lines all stay well-formed, one cue per
    caption, each a single line of plain text."""
    double.faults.extend(["non-utf8", "empty"])
    double.answer = lambda body, count: HOSTILE.get(count, f"Fine {count}.")
    out = {kind: str(tmp_path / f"a.{kind}") for kind in ("mp4", "srt", "vtt", "jsonl")}
    outputs = OutputConfig(video=out["mp4"], srt=out["srt"], vtt=out["vtt"], jsonl=out["jsonl"])
    config = RunConfig(
        input=str(small_clip), outputs=outputs, llm=LlmConfig(url=double.url),
        analysis=AnalysisConfig(analyze_fps=4.0),
        captions=CaptionPolicy(min_interval=0.25, max_age=0.25, scene_threshold=1e-9),
    )  # fmt: skip
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert summary.frames == 50
    assert double.counts["POST /v1/chat/completions"] >= 5
    captions = _captions(tmp_path / "a.jsonl")  # every line parsed as JSON
    texts = [c["text"] for c in captions]
    assert texts[0] == "A cat on a mat"  # the bytes that were not UTF-8 are gone
    for text in texts:
        assert text and text == " ".join(text.split())  # one line, no control characters
        assert all(ch.isprintable() for ch in text) and len(text) <= 300
    assert not any("```" in t or "**" in t or "[31m" in t for t in texts)
    assert any("A dog runs on grass" in t for t in texts)
    srt = parse_srt((tmp_path / "a.srt").read_text())
    assert len(srt) == len(texts)  # one cue per caption: no text broke a cue apart
    assert not any("<" in text or "-->" in text or "{\\" in text for _, _, text in srt)
    vtt = parse_vtt((tmp_path / "a.vtt").read_text())
    assert len(vtt) == len(texts)
    assert all("<script>" not in text for _, _, text in vtt)
    assert any("&lt;script&gt;" in text for _, _, text in vtt)
    assert [c["source"] for c in captions].count("tags") >= 1  # the empty answer fell back
    import av

    with av.open(str(tmp_path / "a.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 50


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, list]]:
    """A server that takes connections and never answers: (its /v1 URL, the connections)."""
    held: list = []
    silent = await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", held
    finally:
        silent.close()
        for writer in held:
            writer.close()


async def test_a_stop_while_the_llm_probe_waits_ends_the_run_at_once(
    tmp_path, small_clip, tiny_encoder
):
    # A server that takes the connection and never answers: the start-up probe waits for its
    # timeout (seconds); Ctrl-C meanwhile gives the probe up instead.
    async with silent_server() as (url, held):
        config = _config(small_clip, tmp_path, LlmConfig(url=url))
        stop = asyncio.Event()
        run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
        await wait_until(lambda: held, 10, "the probe connected")  # it waits for an answer
        stop.set()
        summary = await asyncio.wait_for(run, 2.5)
    assert summary.interrupted and summary.captions == 0


async def test_a_live_run_does_not_wait_for_a_server_that_never_answers(
    tmp_path, long_clip, tiny_encoder, caplog, monkeypatch
):
    # The start-up probe held a live run's first frame for as long as the server was silent
    # (up to 120 s), without a word; now the video goes, the wait is said, and the caption
    # points get the tags' caption while the first request waits.
    monkeypatch.setattr("streamer.llm.startup.WAIT_NOTICE_S", 0.5, raising=False)
    policy = CaptionPolicy(min_interval=0.5, max_age=0.5)
    async with silent_server() as (url, held):
        llm = LlmConfig(url=url, slow_after=1.0)
        config = _config(long_clip, tmp_path, llm, live=True, captions=policy)
        stop = asyncio.Event()
        run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
        await wait_until(lambda: held, 10, "the probe connected")
        await asyncio.sleep(4.0)
        stop.set()
        summary = await asyncio.wait_for(run, 10)
    assert summary.frames >= 50  # 4 s of a 25 fps clip played live, not held by the probe
    assert "waiting for the LLM server at" in caplog.text and "the video goes on" in caplog.text
    captions = _captions(tmp_path / "a.jsonl")
    assert captions and {c["source"] for c in captions} == {"tags"}
    assert "LLM slow: no answer in 1 s" in caplog.text


async def test_a_stop_does_not_wait_for_a_file_s_pending_captions(
    tmp_path, long_clip, tiny_encoder, double
):
    # Ctrl-C during a slow caption waited up to --caption-wait with no word about why.
    double.delay_s = 20.0
    llm = LlmConfig(url=double.url, vision=True)
    config = _config(long_clip, tmp_path, llm, captions=EVERY_SECOND, caption_wait=30.0)
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    chat = "POST /v1/chat/completions"
    await wait_until(lambda: double.counts[chat] >= 2, 30, "caption requests out")
    stopped = time.monotonic()
    stop.set()
    summary = await asyncio.wait_for(run, 15)
    assert time.monotonic() - stopped < 5.0
    assert summary.interrupted
    captions = _captions(tmp_path / "a.jsonl")
    assert captions and {c["source"] for c in captions} == {"tags"}
    assert parse_srt((tmp_path / "a.srt").read_text())  # the subtitles are complete
