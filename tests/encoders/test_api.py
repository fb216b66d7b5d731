"""The public surface of `encoders`, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import inspect

import encoders

PUBLIC = {
    "ClipEncoder",
    "DefaultEncoder",
    "Dinov2Encoder",
    "Encoder",
    "EncoderError",
    "EncoderInfo",
    "EncoderInputError",
    "EncoderOutput",
    "EncoderSpec",
    "PreprocessConfig",
    "UnknownEncoderError",
    "UnsupportedBackendError",
    "UseCase",
    "WeightsUnavailableError",
    "create_clip_encoder",
    "create_default_encoder",
    "create_dinov2_encoder",
    "create_encoder",
    "encoder_matrix",
    "list_encoders",
    "open_export",
    "recommend_encoder",
}


def test_all_is_pinned_and_importable() -> None:
    assert set(encoders.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(encoders, name) is not None


def _signature(func) -> str:
    return str(inspect.signature(func)).replace("'", "")


def test_factory_signatures() -> None:
    assert _signature(encoders.create_encoder) == (
        "(kind: str, model: str | None = None, *, weights: str = pretrained, "
        "device: str | torch.device | None = None, precision: str = auto, "
        "backend: str = torch, export_cache: str | os.PathLike[str] | None = None, "
        "int8: bool = False, calibration: str | os.PathLike[str] | Calibration | None = None, "
        "export_in_background: bool = False) "
        "-> Encoder"
    )
    assert _signature(encoders.open_export) == (
        "(kind: str, model: str | None = None, *, weights: str = pretrained, "
        "export_cache: str | os.PathLike[str], device: str | None = None, "
        "backend: str = auto) -> ExportedEncoder | None"
    )
    assert _signature(encoders.create_clip_encoder) == (
        "(model_name: str = ViT-B/32, device: str | torch.device | None = None, *, "
        "weights: str = pretrained, precision: str = auto) -> ClipEncoder"
    )
    assert _signature(encoders.create_dinov2_encoder) == (
        "(size: str = large, device: str | torch.device | None = None, *, "
        "weights: str = pretrained, precision: str = auto) -> Dinov2Encoder"
    )
    assert _signature(encoders.create_default_encoder) == (
        "(device: str | torch.device | None = None, *, weights: str = random, "
        "precision: str = auto) -> DefaultEncoder"
    )


def test_error_tree() -> None:
    assert issubclass(encoders.UnknownEncoderError, ValueError)
    assert issubclass(encoders.WeightsUnavailableError, FileNotFoundError)
    assert issubclass(encoders.EncoderInputError, ValueError)
    assert issubclass(encoders.UnsupportedBackendError, ValueError)
    for error in (
        encoders.UnknownEncoderError,
        encoders.WeightsUnavailableError,
        encoders.EncoderInputError,
        encoders.UnsupportedBackendError,
    ):
        assert issubclass(error, encoders.EncoderError)


def test_info_fields() -> None:
    fields = list(encoders.EncoderInfo.__dataclass_fields__)
    assert fields == [
        "kind", "model", "dim", "token_dim", "num_params", "image_size",
        "weights", "random_weights", "device", "dtype", "speedups", "backend",
        "weights_digest",
    ]  # fmt: skip
