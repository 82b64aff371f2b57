"""CLIP phrase scores: cosine of the L2-normalised image embedding with each phrase's.

Image embeddings come from the alignment stage when it ran earlier in the same batch
(``batch.arrays["img_emb"]``), else they are computed once per batch with the run's shared
model and cached on the batch for the other safety stages, without being written out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.curate.stages import Batch

_CACHE_KEY = "safety:img_emb"  # in batch.prepared: never written by the run writer


def image_embeddings(batch: Batch, clip: Any) -> tuple[np.ndarray, list[int]]:
    """(embeddings, rows that have an image); rows without one hold zeros."""
    rows = [i for i, d in enumerate(batch.decoded) if d.image is not None]
    if "img_emb" in batch.arrays:
        return batch.arrays["img_emb"], rows
    cached = batch.prepared.get(_CACHE_KEY)
    if cached:
        return cached[0], rows
    emb = np.zeros((len(batch.samples), clip.provenance.embed_dim), np.float32)
    if rows:
        emb[rows] = clip.encode_images([batch.decoded[i].image for i in rows])
    batch.prepared[_CACHE_KEY] = [emb]
    return emb, rows


def phrase_scores(emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(n images, n phrases) cosines, both sides already L2-normalised."""
    if text_emb.size == 0:
        return np.zeros((len(emb), 0), np.float32)
    return np.asarray(emb @ text_emb.T, np.float32)
