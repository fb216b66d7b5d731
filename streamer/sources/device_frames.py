"""Decoded frames that stay on the GPU: NVDEC's NV12 surfaces as RGB tensors, through DLPack.

With `HWAccel("cuda", is_hw_owned=True)` PyAV leaves each decoded frame in GPU memory: two
planes, luma (H×W) and interleaved chroma (H/2×W/2×2), each readable by `torch.from_dlpack`
without a copy to the host. `device_rgb` turns such a frame into the H×W×3 uint8 RGB tensor
that `encoders.preprocess.preprocess_frames` takes, on the same device; a frame decoded on the
CPU and converted to NV12 goes through the same arithmetic, which is how it is tested without a
GPU.

The conversion is libswscale's, done with tensor ops: the matrix the frame is tagged with
(BT.709, BT.2020, or BT.601 for anything else, as libswscale assumes for untagged video), TV or
full range, and chroma upsampled by repeating each sample over its 2×2 block. libswscale
interpolates chroma instead, so sharp colour edges differ by a few levels, and its fixed-point
arithmetic lands about a level below the exact values computed here; after the encoder's
downscale to its input size the two agree to about a level (`tests/streamer/sources`).

torch is imported when a frame is converted, never by importing this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["MATRICES", "device_rgb", "matrix_of", "nv12_to_rgb"]

#: (Kr, Kb) of each YCbCr matrix: luma's red and blue weights (ITU-R BT.601, BT.709, BT.2020).
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}

#: FFmpeg's AVColorSpace numbers of the matrices above (libavutil/pixfmt.h).
_AVCOL_SPC = {1: "bt709", 9: "bt2020", 10: "bt2020"}
_AVCOL_RANGE_JPEG = 2  # full range; 0 (unspecified) and 1 (MPEG) are TV range


def matrix_of(frame: Any) -> tuple[str, bool]:
    """The matrix name and whether the range is full, from a PyAV frame's colour tags."""
    matrix = _AVCOL_SPC.get(int(frame.colorspace), "bt601")
    return matrix, int(frame.color_range) == _AVCOL_RANGE_JPEG


def nv12_to_rgb(
    luma: torch.Tensor, chroma: torch.Tensor, matrix: str = "bt601", full_range: bool = False
) -> torch.Tensor:
    """NV12 planes to RGB, on the planes' device.

    Args:
        luma: uint8 H×W (a row pitch wider than W is fine: pass the W columns).
        chroma: uint8 (H/2)×(W/2)×2, Cb then Cr.
        matrix: a key of `MATRICES`.
        full_range: luma 0..255 and chroma 0..255 instead of TV range (16..235, 16..240).

    Returns:
        uint8 H×W×3 RGB.

    Raises:
        ValueError: planes whose shapes or types do not make an 8-bit NV12 frame, or an
            unknown matrix.
    """
    import torch

    height, width = luma.shape[-2:]
    if chroma.shape != (height // 2, width // 2, 2) or height % 2 or width % 2:
        raise ValueError(
            f"NV12 needs an even H×W luma plane and an (H/2)×(W/2)×2 chroma plane, got "
            f"{tuple(luma.shape)} and {tuple(chroma.shape)}"
        )
    if luma.dtype != torch.uint8 or chroma.dtype != torch.uint8:
        raise ValueError(
            f"NV12 planes are 8-bit, got {luma.dtype} and {chroma.dtype} (10-bit video, P010, "
            "is not converted on the device yet: decode it with --hwaccel none)"
        )
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {', '.join(MATRICES)}, got {matrix!r}")
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    y = luma.float()
    c = chroma.float() - 128.0  # scaled at its own (half) size, then repeated over 2×2
    if not full_range:  # 219 luma steps and 224 chroma steps span the full scale
        y, c = (y - 16.0) * (255.0 / 219.0), c * (255.0 / 224.0)
    c = c.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
    cb, cr = c[..., 0], c[..., 1]
    red = y + 2.0 * (1.0 - kr) * cr
    blue = y + 2.0 * (1.0 - kb) * cb
    green = y - (2.0 * kb * (1.0 - kb) / kg) * cb - (2.0 * kr * (1.0 - kr) / kg) * cr
    rgb = torch.stack((red, green, blue), dim=-1)
    return rgb.round_().clamp_(0.0, 255.0).to(torch.uint8)


def device_rgb(frame: Any) -> torch.Tensor:
    """A decoded NV12 frame (on the GPU with `is_hw_owned=True`, or in host memory) as an
    H×W×3 uint8 RGB tensor on the frame's device, read through DLPack without a host copy.

    Raises:
        ValueError: a frame that is not NV12 (convert it with `frame.reformat(format="nv12")`).
    """
    import torch

    if frame.format.name not in ("nv12", "cuda"):
        raise ValueError(f"device_rgb needs an NV12 frame, got {frame.format.name}")
    height, width = frame.height, frame.width
    luma = _plane(torch.from_dlpack(frame.planes[0]), height, width)
    chroma = _plane(torch.from_dlpack(frame.planes[1]), height // 2, width)
    matrix, full = matrix_of(frame)
    return nv12_to_rgb(luma, chroma.reshape(height // 2, width // 2, 2), matrix, full)


def _plane(plane: torch.Tensor, rows: int, row_bytes: int) -> torch.Tensor:
    """A plane as read through DLPack (1-D, rows × pitch, or chroma's rows × W/2 × 2) as
    rows × row_bytes, without the padding at the end of each row."""
    return plane.reshape(rows, -1)[:, :row_bytes]
