"""A 64-bit copy hash that survives crops: a small CNN trained on real photographs.

pHash and dHash move most of their bits when an image is cropped by a few percent (a 2.5%
shift of a 90% crop: 10 of 64 pHash bits), so a crop is not found by them. This hash is the
sign of 64 outputs of a four-layer convolutional network (3→24→48→64→64 channels, 3x3
stride-2 convolutions, a 2x2 average pool, one linear layer) over the 64x64 colour image,
trained contrastively on the calibration part of ``shared/photos`` so that crops keeping
78-100% of each side, brightness x0.7-1.4 and noise keep the bits
(``clipaudit.calibrate.copy_hash_train``). It runs in NumPy from weights shipped with the
package (about 60k parameters, ~3.5 MFLOP an image). The bits are a candidate key, searched
like pHash; a pair is only a duplicate once its thumbnails confirm it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 64
WEIGHTS = Path(__file__).with_name("copyhash.npz")
MEAN, STD = 0.45, 0.25
LAYERS = 4


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as z:
        return {k: z[k].astype(np.float32) for k in z.files}


def _conv_s2(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 convolution, stride 2, zero padding 1, then ReLU; x is (n, H, W, C) and w
    (out, C, 3, 3) as torch stores it."""
    n, _, _, c = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(1, 2))[:, ::2, ::2]
    oh, ow = win.shape[1], win.shape[2]
    cols = win.reshape(n * oh * ow, c * 9)  # (C, kh, kw) order, as in w
    out = cols @ w.reshape(len(w), c * 9).T + b
    return np.maximum(out, 0, out=out).reshape(n, oh, ow, len(w))


def copy_codes(pixels: np.ndarray) -> np.ndarray:
    """The network's 64 outputs for (n, 64, 64, 3) uint8 images."""
    wt = _weights()
    x = (pixels.astype(np.float32) / 255.0 - MEAN) / STD
    for k in range(LAYERS):
        x = _conv_s2(x, wt[f"c{k}.weight"], wt[f"c{k}.bias"])
    n, h, w, c = x.shape  # 4x4 → a 2x2 average pool, flattened channel-major as torch does
    pooled = x.reshape(n, 2, h // 2, 2, w // 2, c).mean(axis=(2, 4))
    flat = pooled.transpose(0, 3, 1, 2).reshape(n, c * 4)
    return flat @ wt["f.weight"].T + wt["f.bias"]


def copy_hashes(images: Sequence[Image.Image], batch: int = 64) -> list[int]:
    """Each image's copy hash as a signed int64 (bit k: output k is positive)."""
    out: list[int] = []
    weights = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    for s in range(0, len(images), batch):
        px = np.stack(
            [
                np.asarray(im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BOX))
                for im in images[s : s + batch]
            ]
        )
        bits = copy_codes(px) > 0
        codes = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        out.extend(codes.view(np.int64).tolist())
    return out
