"""Embed video frames with an encoder and compare them: the encoders package on its own.

python examples/embed_frames.py [INPUT]
"""

import sys

import av

from encoders import create_clip_encoder
from streamer.core.samples import sample_clip

path = sys.argv[1] if len(sys.argv) > 1 else str(sample_clip())
with av.open(path) as container:
    frames = [
        f.to_ndarray(format="rgb24")
        for _, f in zip(range(50), container.decode(video=0), strict=False)
    ]

encoder = create_clip_encoder("ViT-B/32", weights="random")
embeddings = encoder.embed(frames[::10])  # 5 frames, uint8 RGB, batched on the device
print(encoder.info)
print("similarity of frame 0 to frames 0, 10, 20, 30, 40:", (embeddings @ embeddings[0]).tolist())
