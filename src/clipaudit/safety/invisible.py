"""Invisible watermarks of Stable Diffusion (imwatermark's ``dwtDct``): bits read back and a grade.

SD v1 embeds the 17 bytes ``StableDiffusionV1`` (136 bits); SDXL embeds the 48-bit message
0xB3EC907BB19E. Both use imwatermark's ``EmbedMaxDct`` with its defaults (U channel of
YUV from BGR, Haar DWT, 4x4 blocks, scale 36), whose per-block reading does not depend on the
message length. So one vectorised pass reads every block once and both messages are folded
from it: the same bits as ``WatermarkDecoder(...).decode(bgr, "dwtDct")`` (a test checks that
equality against imwatermark itself), at a fraction of the cost of its per-block Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pywt
from PIL import Image

SDXL_MESSAGE = 0xB3EC907BB19E
SDXL_BITS = np.array([int(b) for b in bin(SDXL_MESSAGE)[2:].zfill(48)], dtype=np.uint8)
SDV1_BYTES = b"StableDiffusionV1"
SDV1_BITS = np.unpackbits(np.frombuffer(SDV1_BYTES, np.uint8))
MARKS: dict[str, np.ndarray] = {"sdxl": SDXL_BITS, "sdv1": SDV1_BITS}

# imwatermark's EmbedMaxDct defaults: per-YUV-channel scales (Y unused) and the block side.
SCALES = (0, 36, 36)
BLOCK = 4
# Reference needs 256x256; images larger than this are not read (memory, and a generator's
# output that size has been upscaled, which erodes dwtDct marks anyway).
MIN_SIDE = 256
MAX_PIXELS = 36_000_000

GRADES = ("none", "partial", "likely", "very_likely")
NOT_CHECKABLE = "not_checkable"
# Matching bits out of 48 from which each grade starts (reference facts); other message
# lengths use the same fractions, rounded up.
GRADE_FROM_OF_48 = {"partial": 28, "likely": 34, "very_likely": 36}


def grade(matched: int, total: int) -> str:
    """none (<= 27 of 48), partial (28-33), likely (34-35) or very_likely (>= 36)."""
    out = "none"
    for name in GRADES[1:]:
        if matched >= math.ceil(GRADE_FROM_OF_48[name] * total / 48):
            out = name
    return out


def block_scores(bgr: np.ndarray) -> list[np.ndarray]:
    """Per channel that carries bits, each 4x4 block's 0/1 reading in imwatermark's order."""
    rows, cols = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    out = []
    for channel in range(2):  # imwatermark's loop covers Y and U; Y's scale is 0
        scale = SCALES[channel]
        if scale <= 0:
            continue
        ca1, _ = pywt.dwt2(yuv[: rows // 4 * 4, : cols // 4 * 4, channel], "haar")
        r, c = ca1.shape[0] // BLOCK, ca1.shape[1] // BLOCK
        blocks = (
            ca1[: r * BLOCK, : c * BLOCK]
            .reshape(r, BLOCK, c, BLOCK)
            .transpose(0, 2, 1, 3)
            .reshape(r * c, BLOCK * BLOCK)
        )
        pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
        val = np.abs(blocks[np.arange(len(blocks)), pos])
        out.append((np.mod(val, scale) > 0.5 * scale).astype(np.float64))
    return out


def fold_bits(scores: list[np.ndarray], length: int) -> np.ndarray:
    """Average block readings into ``length`` bits, as ``EmbedMaxDct.decode`` does."""
    sums = np.zeros(length)
    counts = np.zeros(length)
    for s in scores:
        slot = np.arange(len(s)) % length
        sums += np.bincount(slot, weights=s, minlength=length)
        counts += np.bincount(slot, minlength=length)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = sums / counts
    return (avg * 255 > 127).astype(np.uint8)


@dataclass(frozen=True)
class InvisibleReading:
    """Matching bits per mark (None when not checkable), and the best grade with its mark."""

    bits: dict[str, int | None]
    grade: str
    mark: str | None


def read_marks(image: Image.Image, marks: tuple[str, ...] = ("sdxl", "sdv1")) -> InvisibleReading:
    """Read every mark in ``marks`` from an RGB image; thread-safe (no shared state)."""
    w, h = image.size
    if min(w, h) < MIN_SIDE or w * h > MAX_PIXELS:
        return InvisibleReading({m: None for m in marks}, NOT_CHECKABLE, None)
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8)[:, :, ::-1])
    scores = block_scores(bgr)
    bits: dict[str, int | None] = {}
    best, best_mark = "none", None
    for m in marks:
        want = MARKS[m]
        matched = int((fold_bits(scores, len(want)) == want).sum())
        bits[m] = matched
        g = grade(matched, len(want))
        if GRADES.index(g) > GRADES.index(best):
            best, best_mark = g, m
    return InvisibleReading(bits, best, best_mark)
