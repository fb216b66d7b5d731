"""DINOv2's torch side: transformers' `Dinov2Model` built and loaded, and the `Dinov2Encoder`.

`encoders.dinov2` describes the family without torch; this module, imported when a DINOv2
encoder is built, does the building.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from encoders._dinov2_config import (
    DINOV2_PREPROCESS,
    dinov2_config,
    dinov2_size,
    preprocess_config_from_hf,
    preprocess_config_to_hf,
)
from encoders._hub import cached_hub_file, hub_unreachable_reason
from encoders.base import (
    RANDOM_WEIGHTS,
    Encoder,
    WeightsSource,
    resolve_device,
    resolve_dtype,
    seeded,
)
from encoders.errors import local_weights_path, weights_unavailable
from encoders.registry import ModelRef, PreprocessConfig

__all__ = ["Dinov2Encoder", "build"]

logger = logging.getLogger("encoders")

_PROCESSOR_FILE = "preprocessor_config.json"
_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def build(
    ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
) -> Dinov2Encoder:
    """`create_dinov2_encoder` for a name parsed already (the family's `create`)."""
    target = resolve_device(device)
    dtype = resolve_dtype(precision, target)
    model, preprocess_cfg, source = _load(ref, weights)
    return Dinov2Encoder(model, ref, preprocess_cfg, source, target, dtype)


def _load(ref: ModelRef, weights: str) -> tuple[nn.Module, PreprocessConfig, WeightsSource]:
    if weights == "random":
        return _random_model(ref), DINOV2_PREPROCESS, RANDOM_WEIGHTS
    if weights == "pretrained":
        return _pretrained(ref)
    path = local_weights_path(weights, f"dinov2 {ref.name!r}")
    if path.is_dir():
        from transformers import Dinov2Model

        model = Dinov2Model.from_pretrained(path, local_files_only=True)
        if model.config.hidden_size != dinov2_size(ref).hidden_size:
            logger.warning(
                "dinov2 %r: the folder %s holds a model of width %d, not %d; using the folder's",
                ref.name,
                path,
                model.config.hidden_size,
                dinov2_size(ref).hidden_size,
            )
        return model, _folder_preprocess(path), WeightsSource(f"local folder {path}")
    model = _random_model(ref)
    model.load_state_dict(_read_state_dict(path))
    return model, DINOV2_PREPROCESS, WeightsSource(f"local file {path}")


def _random_model(ref: ModelRef) -> nn.Module:
    from transformers import Dinov2Model

    with seeded(0):  # the same "random" model every run
        return Dinov2Model(dinov2_config(dinov2_size(ref)))


def _pretrained(ref: ModelRef) -> tuple[nn.Module, PreprocessConfig, WeightsSource]:
    """`from_pretrained` from the cache first; the network only after a quick probe."""
    from transformers import Dinov2Model

    what = f"dinov2 {ref.name!r} ({ref.arch})"
    try:
        model, how = Dinov2Model.from_pretrained(ref.arch, local_files_only=True), "cache"
    except OSError as not_cached:
        reason = hub_unreachable_reason(ref.arch, "config.json")
        if reason is not None:
            raise weights_unavailable(what, reason, library="transformers") from not_cached
        try:
            model, how = Dinov2Model.from_pretrained(ref.arch), "downloaded"
        except OSError as err:
            message = f"download failed: {err}"
            raise weights_unavailable(what, message, library="transformers") from err
    processor_file = cached_hub_file(ref.arch, [_PROCESSOR_FILE])
    if processor_file is None and how == "downloaded":
        processor_file = _download_if_present(ref.arch, _PROCESSOR_FILE)
    preprocess_cfg = _read_preprocess(processor_file) if processor_file else DINOV2_PREPROCESS
    return model, preprocess_cfg, WeightsSource(f"transformers pretrained {ref.arch!r} ({how})")


def _download_if_present(repo_id: str, filename: str) -> str | None:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename)
    except OSError:  # no such file in the repo: the default DINOv2 processor applies
        return None


def _folder_preprocess(folder: Path) -> PreprocessConfig:
    processor_file = folder / _PROCESSOR_FILE
    return _read_preprocess(processor_file) if processor_file.is_file() else DINOV2_PREPROCESS


def _read_preprocess(path: str | Path) -> PreprocessConfig:
    with open(path, encoding="utf-8") as f:
        return preprocess_config_from_hf(json.load(f))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class Dinov2Encoder(Encoder):
    """A transformers `Dinov2Model`: tokens = last_hidden_state, embedding = pooler_output."""

    kind = "dinov2"

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._module(pixel_values=pixels)
        return out.last_hidden_state, out.pooler_output

    @property
    def dim(self) -> int:
        return self._module.config.hidden_size

    @property
    def token_dim(self) -> int:
        return self._module.config.hidden_size

    def save(self, path: str | Path) -> Path:
        """Write the weights: a state-dict file for a .pt/.pth/.bin/.safetensors path, else a
        `save_pretrained` folder with a preprocessor_config.json. `weights=path` reloads either.

        Returns:
            The path written.
        """
        path = Path(path).expanduser()
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in self._module.state_dict().items()}, path)
            return path
        if path.suffix in _STATE_DICT_SUFFIXES:
            return super().save(path)
        self._module.save_pretrained(path)
        with open(path / _PROCESSOR_FILE, "w", encoding="utf-8") as f:
            json.dump(preprocess_config_to_hf(self._preprocess_cfg), f, indent=2)
        return path
