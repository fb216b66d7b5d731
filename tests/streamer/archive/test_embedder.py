"""How a search embeds its query: on a running pipeline's own encoder service while the run
goes on (no second model), on the archive's encoder once the run has ended."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import numpy as np
import pytest
from index_helpers import tiny_spec

from streamer.analysis.service import LocalEncoderService
from streamer.archive.embedder import Embedder
from streamer.core.batcher import BatchPolicy

PICTURE = np.random.default_rng(3).integers(0, 255, (180, 320, 3), dtype=np.uint8)


def _encoder_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("encoder")}


async def test_a_running_service_embeds_the_query_and_nothing_else_is_loaded(tiny_encoder):
    service = LocalEncoderService(tiny_encoder, BatchPolicy(max_batch=4, max_wait_ms=50))
    loaded: list[int] = []

    def after() -> Embedder:
        loaded.append(1)
        return Embedder.of(tiny_encoder)

    embedder = Embedder.of_service(service, asyncio.get_running_loop(), tiny_spec(tiny_encoder),
                                   after)  # fmt: skip
    try:
        # From a search's thread, as the page's pool calls it; the loop stays free meanwhile.
        text = await asyncio.to_thread(embedder.text, "a rabbit in a meadow")
        image = await asyncio.to_thread(embedder.image, PICTURE)
        assert _encoder_threads()  # the service's own thread ran the model
    finally:
        service.close()
    assert loaded == []
    np.testing.assert_allclose(text, tiny_encoder.embed_text(["a rabbit in a meadow"])[0],
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(image, tiny_encoder.embed(PICTURE)[0], atol=1e-6)
    # The run has ended (its service closed): the archive's encoder is loaded, once.
    for _ in range(2):
        assert np.allclose(await asyncio.to_thread(embedder.image, PICTURE), image, atol=1e-6)
        assert np.allclose(await asyncio.to_thread(embedder.text, "a rabbit in a meadow"), text,
                           atol=1e-6)  # fmt: skip
    assert loaded == [1]


def test_a_closed_loop_also_means_the_run_has_ended(tiny_encoder):
    loop = asyncio.new_event_loop()
    service = LocalEncoderService(tiny_encoder, BatchPolicy())
    loop.close()
    embedder = Embedder.of_service(service, loop, tiny_spec(tiny_encoder),
                                   lambda: Embedder.of(tiny_encoder))  # fmt: skip
    try:
        assert embedder.image(PICTURE).shape == (tiny_encoder.info.dim,)
    finally:
        service.close()


async def test_an_encoder_without_a_text_tower_has_no_text_side(tiny_encoder):
    service = LocalEncoderService(tiny_encoder, BatchPolicy())
    service._model = dataclasses.replace(service.model, has_text=False)  # as DINOv2's says
    try:
        embedder = Embedder.of_service(service, asyncio.get_running_loop(),
                                       tiny_spec(tiny_encoder), lambda: pytest.fail())  # fmt: skip
        assert embedder.text is None
    finally:
        service.close()


def test_a_search_on_an_export_imports_no_torch(tmp_path):
    """`Embedder.load` from the export a run left: the query's text and picture embed in a
    fresh process without importing torch (or open_clip), as the torch model embeds them."""
    pytest.importorskip("openvino")
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import encoders

    built = encoders.create_encoder("clip", "tiny", weights="random", backend="openvino",
                                    export_cache=tmp_path, device="cpu")  # fmt: skip
    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from streamer.archive.embedder import Embedder\n"
        "from streamer.archive.store import EncoderSpec\n"
        "spec = EncoderSpec('clip', 'tiny', 'random', 64)\n"
        f"embedder = Embedder.load(spec, Path('.'), 'cpu', {str(tmp_path)!r})\n"
        "text = embedder.text('a rabbit in a meadow')\n"
        f"image = embedder.image(np.asarray({PICTURE[:64, :64].tolist()!r}, np.uint8))\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'open_clip'})\n"
        "print(json.dumps([heavy, text.tolist(), image.tolist()]))\n"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}  # this checkout's packages
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, env=env, timeout=180, check=True)  # fmt: skip
    heavy, text, image = json.loads(done.stdout.splitlines()[-1])
    assert heavy == []
    np.testing.assert_allclose(text, built.embed_text(["a rabbit in a meadow"])[0], atol=1e-5)
    np.testing.assert_allclose(image, built.embed(PICTURE[:64, :64])[0], atol=1e-5)
