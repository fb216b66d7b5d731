"""CLIP's BPE tokenizer without torch (`encoders.bpe`): the ids open_clip's tokenizer gives, for
every model the clip family hands it to, and an encoder opened from a cached export that embeds
text with it imports neither torch nor open_clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encoders
from encoders import _openclip, clip
from encoders.bpe import ClipTokenizer, byte_alphabet
from encoders.clip import _tokenizer
from encoders.registry import parse_model_name
from streamer.analysis.labels import DEFAULT_PROMPT, default_labels, prompts

open_clip = pytest.importorskip("open_clip")

ROOT = Path(__file__).resolve().parents[2]

ALERTS = [
    "a red van at the gate",
    "Someone climbing the fence at night!",
    "person carrying a ladder near the garage door",
    "dog off its leash, 2 kids on bikes",
    "it's the neighbour's cat; they're back, we've seen it, I'm sure, you'll see, he'd go",
    "IT'S LOUD. DON'T PANIC",
    "rock 'n' roll",
]
ODD = [
    "",
    " ",
    "!!!",
    "...?!;:--__()[]{}<>/\\|@#$%^&*+=~`",
    "12345 and 3.14159 and 1,000,000 and ٣ and ½",
    "café, naïve, Ångström, façade, jalapeño, Straße, İstanbul, ΣΊΣΥΦΟΣ",
    "東京の駅で猫を見た 고양이 кошка قطة",
    "🚀 rocket 🎉🎉 party 👩‍👩‍👧 family 🇫🇷",
    "fish &amp; chips, &quot;quoted&quot;, &lt;b&gt;, &amp;amp;, &#39;x&#39;, &eacute;",
    "<b> &amp;amp; &amp;amp;amp; </b>",  # with a tag, ftfy leaves entities: unescaped twice
    "schÃ¶n, cafÃ©, donâ€™t",  # mojibake that ftfy repairs
    "  many   spaces\n\nnew lines\tand\ttabs \r\n end  ",
    "\x00\x07 control \u00ad soft hyphen \u200b zero width \ufeff",
    "<start_of_text>inside<end_of_text> markers",
    "ſpecial 'ſ long s and the Kelvin sign K",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "word " * 100,  # longer than any context: cut, the end id kept last
    "a photo of " + "x" * 500,
]
CORPUS = [*prompts(default_labels(), DEFAULT_PROMPT), *ALERTS, *ODD]


def _ref(arch: str):
    return parse_model_name("clip", arch)


def _open_clips(texts, arch: str | None = None) -> np.ndarray:
    make = open_clip.tokenize if arch is None else _openclip.load_open_clip().get_tokenizer(arch)
    return make(texts).numpy()


def test_the_ids_are_open_clips_on_a_varied_corpus() -> None:
    ours = ClipTokenizer(77)(CORPUS)
    assert ours.dtype == np.int64 and ours.shape == (len(CORPUS), 77)
    np.testing.assert_array_equal(ours, _open_clips(CORPUS))
    for text in ODD:  # one at a time too: a str gives one row
        np.testing.assert_array_equal(ClipTokenizer()(text), _open_clips(text))


def test_a_long_text_is_cut_with_the_end_id_last() -> None:
    tokenizer = ClipTokenizer(77)
    ids = tokenizer("word " * 100)[0]
    assert ids[0] == tokenizer.start_id and ids[-1] == tokenizer.end_id
    assert (ids != 0).all()
    empty = tokenizer("")[0]
    assert list(empty[:3]) == [tokenizer.start_id, tokenizer.end_id, 0] and not empty[2:].any()


@pytest.mark.parametrize(
    ("arch", "context"),
    [("ViT-B-32-quickgelu", 77), ("tiny", 77), ("coca_ViT-B-32", 76), ("PE-Core-B-16", 32)],
)
def test_the_ids_are_get_tokenizers_at_each_context_length(arch: str, context: int) -> None:
    tokenizer = _tokenizer(_ref(arch))
    assert isinstance(tokenizer, ClipTokenizer) and tokenizer.context_length == context
    np.testing.assert_array_equal(tokenizer(CORPUS), _open_clips(CORPUS, arch))


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_PIECES = st.sampled_from(
    [
        "'s",
        "'T",
        "'re",
        " ",
        "\n",
        "\t",
        "&amp;",
        "&quot;",
        "Ã©",
        "1",
        "<end_of_text>",
        "🚀",
        "é",
        "e\u0301",
        "ß",
        "A",
        ".",
        "-",
        "__",
    ]
)
_MIXED = st.lists(st.one_of(_PIECES, _TEXT), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.one_of(_TEXT, _MIXED), min_size=1, max_size=4),
    context=st.sampled_from([77, 32, 5]),
)
def test_random_text_gives_open_clips_ids(texts: list[str], context: int) -> None:
    np.testing.assert_array_equal(
        ClipTokenizer(context)(texts), open_clip.tokenize(texts, context_length=context).numpy()
    )


def test_the_byte_alphabet_is_printable_and_one_to_one() -> None:
    alphabet = byte_alphabet()
    assert len(set(alphabet)) == 256 and all(c.isprintable() and not c.isspace() for c in alphabet)
    assert alphabet[ord("a")] == "a" and alphabet[ord(" ")] == chr(256 + 32)


def _recorded_choice(monkeypatch, name: str) -> tuple[str, dict]:
    """Which tokenizer class `open_clip.get_tokenizer(name)` makes, and with what, recorded
    instead of made (a Hugging Face one would be downloaded)."""
    factory = sys.modules["open_clip.factory"]
    made: list[tuple[str, dict]] = []
    for cls in ("SimpleTokenizer", "HFTokenizer", "SigLipTokenizer"):
        monkeypatch.setattr(factory, cls, lambda *a, _c=cls, **k: made.append((_c, k)))
    _openclip.load_open_clip().get_tokenizer(name)
    return made[0]


DEFAULTS = {"clean": "lower", "reduction_mask": ""}  # SimpleTokenizer's own


def _check_chosen_as_open_clip_would(monkeypatch, name: str) -> bool:
    """`simple_tokenizer_context(name)` is the context length of the `SimpleTokenizer` with
    default settings that open_clip makes for `name`, or None where it makes anything else."""
    cls, kwargs = _recorded_choice(monkeypatch, name)
    context = kwargs.pop("context_length", None)
    plain = cls == "SimpleTokenizer" and kwargs.items() <= DEFAULTS.items()
    assert _openclip.simple_tokenizer_context(name) == (context if plain else None), name
    return plain


def test_this_tokenizer_is_chosen_exactly_where_open_clip_uses_its_own(monkeypatch) -> None:
    names = _openclip.model_names()
    assert len(names) > 100
    chosen = sum(_check_chosen_as_open_clip_would(monkeypatch, name) for name in names)
    assert chosen >= 90  # OpenAI's CLIP and most open_clip models
    assert _openclip.simple_tokenizer_context("no-such-model") is None


SYNTHETIC = {  # text_cfg of configs open_clip does not ship, each on another branch of its rule
    "Tiny-SigLIP-like": {},  # no Hugging Face name, but "siglip" in the name: SigLIP's
    "kw-canonicalize": {"tokenizer_kwargs": {"clean": "canonicalize"}},
    "kw-lower": {"tokenizer_kwargs": {"clean": "lower"}},
    "kw-reduction": {"tokenizer_kwargs": {"reduction_mask": "simple"}},
    "kw-special": {"tokenizer_kwargs": {"additional_special_tokens": ["<x>"]}},
    "context-16": {"context_length": 16},
    "hf-empty": {"hf_tokenizer_name": ""},  # an empty name: open_clip's own
    "hf-named": {"hf_tokenizer_name": "org/tokenizer"},
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_the_choice_follows_open_clips_rule(monkeypatch, tmp_path, name: str) -> None:
    config = {"embed_dim": 64, "vision_cfg": {}, "text_cfg": SYNTHETIC[name]}
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    monkeypatch.setattr(_openclip, "_config_files", lambda: {name: tmp_path / f"{name}.json"})
    _openclip.load_open_clip()
    monkeypatch.setitem(sys.modules["open_clip.factory"]._MODEL_CONFIGS, name, config)
    _check_chosen_as_open_clip_would(monkeypatch, name)


def test_a_model_with_another_tokenizer_gets_open_clips(monkeypatch) -> None:
    monkeypatch.setattr(_openclip, "simple_tokenizer_context", lambda name: None)
    monkeypatch.setattr(
        clip, "load_open_clip", lambda: type("OC", (), {"get_tokenizer": staticmethod(str.upper)})
    )
    assert _tokenizer(_ref("ViT-B-32")) == "VIT-B-32"


def test_without_the_vocabulary_file_the_tokenizer_is_open_clips(monkeypatch) -> None:
    import encoders.bpe

    def missing(context_length: int) -> None:
        raise FileNotFoundError("no vocabulary")

    monkeypatch.setattr(encoders.bpe, "ClipTokenizer", missing)
    tokenizer = _tokenizer(_ref("tiny"))
    assert isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)


# -- an encoder opened from a cached export -------------------------------------------------

TEXTS = ["a photo of a dog", "it's a red van at the gate", "café 🚀", ""]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A tiny-CLIP OpenVINO export in a cache of its own, and the torch model's embeddings."""
    pytest.importorskip("openvino")
    cache = tmp_path_factory.mktemp("bpe_export")
    built = encoders.create_encoder(
        "clip", "tiny", weights="random", backend="openvino", export_cache=cache, device="cpu"
    )
    return cache, built.embed_text(TEXTS).float().numpy()


def test_an_opened_export_embeds_text_without_torch_or_open_clip(exported) -> None:
    cache, want = exported
    script = (
        "import json, sys, encoders\n"
        "enc = encoders.create_encoder('clip', 'tiny', weights='random', backend='openvino', "
        f"export_cache={str(cache)!r})\n"
        f"out = enc.embed_text_array({TEXTS!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'open_clip'})\n"
        "enc.embed_text(['a dog'])\n"  # the tensor it returns imports torch, not open_clip
        "print(json.dumps([type(enc).__name__, heavy, 'open_clip' in sys.modules,\n"
        "                  out.tolist()]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's encoders
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
        check=True,
    )
    kind, heavy, open_clip_later, got = json.loads(result.stdout.splitlines()[-1])
    assert (kind, heavy, open_clip_later) == ("ExportedEncoder", [], False)
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=1e-5)
