"""Images to embed: a re-readable, ordered source, and embedding it once per model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from clipaudit.models.loader import LoadedClip

# Yields (image, None), (a video's sampled frames, None) or (None, reason code) for each id,
# in order.
Picture = Image.Image | list[Image.Image]
ImageStream = Callable[[], Iterator[tuple[Picture | None, str | None]]]


@dataclass
class ImageSet:
    """Ordered ids and a way to read their pictures again (one pass per model)."""

    ids: list[str]
    read: ImageStream
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Embedded:
    """Unit image embeddings; rows of undecodable images are zero and ``ok`` is false."""

    emb: np.ndarray
    ok: np.ndarray
    errors: dict[str, str]


def embed_images(clip: LoadedClip, images: ImageSet, batch_size: int = 64) -> Embedded:
    """Decode, preprocess and encode every image once, in ``batch_size`` batches; a video is
    the renormalised mean of its frames' embeddings (as ``clipaudit embed`` writes it)."""
    n, dim = len(images.ids), clip.provenance.embed_dim
    emb = np.zeros((n, dim), np.float32)
    ok = np.zeros(n, bool)
    errors: dict[str, str] = dict(images.errors)
    pixels: list[torch.Tensor] = []
    rows: list[int] = []

    def flush() -> None:
        if rows:
            emb[rows] = clip.encode_pixels(torch.stack(pixels))
            ok[rows] = True
            pixels.clear()
            rows.clear()

    count = 0
    for i, (im, err) in enumerate(images.read()):
        count += 1
        if i >= n:
            break
        if im is None or (isinstance(im, list) and not im):
            errors[images.ids[i]] = err or "missing_image"
            continue
        if isinstance(im, list):
            e = clip.encode_pixels(torch.stack([clip.preprocess(f) for f in im])).mean(axis=0)
            emb[i] = e / max(float(np.linalg.norm(e)), 1e-12)
            ok[i] = True
            continue
        pixels.append(clip.preprocess(im))
        rows.append(i)
        if len(rows) == batch_size:
            flush()
    flush()
    if count < n:
        raise RuntimeError(f"the image stream ended after {count} of {n} images")
    return Embedded(emb, ok, errors)
