"""Questions answered from an archive: the evidence retrieved (moments and summaries), the prompt,
the citations kept and written out, and the answer without an LLM or with its server down.
The LLM is the real llama-cpp-python server; the double only where an answer must hold a
citation the tiny model cannot be made to write (one of a moment that was not retrieved)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
from index_helpers import annotate_clip, tiny_spec
from servers.llm_server import llm_server  # noqa: F401  (session fixture)

from bench.harness.lmstudio import LmStudioDouble
from streamer.archive import Archive, Summary
from streamer.archive.ask import ask_async, ask_prompt, related_summaries
from streamer.archive.embedder import Embedder
from streamer.archive.writer import WriterPolicy
from streamer.errors import ConfigError
from streamer.llm import LlmConfig

QUESTION = "when did the delivery van arrive at the gate?"
CAPTIONS = {
    1: "A rabbit sleeps in a meadow.",
    2: "A white delivery van stops at the gate.",
    3: "The delivery van drives away from the gate.",
}
DOWN = LlmConfig(url="http://127.0.0.1:9/v1", connect_timeout=1.0)


@pytest.fixture(scope="module")
def gate(tmp_path_factory, tiny_encoder, sample_clip):
    """A live-like stream "gate" (one moment a second), three of them captioned, and one
    summary of its first seconds."""
    clip = annotate_clip(tiny_encoder, sample_clip, every=5)
    moments = [dataclasses.replace(m, stream="gate", media_path=None, media_size=None,
                                   media_mtime=None, caption=CAPTIONS.get(i, m.caption))
               for i, m in enumerate(clip)]  # fmt: skip
    root = tmp_path_factory.mktemp("gate")
    with Archive.create(root, tiny_spec(tiny_encoder)) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=64, flush_s=0.1))
        for moment in moments:
            writer.put(moment)
        assert writer.flush(60) and writer.wait_for_indexes(120)
        start = moments[0].wall_time
        archive.add_summaries([
            Summary("gate", "window", start, start + 4, 0.0, 4.0,
                    "A delivery van came to the gate and left again.", model="smollm2"),
            Summary("gate", "window", start + 3600, start + 3660, 3600.0, 3660.0,
                    "Nothing happened at all.", model="smollm2"),
        ])  # fmt: skip
    return Archive(root, embedder=Embedder.of(tiny_encoder))


def test_without_an_llm_the_moments_and_summaries_come_back_with_no_text(gate):
    answer = gate.ask(QUESTION, k=4)
    assert answer.text is None and answer.render() is None and answer.citations == ()
    assert "no LLM" in answer.error
    assert len(answer.hits) == 4
    captions = [h.moment.caption for h in answer.hits]
    assert CAPTIONS[2] in captions and CAPTIONS[3] in captions  # found by their words
    (summary,) = answer.summaries  # the one around the hits, not the hour-later one
    assert summary.text.startswith("A delivery van came")


def test_the_prompt_numbers_the_moments_and_adds_the_summaries_and_the_question(gate):
    answer = gate.ask(QUESTION, k=3)
    prompt = ask_prompt(answer.question, list(answer.hits), list(answer.summaries))
    lines = prompt.splitlines()
    assert lines[0] == "Moments:"
    for n, hit in enumerate(answer.hits, 1):
        assert lines[n].startswith(f"[{n}] {answer.label(n)}: {hit.moment.caption}; tags: ")
    assert re.fullmatch(r"\[1\] gate @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: .+", lines[1])
    assert lines[4] == "Summaries:" and "A delivery van came to the gate" in lines[5]
    assert lines[-2:] == [f"Question: {QUESTION}", "Answer, citing the moments as [n]:"]


def test_summaries_rank_by_the_hits_they_hold_then_by_the_questions_words(gate):
    hits = gate.search(QUESTION, k=3)
    everything = gate.summaries()
    assert len(everything) == 2
    assert related_summaries("nothing at all", [], everything)[0].text.startswith("Nothing")
    assert related_summaries("a helicopter", [], everything) == []
    assert [s.end_media for s in related_summaries(QUESTION, hits, everything)] == [4.0]


def test_an_empty_question_is_refused(gate):
    for question in ("", "   "):
        with pytest.raises(ConfigError, match="a question needs words"):
            gate.ask(question)


@pytest.mark.integration
@pytest.mark.slow
def test_the_real_llm_answers_citing_only_retrieved_moments(gate, llm_server):  # noqa: F811
    answer = gate.ask(QUESTION, llm=LlmConfig(url=llm_server.url), k=4)
    print(f"\nanswer: {answer.text!r}\nrendered: {answer.render()!r}")
    assert answer.error is None and answer.text
    numbers = [int(n) for group in re.findall(r"\[([\d,\s-]+)\]", answer.text)
               for n in re.findall(r"\d+", group)]  # fmt: skip
    kept = [c.number for c in answer.citations]
    assert kept == list(dict.fromkeys(n for n in numbers if 1 <= n <= 4))
    for citation in answer.citations:
        moment = answer.hits[citation.number - 1].moment
        assert (citation.stream, citation.wall_time) == (moment.stream, moment.wall_time)
    rendered = answer.render()
    assert not re.search(r"\[\s*\d+(\s*[,;-]\s*\d+)*\s*\]", rendered)  # no bare [n] left
    for citation in answer.citations:
        assert answer.label(citation.number) in rendered


async def test_citations_of_moments_not_retrieved_are_dropped(gate):
    async with LmStudioDouble() as server:
        server.answer = lambda body, count: "It arrived [2] and left [2, 9]; see [7]."
        answer = await gate.ask_async(QUESTION, llm=LlmConfig(url=server.url), k=3)
        (body,) = server.chat_bodies
    assert [c.number for c in answer.citations] == [2]
    assert answer.render() == (f"It arrived [{answer.label(2)}] and left [{answer.label(2)}]; see.")
    prompt = body["messages"][1]["content"]
    assert prompt == ask_prompt(QUESTION, list(answer.hits), list(answer.summaries))
    assert "[n]" in body["messages"][0]["content"]  # the system prompt asks for citations


def test_with_the_server_down_the_error_names_it_and_the_moments_remain(gate):
    answer = gate.ask(QUESTION, llm=DOWN, k=3)
    assert answer.text is None and len(answer.hits) == 3
    assert "127.0.0.1:9" in answer.error and "fix:" in answer.error


# --- the command --------------------------------------------------------------------------------


def _ask(*args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", "ask", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.integration
@pytest.mark.slow
def test_ask_with_the_server_down_says_so_prints_the_moments_and_exits_1(gate):
    done = _ask(QUESTION, "--archive", gate.root, "-k", "3", "--llm-url", DOWN.url)
    assert done.returncode == 1, done.stderr
    assert "no answer: cannot reach the LLM server at http://127.0.0.1:9/v1" in done.stderr
    assert "--no-llm" in done.stderr
    listed = [line for line in done.stdout.splitlines() if re.match(r"\s+\d+[ *] gate @ ", line)]
    assert len(listed) == 3 and CAPTIONS[2] in done.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_ask_without_the_llm_prints_the_moments_as_json_and_an_empty_question_is_usage(gate):
    done = _ask(QUESTION, "--archive", gate.root, "-k", "2", "--no-llm", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["answer"] is None and printed["citations"] == []
    assert [m["number"] for m in printed["moments"]] == [1, 2]
    assert printed["summaries"][0]["text"].startswith("A delivery van came")
    done = _ask("", "--archive", gate.root)
    assert done.returncode == 2 and "a question needs words" in done.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_ask_prints_the_real_llms_answer_with_its_citations_written_out(
    gate,
    llm_server,  # noqa: F811
):
    done = _ask(QUESTION, "--archive", gate.root, "-k", "3", "--llm-url", llm_server.url,
                "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["error"] is None and printed["text"]
    numbers = {m["number"] for m in printed["moments"]}
    assert {c["number"] for c in printed["citations"]} <= numbers
    assert {m["number"] for m in printed["moments"] if m["cited"]} == {
        c["number"] for c in printed["citations"]
    }
    for citation in printed["citations"]:
        assert citation["label"] in printed["answer"]


async def test_the_search_runs_where_the_caller_offloads_it():
    """The viewer hands its own low-priority threads (`offload`), so questions asked of its
    page never fill the event loop's default pool, which the run's stages use."""
    calls = []

    async def offload(call, *args):
        calls.append((call.__name__, args[1]))
        return [], []

    answer = await ask_async(object(), "when did the van come?", offload=offload)
    assert calls == [("_retrieve", "when did the van come?")]
    assert answer.text is None and answer.error == "no LLM was asked (--no-llm)"
