"""CLIP's torch side: the open_clip model built and loaded, and the `ClipEncoder` around it.

`encoders.clip` describes the family without torch (its models, names, shapes); this module,
imported when a CLIP encoder is built, does the building.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encoders._hub import cached_hub_file, hub_unreachable_reason
from encoders._openclip import load_open_clip, root_logging_kept
from encoders.base import (
    RANDOM_WEIGHTS,
    Encoder,
    WeightsSource,
    resolve_device,
    resolve_dtype,
    seeded,
)
from encoders.bpe import text_length
from encoders.errors import (
    EncoderInputError,
    UnknownEncoderError,
    WeightsUnavailableError,
    local_weights_path,
    weights_unavailable,
)
from encoders.registry import ModelRef, PreprocessConfig

__all__ = ["ClipEncoder", "build", "preprocess_config_from_open_clip"]

# The preprocessing fields an open_clip pretrained tag may set ("size" comes from the model).
_TAG_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


def build(
    ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
) -> ClipEncoder:
    """`create_clip_encoder` for a name parsed already (the family's `create`)."""
    with root_logging_kept():
        return _build(ref, device, weights, precision)


def _build(
    ref: ModelRef, device: str | torch.device | None, weights: str, precision: str
) -> ClipEncoder:
    open_clip = load_open_clip()
    target = resolve_device(device)
    dtype = resolve_dtype(precision, target)
    checkpoint, source, tag_cfg = _resolve_weights(ref, weights)
    arch_cfg = open_clip.get_model_config(ref.arch) or {}
    with seeded(0):  # only matters for random weights; a checkpoint overwrites every tensor
        model = open_clip.create_model(
            ref.arch,
            pretrained=checkpoint,
            # An OpenAI tag on a plain open_clip name ("ViT-B-32:openai") needs QuickGELU.
            force_quick_gelu=bool(tag_cfg.get("quick_gelu")) and not arch_cfg.get("quick_gelu"),
            force_preprocess_cfg={k: tag_cfg[k] for k in _TAG_PREPROCESS_KEYS if k in tag_cfg},
        )
    tokenizer = open_clip.get_tokenizer(ref.arch)
    return ClipEncoder(model, ref, source, target, dtype, tokenizer=tokenizer)


def _resolve_weights(ref: ModelRef, weights: str) -> tuple[str | None, WeightsSource, dict]:
    """(checkpoint path or None, where it came from, the pretrained tag's config)."""
    if weights == "random":
        return None, RANDOM_WEIGHTS, {}
    if weights != "pretrained":
        path = local_weights_path(weights, f"clip {ref.name!r}")
        if not path.is_file():
            raise WeightsUnavailableError(
                f"clip weights must be a state-dict file (as written by encoder.save()), "
                f"got the folder {str(path)!r}"
            )
        return str(path), WeightsSource(f"local file {path}"), {}
    if ref.tag is None:
        raise _needs_tag(ref)
    tag_cfg = load_open_clip().get_pretrained_cfg(ref.arch, ref.tag)
    checkpoint, how = _pretrained_checkpoint(ref, tag_cfg)
    return checkpoint, WeightsSource(f"open_clip pretrained {ref.tag!r} ({how})"), tag_cfg


def _needs_tag(ref: ModelRef) -> Exception:
    tags = load_open_clip().list_pretrained_tags_by_model(ref.arch)
    if not tags:
        return WeightsUnavailableError(
            f"clip {ref.name!r} has no pretrained weights; pass weights='random' (CLI: --weights "
            "random) for untrained weights or weights=PATH (CLI: --weights PATH) for a checkpoint"
        )
    return UnknownEncoderError(
        f"clip {ref.name!r} needs a pretrained tag for weights='pretrained': use "
        f"'{ref.arch}:<tag>' with one of: {', '.join(tags)}"
    )


def _pretrained_checkpoint(ref: ModelRef, tag_cfg: dict) -> tuple[str, str]:
    """The local checkpoint for an open_clip pretrained tag: cached, or downloaded now."""
    open_clip = load_open_clip()
    what = f"clip {ref.name!r} (open_clip {ref.arch!r}, tag {ref.tag!r})"
    hub = tag_cfg.get("hf_hub", "")
    if hub:  # every tag in open_clip 3.x has one; url-only tags go straight to open_clip
        repo_id, filename = os.path.split(hub)  # open_clip's own split of 'org/repo/[file]'
        candidates = list(_hub_filenames(filename))
        cached = cached_hub_file(repo_id, candidates)
        if cached is not None:
            return cached, "cache"
        reason = hub_unreachable_reason(repo_id, candidates[-1])
        if reason is not None:
            raise weights_unavailable(f"{what} from {repo_id}", reason, library="open_clip")
    try:
        return open_clip.download_pretrained(tag_cfg), "downloaded"
    except OSError as err:  # open_clip raises FileNotFoundError for hub failures
        raise weights_unavailable(what, f"download failed: {err}", library="open_clip") from err


def _hub_filenames(filename: str) -> Iterator[str]:
    """The files open_clip tries for a hub checkpoint, safetensors first (as open_clip does)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    if filename == HF_WEIGHTS_NAME:
        yield HF_SAFE_WEIGHTS_NAME
    elif filename.endswith((".bin", ".pth")):
        yield filename[:-4] + ".safetensors"
    yield filename


def preprocess_config_from_open_clip(cfg: dict[str, Any]) -> PreprocessConfig:
    """Convert `open_clip.get_model_preprocess_cfg(model)` into a `PreprocessConfig`.

    open_clip's eval transform is Resize(shortest side) + CenterCrop (torchvision rounding), or a
    plain Resize for "squash"; both are reproduced by `encoders.preprocess`.
    """
    size = cfg["size"]
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise ValueError(f"non-square open_clip input sizes are not supported, got {size}")
        size = size[0]
    return PreprocessConfig(
        size=int(size),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
        crop=True,
        crop_rounding="round",
    )


def _reads_any_length(module: nn.Module) -> bool:
    """`ClipEncoder.text_any_length` of `module` (decided once: torch.export cannot trace it)."""
    mask = getattr(module, "attn_mask", None)
    return (
        type(module) is load_open_clip().CLIP  # a subclass may encode text its own way
        and getattr(module, "text_pool_type", None) == "argmax"
        and mask is not None
        and torch.equal(mask.cpu(), _causal_mask(mask.shape[0], "cpu"))
    )


def _causal_mask(n: int, device: torch.device | str) -> torch.Tensor:
    """open_clip's causal attention mask for n positions: -inf above the diagonal, 0 elsewhere."""
    return torch.full((n, n), float("-inf"), device=device).triu(1)


def _token_capture(encoder: weakref.ref[ClipEncoder]) -> Callable[..., None]:
    """The forward hook on ln_post that hands its output (the token sequence) to `encoder`."""

    def capture(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        owner = encoder()
        if owner is not None:
            owner._captured = output

    return capture


class ClipEncoder(Encoder):
    """An open_clip CLIP model: image tokens after ln_post, projected image and text embeddings."""

    kind = "clip"
    has_text = True

    def __init__(
        self,
        model: nn.Module,
        ref: ModelRef,
        weights: WeightsSource,
        device: torch.device,
        dtype: torch.dtype,
        *,
        tokenizer: Any,
    ) -> None:
        open_clip = load_open_clip()
        visual = model.visual
        if not isinstance(getattr(visual, "ln_post", None), nn.LayerNorm):
            raise UnknownEncoderError(
                f"clip {ref.name!r}: only open_clip ViT image towers (with ln_post) are "
                f"supported, got {type(visual).__name__}"
            )
        preprocess_cfg = preprocess_config_from_open_clip(open_clip.get_model_preprocess_cfg(model))
        super().__init__(model, ref, preprocess_cfg, weights, device, dtype)
        self._tokenizer = tokenizer
        self._any_length = _reads_any_length(model)
        self._token_dim = visual.ln_post.normalized_shape[0]
        self._dim = visual.output_dim
        self._captured: torch.Tensor | None = None
        # ln_post's output is the full token sequence [B, T, width]; encode_image then pools
        # and projects it. A hook gets both from one forward pass. It reaches the encoder
        # through a weak reference: the model holds its hooks, and a bound method would tie
        # the encoder and its model in a cycle that only the garbage collector frees (a GPU
        # model's memory kept after `del encoder`, a run's model kept to the interpreter's exit).
        visual.ln_post.register_forward_hook(_token_capture(weakref.ref(self)))

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self._module.encode_image(pixels)
        tokens, self._captured = self._captured, None
        if tokens is None or tokens.ndim != 3:
            raise UnknownEncoderError(
                f"clip {self._ref.name!r} applies ln_post after pooling; its token sequence is "
                "not available"
            )
        return tokens, pooled

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Embed texts (labels, prompts, alert queries) into the image embedding space.

        Args:
            texts: a list of strings (a single string is one text).

        Returns:
            [len(texts), dim] float32, L2-normalised, on `self.device`.

        Raises:
            EncoderInputError: when `texts` is not a list of strings.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            got = sorted({type(t).__name__ for t in texts if not isinstance(t, str)})
            raise EncoderInputError(f"texts must be a list of str, got items of type {got}")
        if not texts:
            return torch.empty(0, self._dim, device=self._device)
        tokens = self._tokenizer(texts)
        if self.text_any_length:  # the positions after every end-of-text change nothing
            tokens = tokens[:, : text_length(tokens)]
        (features,) = self._run_oom_safe(
            lambda t: (self._text_forward(t.to(self._device)),), (tokens,)
        )
        return F.normalize(features.float(), dim=-1).to(self._device)

    @property
    def text_any_length(self) -> bool:
        """Whether `_text_forward` takes token ids cut after the batch's last end-of-text
        token (`encoders.bpe.text_length`) and gives what the full context gives: open_clip's
        `CLIP` (a causal mask: no position sees a later one; pooled at the end-of-text token).
        Prompts are about 10 of the 77 positions: a label set embeds about ten times faster."""
        return self._any_length

    def _text_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled, projected text features [B, dim] (not normalised) of token ids [B, T]: T
        is the context length, or any length up to it when `text_any_length`. open_clip's
        `CLIP.encode_text` with the positional embedding and the causal mask cut to T."""
        module = self._module
        if not self.text_any_length:
            return module.encode_text(tokens)
        n = tokens.shape[1]
        cast = module.transformer.get_cast_dtype()
        x = module.token_embedding(tokens).to(cast)
        x = x + module.positional_embedding.narrow(0, 0, n).to(cast)
        mask = _causal_mask(n, x.device)  # not the buffer's corner: torch.export keeps n free
        x = module.ln_final(module.transformer(x, attn_mask=mask))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        projection = module.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    @property
    def logit_scale(self) -> float:
        """The trained temperature, exp'd: logits = logit_scale * image_emb @ text_emb.T."""
        return float(self._module.logit_scale.detach().float().exp())

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def token_dim(self) -> int:
        return self._token_dim
