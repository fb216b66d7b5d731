"""Cleaning model answers into one paragraph of plain text for the overlay."""

from __future__ import annotations

import pytest

from streamer.errors import LlmInputError, LlmUnavailableError
from streamer.llm.answers import MAX_CAPTION_CHARS, answer_text, clean_caption


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A dog runs on the lawn.", "A dog runs on the lawn."),
        ("<think>The user wants a caption.</think>\nA dog runs.", "A dog runs."),
        ("The user wants…</think> A dog runs.", "A dog runs."),  # template opened the block
        ("A dog runs. <think>cut off by max_tok", "A dog runs."),
        (
            "# Caption\n\n**A dog** runs across the _green_ lawn.",
            "Caption A dog runs across the green lawn.",
        ),
        ("```text\nA dog runs.\n```", "A dog runs."),
        ("- a dog\n- a ball\n1. a lawn", "a dog a ball a lawn"),
        ("> A [dog](http://x) runs `fast`.", "A dog runs fast."),
        ('Caption: "A dog runs."', "A dog runs."),
        ("snake_case_name and 2 * 3 stay", "snake_case_name and 2 * 3 stay"),
        ("A\x00 dog\x1b[31m\u200b runs\ufffd\r\n\tfast", "A dog runs fast"),
        ("Un chien « joyeux » 🐶 court", "Un chien « joyeux » 🐶 court"),
        ("  many    spaces\n\n\nand lines  ", "many spaces and lines"),
    ],
)
def test_answers_become_one_plain_paragraph(raw, clean):
    assert clean_caption(raw) == clean


def test_a_huge_answer_is_cut_at_a_word_boundary():
    text = clean_caption("word " * 1000)
    assert len(text) <= MAX_CAPTION_CHARS
    assert text.endswith("word…")
    one_long_word = clean_caption("x" * 1000)
    assert len(one_long_word) == MAX_CAPTION_CHARS


@pytest.mark.parametrize(
    "raw", ["", "   \n ", "<think>only reasoning</think>", "**  **", "\x00\x07"]
)
def test_an_empty_answer_is_a_soft_input_error(raw):
    with pytest.raises(LlmInputError) as caught:
        clean_caption(raw)
    assert caught.value.kind == "empty_answer"
    assert not caught.value.retryable


def test_answer_text_reads_string_and_part_contents():
    assert answer_text({"choices": [{"message": {"content": "hi"}}]}, where="w") == "hi"
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "a"},
                                                   {"type": "text", "text": "b"}]}}]}  # fmt: skip
    assert answer_text(parts, where="w") == "a b"
    # A reasoning model may leave content empty and put its words elsewhere.
    reasoning = {"choices": [{"message": {"content": None, "reasoning_content": "hmm"}}]}
    assert answer_text(reasoning, where="w") == ""


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": [{}]}, [], "text", None])
def test_a_body_that_is_no_completion_is_a_bad_response(body):
    with pytest.raises(LlmUnavailableError) as caught:
        answer_text(body, where="POST u")
    assert caught.value.kind == "bad_response"


def _completion(content: str, finish: str | None) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content},
                         "finish_reason": finish}]}  # fmt: skip


def test_an_answer_cut_by_the_token_limit_ends_at_its_last_whole_sentence():
    # 60 tokens ended captions mid-phrase: "…in traditional Japanese", "…cycling culture. #"
    cut = "A man rides a bike. Two cyclists pass a shop in traditional Japanese"
    assert answer_text(_completion(cut, "length"), where="x") == "A man rides a bike."
    hashtag = 'He said "go!" A street full of cycling culture. #'
    assert answer_text(_completion(hashtag, "length"), where="x") == (
        'He said "go!" A street full of cycling culture.'
    )
    # One sentence cut short keeps what it has; an answer that ended keeps all of it.
    one = "A very long sentence about a street that goes on and on"
    assert answer_text(_completion(one, "length"), where="x") == one
    assert answer_text(_completion(cut, "stop"), where="x") == cut
    assert answer_text(_completion(cut, None), where="x") == cut
    assert answer_text(_completion("Pi is 3.14 and e is 2.71", "length"), where="x") == (
        "Pi is 3.14 and e is 2.71"
    )
