import logging

import numpy as np

from streamer.analysis.text_cache import cached_text_embeddings


class _Counting:
    """An embed function over the tiny CLIP that counts the prompts it was asked for."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.prompts = 0

    async def __call__(self, texts):
        self.prompts += len(texts)
        return self.encoder.embed_text(texts).numpy()


TEXTS = ["a photo of a dog.", "a photo of a cat.", "a photo of a car."]


async def test_second_run_reads_the_cache_and_checks_one_prompt(tmp_path, tiny_encoder):
    embed = _Counting(tiny_encoder)
    first = await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS, embed)
    assert embed.prompts == 3 and len(list(tmp_path.glob("*.npy"))) == 1
    second = await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS, embed)
    assert embed.prompts == 4  # only the first prompt was embedded again, to validate
    np.testing.assert_array_equal(first, second)


async def test_stale_entry_is_detected_and_replaced(tmp_path, tiny_encoder):
    embed = _Counting(tiny_encoder)
    good = await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS, embed)
    (entry,) = tmp_path.glob("*.npy")
    np.save(entry, -good)  # as if the checkpoint behind the same name had changed
    again = await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS, embed)
    np.testing.assert_allclose(again, good, atol=1e-6)
    np.testing.assert_allclose(np.load(entry), good, atol=1e-6)


async def test_other_prompts_use_another_entry_and_none_disables(tmp_path, tiny_encoder):
    embed = _Counting(tiny_encoder)
    await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS, embed)
    await cached_text_embeddings(tmp_path, tiny_encoder.info, TEXTS[:2], embed)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    await cached_text_embeddings(None, tiny_encoder.info, TEXTS, embed)
    assert embed.prompts == 3 + 2 + 3


async def test_unwritable_cache_warns_and_still_answers(tmp_path, tiny_encoder, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="streamer.analysis.text_cache"):
        out = await cached_text_embeddings(
            blocker / "sub", tiny_encoder.info, TEXTS, _Counting(tiny_encoder)
        )
    assert out.shape[0] == 3 and "cannot write the text embedding cache" in caplog.text


async def test_an_entry_keyed_by_the_weights_digest_is_trusted(tmp_path, tiny_encoder):
    import dataclasses

    info = dataclasses.replace(tiny_encoder.info, weights_digest="ab" * 32)
    embed = _Counting(tiny_encoder)
    first = await cached_text_embeddings(tmp_path, info, TEXTS, embed)
    second = await cached_text_embeddings(tmp_path, info, TEXTS, embed)
    assert embed.prompts == 3  # the hit needed no text tower: a warm run from an export
    np.testing.assert_array_equal(first, second)
    # another digest (other weights) is another entry
    other = dataclasses.replace(info, weights_digest="cd" * 32)
    await cached_text_embeddings(tmp_path, other, TEXTS, embed)
    assert embed.prompts == 6 and len(list(tmp_path.glob("*.npy"))) == 2
