"""Animated images (GIF, animated WebP, APNG) sampled like short clips.

A model shown only the first frame of an animation is blind to the rest: a GIF that opens
on a benign frame can show anything after it. The pipeline's decoder (``decode_sample``)
therefore samples up to ``ANIMATION_FRAMES`` frames spread evenly over the animation, first
and last included; the NSFW stage takes each class at its worst frame and the alignment
stage the mean of the frames' embeddings, as for a video. The sample's own picture (hashes,
quality, visible watermark, reports) stays the first frame.

Frames decode in order (GIF and APNG frames are deltas on the ones before), so the cost is
bounded in pixels: frames past ``ANIMATION_PIXELS`` decoded pixels are not reached, and the
sampled frames are kept at most ``video.MAX_FRAME_SIDE`` long, as video frames are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

ANIMATION_FORMATS = frozenset({"GIF", "WEBP", "PNG"})  # not MPO (a depth map) nor TIFF pages
ANIMATION_FRAMES = 8
# 400 frames of 500x500: GIF decodes this in well under a second on one core.
ANIMATION_PIXELS = 100_000_000


def frame_indices(n_frames: int, width: int, height: int) -> list[int]:
    """Up to ANIMATION_FRAMES indices evenly spread over the frames the pixel budget reaches,
    first and last included."""
    reach = min(n_frames, max(1, ANIMATION_PIXELS // max(1, width * height)))
    k = min(ANIMATION_FRAMES, reach)
    return sorted({round(float(x)) for x in np.linspace(0, reach - 1, k)})


def sample_frames(
    im: Image.Image,
    finish: Callable[[Image.Image], Image.Image],
    max_side: int,
) -> tuple[list[Image.Image], dict[str, int]] | None:
    """The sampled frames of the animated ``im`` (opened, not yet read past frame 0), each
    made RGB by ``finish`` (orientation, colour profile, alpha) and shrunk to ``max_side``;
    None when ``im`` is not an animation of a kind sampled here."""
    try:
        if im.format not in ANIMATION_FORMATS or not getattr(im, "is_animated", False):
            return None
        n = int(getattr(im, "n_frames", 1))  # GIF: a scan of the file, which may be cut short
    except Exception:
        return None
    if n < 2:
        return None
    w, h = im.size
    frames: list[Image.Image] = []
    info = {"frames": n, "sampled": 0, "last_index": 0}
    for i in frame_indices(n, w, h):
        try:
            im.seek(i)
            frame = finish(im.copy())
        except Exception:
            # A truncated file or a frame count that lies (an APNG's acTL is only a claim):
            # the frames read so far stand, the sample's first frame is unharmed.
            info["unreadable_from"] = i
            break
        if max(frame.size) > max_side:
            frame.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        frames.append(frame)
        info["sampled"], info["last_index"] = len(frames), i
    return (frames, info) if len(frames) >= 2 else None
