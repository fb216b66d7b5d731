"""Errors raised by `encoders`.

One small tree; each error also subclasses the builtin a caller would naturally catch::

    EncoderError(Exception)
    ├── UnknownEncoderError(EncoderError, ValueError)
    │       unknown kind, model name, pretrained tag or use case; the message lists the valid ones
    ├── WeightsUnavailableError(EncoderError, FileNotFoundError)
    │       pretrained weights neither cached nor downloadable, or a local weights path that is
    │       missing; the message names the model and the fixes
    ├── EncoderInputError(EncoderError, ValueError)
    │       images that are not uint8 HxWx3 RGB frames (or a normalised Bx3xSxS float tensor)
    ├── UnsupportedBackendError(EncoderError, ValueError)
    │       a backend that cannot run this encoder as asked (not installed, another device or
    │       precision, a family without an export); the message names the combination and fix
    ├── CalibrationError(EncoderError, ValueError)
    │       int8 calibration frames that cannot be had: the video is missing, is no video, or
    │       has no frame; the message names the file and the fix (another file, or no int8)
    └── ExportCacheError(EncoderError, OSError)
            the export cache cannot keep an export being written (its disk is full); the
            message names the folder and the fixes
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CalibrationError",
    "EncoderError",
    "EncoderInputError",
    "ExportCacheError",
    "UnknownEncoderError",
    "UnsupportedBackendError",
    "WeightsUnavailableError",
    "local_weights_path",
    "no_text_tower",
]


class EncoderError(Exception):
    """Base class of every error raised by `encoders`."""


class UnknownEncoderError(EncoderError, ValueError):
    """An encoder kind, model name, pretrained tag or use case that is not registered."""


class WeightsUnavailableError(EncoderError, FileNotFoundError):
    """Weights that cannot be loaded: not cached and not downloadable, or a missing local path."""


class EncoderInputError(EncoderError, ValueError):
    """Images in a form the encoder does not accept."""


class UnsupportedBackendError(EncoderError, ValueError):
    """A backend that cannot run the encoder as asked: the message names why and the fix."""


class CalibrationError(EncoderError, ValueError):
    """A video to calibrate int8 on that cannot be read: the message names it and the fix."""


class ExportCacheError(EncoderError, OSError):
    """An export cache that cannot keep the export being written: the message names the folder
    and the fixes."""


def weights_unavailable(model: str, reason: str, *, library: str) -> WeightsUnavailableError:
    """Build the error for pretrained weights that cannot be had, with the three ways out.

    Args:
        model: what the user asked for, e.g. "clip 'ViT-B/32' (open_clip tag 'openai')".
        reason: why loading failed (offline mode, unreachable host, missing repo file...).
        library: the library whose cache would hold the weights ("open_clip", "transformers").

    Returns:
        The error, for the caller to raise `from` the underlying cause.
    """
    return WeightsUnavailableError(
        f"Pretrained weights for {model} are not in the local cache and cannot be downloaded: "
        f"{reason}. Fixes: connect to the network once so {library} downloads and caches the "
        "weights (later runs load them offline); or pass weights=PATH (CLI: --weights PATH) "
        "with a local checkpoint; or pass weights='random' (CLI: --weights random) for a run "
        "with untrained weights, labelled as such."
    )


def no_text_tower(kind: str, model: str) -> UnknownEncoderError:
    """Build the error for `embed_text` on a family that embeds images only.

    Args:
        kind: the family ("dinov2", "default").
        model: its model name.
    """
    return UnknownEncoderError(
        f"{kind} {model!r} embeds images only: it has no text tower, so embed_text (zero-shot "
        "tags, text alerts) is not available; use a family with text (clip), and check "
        "encoder.has_text before calling embed_text"
    )


def local_weights_path(weights: str | Path, what: str) -> Path:
    """A user-supplied weights path, which must exist.

    Args:
        weights: the path given as `weights=`.
        what: the model, for the message, e.g. "clip 'tiny'".

    Raises:
        WeightsUnavailableError: when nothing exists at the path.
    """
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsUnavailableError(
            f"weights path {str(path)!r} for {what} does not exist; pass an existing checkpoint "
            "(as written by encoder.save()), weights='pretrained' for the library's cached "
            "weights, or weights='random' for untrained weights"
        )
    return path.resolve()
