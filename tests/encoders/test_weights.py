"""Where weights come from: the hub cache, local files, labelled random weights, and fast,
explicit failure without network."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import encoders

REPO_ROOT = Path(__file__).resolve().parents[2]
REFUSED_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, connect is refused
MAX_FAILURE_SECONDS = 20

# Runs in a fresh interpreter, because huggingface_hub reads HF_* variables when imported.
_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import encoders

    results = {}
    for kind, model in json.loads(sys.argv[1]):
        start = time.monotonic()
        try:
            encoder = encoders.create_encoder(kind, model, device="cpu", precision="fp32")
        except encoders.WeightsUnavailableError as err:
            is_fnf = isinstance(err, FileNotFoundError)
            results[kind] = {"error": str(err), "file_not_found": is_fnf}
        else:
            frames = np.load(sys.argv[2]) if len(sys.argv) > 2 else None
            results[kind] = {
                "weights": encoder.info.weights,
                "embedding": encoder.embed(frames).tolist() if frames is not None else None,
            }
        results[kind]["seconds"] = time.monotonic() - start
    print(json.dumps(results))
    """
)


def _run_isolated(hf_home: Path, models: list[tuple[str, str]], env: dict, *extra: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean |= {
        "HF_HOME": str(hf_home),
        "XDG_CACHE_HOME": str(hf_home / "xdg"),  # open_clip's URL downloads cache here
        # Kept: packages installed with --target (e.g. wheels carried to a GPU machine).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(models), *extra],
        env=clean,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": REFUSED_ENDPOINT}],
    ids=["HF_HUB_OFFLINE", "refused-endpoint"],
)
def test_pretrained_without_cache_or_network_fails_fast_naming_the_fix(tmp_path, env) -> None:
    models = [("clip", "ViT-B/32"), ("dinov2", "small")]
    results = _run_isolated(tmp_path / "hf-empty", models, env)
    for (kind, model), result in zip(models, results.values(), strict=True):
        assert "error" in result, f"{kind} loaded without weights: {result}"
        assert result["file_not_found"]
        assert result["seconds"] < MAX_FAILURE_SECONDS
        message = result["error"]
        assert f"'{model}'" in message
        for fix in ("connect to the network once", "weights=PATH", "--weights PATH"):
            assert fix in message
        assert "weights='random'" in message and "--weights random" in message


@pytest.mark.slow
def test_pretrained_dinov2_loads_from_the_hub_cache_without_network(tmp_path, video_frames):
    # Lay out a hub cache entry for facebook/dinov2-small as from_pretrained would leave it,
    # holding a (perturbed) random model, then load it with the network refused.
    repo = tmp_path / "hf" / "hub" / "models--facebook--dinov2-small"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    original = encoders.create_dinov2_encoder("small", "cpu", weights="random")
    with torch.no_grad():
        for param in original.module.parameters():
            param.mul_(1.01)
    original.save(repo / "snapshots" / revision)
    frames_file = tmp_path / "frames.npy"
    np.save(frames_file, np.stack(video_frames[:2]))

    env = {"HF_ENDPOINT": REFUSED_ENDPOINT}
    results = _run_isolated(tmp_path / "hf", [("dinov2", "small")], env, str(frames_file))
    loaded = results["dinov2"]
    assert loaded.get("weights") == "transformers pretrained 'facebook/dinov2-small' (cache)"
    assert loaded["seconds"] < MAX_FAILURE_SECONDS
    torch.testing.assert_close(
        torch.tensor(loaded["embedding"]), original.embed(video_frames[:2]), atol=1e-5, rtol=0
    )


def test_clip_pretrained_checkpoint_is_taken_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    from encoders.clip import _pretrained_checkpoint
    from encoders.registry import parse_model_name

    ref = parse_model_name("clip", "ViT-B/32")
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"stand-in")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(ref.arch, ref.tag)
    path, how = _pretrained_checkpoint(ref, tag_cfg)
    assert (Path(path).name, how) == ("open_clip_model.safetensors", "cache")


def test_random_weights_are_logged_and_labelled(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random")
    warnings = [r for r in caplog.records if r.name == "encoders" and r.levelno == logging.WARNING]
    assert any("random weights" in r.getMessage() and "'tiny'" in r.getMessage() for r in warnings)
    assert encoder.info.random_weights


def test_tiny_has_no_pretrained_weights() -> None:
    with pytest.raises(encoders.WeightsUnavailableError, match="weights='random'"):
        encoders.create_clip_encoder("tiny", "cpu")


def test_open_clip_name_without_tag_needs_one_for_pretrained() -> None:
    with pytest.raises(encoders.UnknownEncoderError, match=r"ViT-B-32:<tag>.*laion2b_s34b_b79k"):
        encoders.create_clip_encoder("ViT-B-32", "cpu")


@pytest.mark.parametrize("kind", ["clip", "dinov2", "default"])
def test_missing_weights_path_names_the_path(tmp_path, kind) -> None:
    missing = tmp_path / "nope.pt"
    model = {"clip": "tiny", "dinov2": "small", "default": None}[kind]
    with pytest.raises(encoders.WeightsUnavailableError, match=r"nope\.pt.* does not exist"):
        encoders.create_encoder(kind, model, weights=str(missing), device="cpu")


def test_a_missing_weights_path_is_refused_before_torch_is_imported(tmp_path) -> None:
    # Importing torch takes seconds: a typo in --weights is named at once, not after it.
    code = (
        "import sys, encoders\n"
        "try:\n"
        f"    encoders.create_encoder('clip', 'ViT-B/32', weights={str(tmp_path / 'x.pt')!r})\n"
        "except encoders.WeightsUnavailableError as exc:\n"
        "    print('torch' in sys.modules, 'does not exist' in str(exc))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_importing_encoders_does_not_import_the_model_libraries() -> None:
    code = (
        "import sys, encoders; "
        "print(sorted(m for m in ('open_clip', 'transformers') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
