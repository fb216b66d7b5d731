"""What an encoder is, without torch: its description (`EncoderInfo`), where its weights came
from (`WeightsSource`) and the precision names. `encoders.base` re-exports them; they live here
so that code that only describes encoders (the CLI, a run from a cached export, the streamer's
caches) needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRECISION_NAMES", "RANDOM_WEIGHTS", "EncoderInfo", "WeightsSource"]

#: the precisions an encoder can run in besides "auto" (`encoders.base.PRECISIONS` maps them to
#: torch dtypes)
PRECISION_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class WeightsSource:
    """Where an encoder's weights came from.

    Attributes:
        description: for people, e.g. "open_clip pretrained 'openai' (cache)".
        random: True when the weights are an untrained initialisation.
    """

    description: str
    random: bool = False


RANDOM_WEIGHTS = WeightsSource("random weights (not trained)", random=True)


@dataclass(frozen=True)
class EncoderInfo:
    """A snapshot of what an encoder is and where it runs (for logs, the HUD, benchmarks).

    Attributes:
        kind, model: as passed to `create_encoder` ("clip", "ViT-B/32").
        dim: size of `embed()` vectors; token_dim: size of each token of `encoder(images)`.
        num_params: parameters of the whole model (CLIP: image and text towers).
        image_size: the model's square input side.
        weights: where the weights came from, for people ("local file /x/y.pt", ...).
        random_weights: True for an untrained initialisation.
        device, dtype: where and in what precision it runs now ("cuda:0", "float16").
        speedups: the torch speed-ups in use now: "eager", "cuda-graphs", "compile" or
            "compile+cuda-graphs"; "none" on another backend.
        backend: what runs the image tower: "torch" or "openvino" (`encoders.backends`).
        weights_digest: a digest of the weights when one was computed (an export's key:
            `encoders.backends.export_cache.state_dict_digest`), else None; caches of what
            the weights compute (the streamer's text embeddings) trust a key holding it.
    """

    kind: str
    model: str
    dim: int
    token_dim: int
    num_params: int
    image_size: int
    weights: str
    random_weights: bool
    device: str
    dtype: str
    speedups: str = "eager"
    backend: str = "torch"
    weights_digest: str | None = None
