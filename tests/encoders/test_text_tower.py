"""The exported text tower: CLIP's text forward captured with `torch.export`, exported to
OpenVINO and ONNX beside the image tower, gives `embed_text`'s numbers; an encoder opened from the
export cache embeds text on it without building the torch model, and an export made before
text towers were exported still answers `embed_text` (by building the model, as it did), and
is exported again, with its text tower, when a run builds the model anyway."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import encoders
from encoders.exported import ExportedEncoder

ov = pytest.importorskip("openvino")

TEXTS = ["a photo of a dog", "a red car parked on a street", "people", "an empty room at night"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _exported_text(encoder, texts: list[str]) -> np.ndarray:
    """`texts` through the text tower exported to OpenVINO, compiled in fp32."""
    from encoders.backends.openvino_backend import export_text_tower

    compiled = ov.Core().compile_model(export_text_tower(encoder), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})  # fmt: skip
    tokens = encoder._tokenizer(texts).numpy()
    return compiled(tokens)[0]


def _check_matches_torch(encoder) -> None:
    for texts in (TEXTS, TEXTS[:1]):  # a dynamic batch: 4 and 1 (captured on 2)
        exported = _exported_text(encoder, texts)
        torch_side = encoder.embed_text(texts).numpy()
        assert exported.shape == torch_side.shape and exported.dtype == np.float32
        assert _cosines(exported, torch_side).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(exported, axis=-1), 1.0, atol=1e-5)


def test_the_captured_program_is_embed_text(clip_tiny_fp32) -> None:
    from encoders.backends.capture import capture_text_tower

    program = capture_text_tower(clip_tiny_fp32, "openvino").module()
    for texts in (TEXTS, TEXTS[:1], TEXTS * 3):
        got = program(clip_tiny_fp32._tokenizer(texts)).detach().numpy()
        want = clip_tiny_fp32.embed_text(texts).numpy()
        assert _cosines(got, want).min() >= 0.9999


def test_the_openvino_text_tower_matches_torch_on_tiny(clip_tiny_fp32) -> None:
    _check_matches_torch(clip_tiny_fp32)


@pytest.mark.slow
def test_the_openvino_text_tower_matches_torch_on_vit_b32() -> None:
    encoder = encoders.create_encoder("clip", "ViT-B/32", weights="random", device="cpu",
                                      precision="fp32")  # fmt: skip
    _check_matches_torch(encoder)


def test_the_onnx_text_tower_matches_torch_on_tiny(clip_tiny_fp32) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from encoders.backends.onnxruntime_backend import _session, export_text_tower

    session = _session(export_text_tower(clip_tiny_fp32).SerializeToString())
    for texts in (TEXTS, TEXTS[:1]):
        tokens = clip_tiny_fp32._tokenizer(texts).numpy()
        (exported,) = session.run(["embeddings"], {"tokens": tokens})
        assert _cosines(exported, clip_tiny_fp32.embed_text(texts).numpy()).min() >= 0.9999


@pytest.fixture(scope="module")
def clip_tiny_fp32():
    return encoders.create_encoder("clip", "tiny", weights="random", device="cpu",
                                   precision="fp32")  # fmt: skip


# -- the warm start --------------------------------------------------------------------------


def _create(cache: Path, backend: str):
    return encoders.create_encoder("clip", "tiny", weights="random", backend=backend,
                                   export_cache=cache)  # fmt: skip


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def exported(request, tmp_path_factory) -> tuple[Path, object, str]:
    """One export of the tiny CLIP (random weights) per backend, the encoder built for it and
    the backend; tests copy the cache."""
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    cache = tmp_path_factory.mktemp("exports")
    return cache, _create(cache, request.param), request.param


@pytest.fixture
def cache(tmp_path, exported) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(exported[0], copy)
    return copy


def _opened(cache: Path, backend: str) -> tuple[ExportedEncoder, list[int]]:
    """The encoder opened from `cache`, and the calls of its build callback (counted)."""
    opened = _create(cache, backend)
    assert isinstance(opened, ExportedEncoder)
    calls: list[int] = []
    build = opened._build

    def counted():
        calls.append(1)
        return build()

    opened._build = counted
    return opened, calls


def test_an_opened_export_embeds_text_without_building(cache, exported) -> None:
    built, backend = exported[1:]
    assert _text_files(cache, backend)
    opened, calls = _opened(cache, backend)
    assert opened.runtime.has_text_tower
    started = time.perf_counter()
    text = opened.embed_text(TEXTS).numpy()
    took = time.perf_counter() - started
    assert calls == []  # never built
    assert _cosines(text, built.embed_text(TEXTS).numpy()).min() >= 0.9999
    assert opened.embed_text("one label").shape == (1, built.dim)
    assert opened.embed_text([]).shape == (0, built.dim)
    np.testing.assert_array_equal(opened.embed_text_array(TEXTS), text)  # deterministic
    assert calls == []
    assert took < 10, took  # a tokenizer and a compile, not a model build


def test_an_export_without_a_text_tower_still_embeds_text(cache, exported) -> None:
    """An export made before text towers were exported, opened from its locator: text falls
    back to building the model (once)."""
    backend = exported[2]
    _as_made_before(cache, backend)
    opened, calls = _opened(cache, backend)
    assert not opened.runtime.has_text_tower
    text = opened.embed_text(TEXTS).numpy()
    assert calls == [1]  # built once, for its text tower
    np.testing.assert_allclose(text, exported[1].embed_text(TEXTS).numpy(), atol=1e-6)


def test_an_export_without_a_text_tower_is_made_again_when_the_model_is_built(
    cache, exported, caplog
) -> None:
    backend = exported[2]
    _as_made_before(cache, backend)
    shutil.rmtree(cache / "locators")  # no warm start: the model is built, the export loaded
    built = _create(cache, backend)
    assert not isinstance(built, ExportedEncoder)
    assert _text_files(cache, backend)  # exported again, with its text tower
    assert "made before text towers were exported" in caplog.text
    opened, calls = _opened(cache, backend)
    assert opened.runtime.has_text_tower
    opened.embed_text(TEXTS)
    assert calls == []


def _as_made_before(cache: Path, backend: str) -> None:
    """Make the export in `cache` one made before text towers were exported: image files
    only, in its manifest too (so it is sound as such)."""
    for path in _text_files(cache, backend):
        path.unlink()
    (folder,) = (p for p in (cache / backend).iterdir() if p.is_dir())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("text.")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    assert not _text_files(cache, backend)


def _text_files(cache: Path, backend: str) -> list[Path]:
    """The text tower's files in the one export of `backend` in `cache`."""
    (folder,) = (p for p in (cache / backend).iterdir() if p.is_dir())
    return sorted(folder.glob("text.*"))


def test_a_text_tower_that_cannot_be_exported_costs_the_text_tower_only(
    tmp_path, monkeypatch, caplog
) -> None:
    from encoders.backends import capture
    from encoders.errors import UnsupportedBackendError

    def refuse(encoder, backend):
        raise UnsupportedBackendError("the text tower of clip 'tiny' cannot be exported (test)")

    monkeypatch.setattr(capture, "capture_text_tower", refuse)
    built = _create(tmp_path, "openvino")  # the image tower still runs on OpenVINO
    assert built.info.backend == "openvino"
    (folder,) = (p for p in (tmp_path / "openvino").iterdir() if p.is_dir())
    assert not _text_files(tmp_path, "openvino")
    assert "cannot be exported (test)" in (folder / capture.NO_TEXT_TOWER).read_text()
    assert "its text embeddings run on torch" in caplog.text
    made = (folder / "manifest.json").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "locators")
    _create(tmp_path, "openvino")  # built again: the export is loaded, not made again
    assert (folder / "manifest.json").stat().st_mtime_ns == made
    opened, calls = _opened(tmp_path, "openvino")
    assert not opened.runtime.has_text_tower
    opened.embed_text(TEXTS)
    assert calls == [1]


def test_an_int8_export_takes_the_fp32_text_tower_or_its_note(tmp_path, clip_tiny_fp32) -> None:
    from encoders.backends.capture import NO_TEXT_TOWER, reuse_text_tower

    names = ("text.xml", "text.bin")
    fp32, int8, other = tmp_path / "fp32", tmp_path / "int8", tmp_path / "other"
    for folder in (fp32, int8, other):
        folder.mkdir()
    assert not reuse_text_tower(clip_tiny_fp32, fp32, int8, names)  # none there: export it
    assert not list(int8.iterdir())
    for name in names:
        (fp32 / name).write_bytes(name.encode())
    assert reuse_text_tower(clip_tiny_fp32, fp32, int8, names)
    assert [(int8 / name).read_bytes() for name in names] == [b"text.xml", b"text.bin"]
    (fp32 / "text.xml").unlink()  # a text forward that could not be exported: its note
    (fp32 / "text.bin").unlink()
    (fp32 / NO_TEXT_TOWER).write_text("why\n")
    assert reuse_text_tower(clip_tiny_fp32, fp32, other, names)
    assert [p.name for p in other.iterdir()] == [NO_TEXT_TOWER]


# -- ids cut after the last end-of-text ------------------------------------------------------

LONG = " ".join(["a very long alert query about a person near the gate"] * 12)  # > 77 tokens


def _full_context(encoder, texts: list[str]) -> np.ndarray:
    """open_clip's own `encode_text` on the whole context (77 ids a text), normalised."""
    import torch

    with torch.inference_mode():
        features = encoder.module.encode_text(encoder._tokenizer(texts)).float()
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_clip_reads_only_the_ids_up_to_the_last_end_of_text(clip_tiny_fp32) -> None:
    """The causal mask keeps every position from seeing a later one and CLIP pools at the
    end-of-text token: the ids after the batch's last one change nothing, so they are not
    computed (a prompt is about a tenth of the 77 positions)."""
    from encoders.bpe import text_length

    assert clip_tiny_fp32.text_any_length
    lengths: list[int] = []
    hook = clip_tiny_fp32.module.transformer.register_forward_pre_hook(
        lambda _module, args: lengths.append(args[0].shape[1])
    )
    try:
        for texts in (TEXTS, TEXTS[:1], [*TEXTS, LONG]):
            want = _full_context(clip_tiny_fp32, texts)
            lengths.clear()
            got = clip_tiny_fp32.embed_text(texts).numpy()
            assert lengths == [text_length(clip_tiny_fp32._tokenizer(texts))]
            np.testing.assert_allclose(got, want, atol=1e-5)
            assert _cosines(got, want).min() >= 0.99999
    finally:
        hook.remove()
    assert lengths[-1] == 77  # the long text: cut to the context, its end-of-text kept last
    assert text_length(clip_tiny_fp32._tokenizer(TEXTS[:1])) < 10


def test_a_clip_whose_mask_is_not_causal_reads_the_whole_context(clip_tiny_fp32) -> None:
    import copy

    from encoders._clip_torch import _reads_any_length

    module = copy.deepcopy(clip_tiny_fp32.module)
    assert _reads_any_length(module)
    module.attn_mask = module.attn_mask * 0  # every position sees every other one
    assert not _reads_any_length(module)
    module.attn_mask = None
    assert not _reads_any_length(module)


def test_an_exported_text_tower_is_given_the_cut_ids(cache, exported) -> None:
    """The exports take ids of any length (2 to 77) and the runtime cuts them as torch does."""
    from encoders.bpe import text_length

    built, backend = exported[1:]
    opened, _ = _opened(cache, backend)
    tower = opened.runtime._text
    first = opened.embed_text_array(TEXTS)
    run, shapes = tower._run, []
    tower._run = lambda ids: (shapes.append(ids.shape), run(ids))[1]
    for texts in (TEXTS, [*TEXTS, LONG]):
        got = opened.embed_text_array(texts)
        assert _cosines(got, _full_context(built, texts)).min() >= 0.9999
    np.testing.assert_array_equal(opened.embed_text_array(TEXTS), first)
    want = text_length(built._tokenizer(TEXTS))
    assert shapes == [(4, want), (5, 77), (4, want)] and want < 10


def test_a_text_tower_of_the_whole_context_gets_every_id() -> None:
    from encoders.backends.runtime import LazyTextTower

    shapes: list[tuple] = []

    def run(tokens: np.ndarray) -> np.ndarray:
        shapes.append(tokens.shape)
        return tokens[:, :1].astype(np.float32)

    ids = np.zeros((3, 77), np.int64)
    ids[:, 0], ids[0, 5], ids[1, 3], ids[2, 7] = 49406, 49407, 49407, 49407  # start, ends
    for any_length in (False, True):
        LazyTextTower(Path("text.xml"), lambda _path, a=any_length: (run, a))(ids)
    assert shapes == [(3, 77), (3, 8)]


def test_a_prepared_text_tower_loads_beside_the_caller_once_and_a_failure_reaches_the_call():
    import threading

    from encoders.backends.runtime import LazyTextTower

    loads, started, release = [], threading.Event(), threading.Event()

    def load(path: Path):
        loads.append(threading.current_thread().name)
        started.set()
        release.wait(10)  # a compile in progress
        return (lambda ids: ids[:, :1].astype(np.float32)), False

    tower = LazyTextTower(Path("text.xml"), load)
    tower.prepare()
    assert started.wait(10) and loads == ["text-tower-load"]  # on a thread of its own
    release.set()
    ids = np.zeros((2, 77), np.int64)
    assert tower(ids).shape == (2, 1) and tower(ids).shape == (2, 1)  # waited for, not redone
    assert loads == ["text-tower-load"]

    def broken(path: Path):
        raise RuntimeError(f"cannot read {path}")

    failing = LazyTextTower(Path("text.xml"), broken)
    failing.prepare()  # its thread keeps the failure to itself: the first call raises it
    with pytest.raises(RuntimeError, match=r"cannot read text\.xml"):
        failing(ids)
