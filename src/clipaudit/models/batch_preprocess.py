"""Preprocess a batch of images into one tensor, equal bit for bit to stacking the model's
own per-image preprocess.

open_clip's preprocess is a torchvision ``Compose``: PIL steps (resize, centre crop, RGB)
then ``ToTensor`` and ``Normalize``. The PIL steps stay per image; the tensor steps, which
cost as much again in per-image Python and small-tensor overhead, run once on the stacked
batch. They are elementwise (a cast, a division by 255, a subtraction and a division per
channel), so each pixel goes through the same float32 operations and lands on the same
bits. A preprocess of any other shape is simply called per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

PilStep = Callable[[Image.Image], Image.Image]


def _split(preprocess: Any) -> tuple[list[PilStep], torch.Tensor, torch.Tensor] | None:
    """(PIL steps, mean, std) when ``preprocess`` is PIL steps + ToTensor + Normalize."""
    steps: list[PilStep] = []
    inner = preprocess
    # A wrapper that first cuts the image (loader.BoundedAspect) exposes the cut as ``cut``.
    cut = getattr(preprocess, "cut", None)
    if callable(cut) and hasattr(preprocess, "inner"):
        steps.append(cut)
        inner = preprocess.inner
    if not isinstance(inner, T.Compose):
        return None
    tail = [i for i, t in enumerate(inner.transforms) if isinstance(t, T.ToTensor)]
    if len(tail) != 1 or tail[0] != len(inner.transforms) - 2:
        return None
    norm = inner.transforms[-1]
    if type(norm) is not T.Normalize or norm.inplace:
        return None
    steps.extend(inner.transforms[: tail[0]])
    dtype = torch.get_default_dtype()
    mean = torch.as_tensor(norm.mean, dtype=dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(norm.std, dtype=dtype).view(1, -1, 1, 1)
    return steps, mean, std


class BatchPreprocess:
    """``preprocess`` for many images at once: a (N, C, H, W) tensor."""

    def __init__(self, preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.preprocess = preprocess
        self._split = _split(preprocess)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self._split is None or not images:
            return torch.stack([self.preprocess(im) for im in images])
        steps, mean, std = self._split
        out: list[Image.Image] = []
        for im in images:
            for step in steps:
                im = step(im)
            out.append(im)
        size = out[0].size
        if any(im.mode != "RGB" or im.size != size for im in out):
            # Not one RGB shape (a preprocess without a crop): no single array to stack.
            return torch.stack([self.preprocess(im) for im in images])
        pixels = torch.from_numpy(np.stack([np.asarray(im) for im in out]))
        x = pixels.permute(0, 3, 1, 2).contiguous().to(dtype=mean.dtype).div(255)
        return x.sub_(mean).div_(std)
