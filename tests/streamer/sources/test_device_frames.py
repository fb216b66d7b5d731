"""NV12 frames to RGB tensors (`streamer.sources.device_frames`), against libswscale.

On the GPU the planes come from NVDEC through DLPack; here the same frames are decoded on the
CPU and converted to NV12 by libswscale, and read through the same DLPack path.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import ColorRange, Colorspace

from encoders.preprocess import preprocess_frames
from encoders.registry import OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from streamer.sources.device_frames import device_rgb, matrix_of, nv12_to_rgb


@pytest.fixture(scope="module")
def decoded(sample_clip) -> av.VideoFrame:
    """A frame of the real sample clip (720p, untagged colours: libswscale reads BT.601)."""
    with av.open(str(sample_clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                return frame
    raise AssertionError("the sample clip has fewer than 31 frames")


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_a_real_frame_matches_libswscale(decoded) -> None:
    nv12 = decoded.reformat(format="nv12")
    assert matrix_of(nv12) == ("bt601", False)
    ours = device_rgb(nv12).numpy()
    reference = decoded.reformat(format="rgb24").to_ndarray()
    assert ours.shape == reference.shape == (720, 1280, 3)
    diff = _diff(ours, reference)
    # libswscale interpolates chroma, this repeats it: a few levels at colour edges.
    assert diff.mean() < 1.5
    assert np.percentile(diff, 99) <= 3
    assert diff.max() <= 12


def test_at_the_encoders_input_size_the_two_agree(decoded) -> None:
    """What matters is the model input: after the downscale the chroma edges average out; what
    is left is libswscale's fixed-point arithmetic, which lands about one level below the exact
    conversion (its fitted red offset is -223.4 against the matrix's -222.9, then truncated)."""
    nv12 = decoded.reformat(format="nv12")
    cfg = PreprocessConfig(224, OPENAI_MEAN, OPENAI_STD)
    ours = preprocess_frames(device_rgb(nv12)[None], cfg, torch.device("cpu"), torch.float32)
    reference = decoded.reformat(format="rgb24").to_ndarray()
    theirs = preprocess_frames(torch.from_numpy(reference)[None], cfg, torch.device("cpu"),
                               torch.float32)  # fmt: skip
    pixel_step = 1.0 / (255.0 * min(OPENAI_STD))  # one level, in normalised units
    assert (ours - theirs).abs().mean().item() < 1.5 * pixel_step


@pytest.mark.parametrize(
    ("colorspace", "tagged", "name"),
    [(Colorspace.ITU709, 1, "bt709"), (Colorspace.ITU601, 5, "bt601")],
)
@pytest.mark.parametrize("full_range", [False, True])
def test_the_frames_own_matrix_and_range_are_used(colorspace, tagged, name, full_range) -> None:
    """Flat colours survive RGB -> NV12 (libswscale, tagged) -> RGB (here) within a level or
    two; read with the other matrix they would not."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (235, 235, 235), (20, 20, 20)]
    image = np.concatenate([np.full((16, 32, 3), c, np.uint8) for c in colours], axis=0)
    rgb = av.VideoFrame.from_ndarray(image, format="rgb24")
    nv12 = rgb.reformat(
        format="nv12",
        dst_colorspace=colorspace,
        dst_color_range=ColorRange.JPEG if full_range else ColorRange.MPEG,
    )
    nv12.colorspace = tagged
    nv12.color_range = 2 if full_range else 1
    assert matrix_of(nv12) == (name, full_range)
    back = device_rgb(nv12).numpy()
    for row, colour in enumerate(colours):
        block = back[row * 16 + 2 : row * 16 + 14].reshape(-1, 3)  # away from the chroma edges
        assert _diff(block, np.array(colour, np.uint8)).max() <= 2, (name, colour)
    other = "bt601" if name == "bt709" else "bt709"
    luma = torch.from_dlpack(nv12.planes[0]).reshape(image.shape[0], -1)[:, : image.shape[1]]
    chroma = torch.from_dlpack(nv12.planes[1]).reshape(image.shape[0] // 2, -1, 2)
    wrong = nv12_to_rgb(luma, chroma, other, full_range).numpy()
    assert _diff(wrong, image).max() > 10


def test_planes_that_are_not_nv12_are_refused() -> None:
    with pytest.raises(ValueError, match="NV12 needs"):
        nv12_to_rgb(torch.zeros(4, 6, dtype=torch.uint8), torch.zeros(2, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="10-bit video"):  # P010: 16-bit samples
        nv12_to_rgb(torch.zeros(4, 4, dtype=torch.int16), torch.zeros(2, 2, 2, dtype=torch.int16))
    with pytest.raises(ValueError, match="matrix must be one of"):
        nv12_to_rgb(torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(2, 2, 2, dtype=torch.uint8),
                    "srgb")  # fmt: skip
    with pytest.raises(ValueError, match="needs an NV12 frame, got yuv420p"):
        device_rgb(av.VideoFrame(16, 16, "yuv420p"))


def test_importing_the_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, streamer.sources.device_frames; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "False"
