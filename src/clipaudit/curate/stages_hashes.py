"""Perceptual hashes (pHash, dHash; 64 bits each) and an exact hash of the decoded pixels.

Hashes are stored as signed int64 (the bit pattern of the uint64) so parquet keeps them
exactly; :func:`as_uint64` turns a column back.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.curate.stage import Batch, Stage, register_stage
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample

THUMB = 32


def thumb_vectors(values: list[bytes | None]) -> np.ndarray:
    """Thumbnails as rows centred per colour channel and scaled to unit length."""
    out = np.zeros((len(values), THUMB * THUMB * 3), np.float32)
    for i, v in enumerate(values):
        if v is None or len(v) != THUMB * THUMB * 3:
            continue
        a = np.frombuffer(v, np.uint8).reshape(THUMB * THUMB, 3).astype(np.float32)
        a = (a - a.mean(0)).ravel()
        out[i] = a / (np.linalg.norm(a) + 1e-6)
    return out


def bits_to_int64(bits: np.ndarray) -> int:
    value = 0
    for b in bits.flatten():
        value = (value << 1) | int(bool(b))
    return value - (1 << 64) if value >= 1 << 63 else value


def as_uint64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).view(np.uint64)


@register_stage("hashes")
class HashStage(Stage):
    columns = ("phash", "dhash", "pixel_hash", "thumb")

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        import imagehash

        im = decoded.image
        if im is None:
            return (None, None, None, None)
        digest = hashlib.sha256(im.tobytes())
        digest.update(f"{im.size}".encode())
        # A 32x32 colour thumbnail verifies hash candidates at decide time: perceptual
        # hashes of plain, similar scenes collide; their colour layouts do not.
        thumb = im.resize((THUMB, THUMB), Image.Resampling.BOX)
        return (
            bits_to_int64(imagehash.phash(im).hash),
            bits_to_int64(imagehash.dhash(im).hash),
            int.from_bytes(digest.digest()[:8], "little", signed=True),
            thumb.tobytes(),
        )

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(self.columns)}

    def provenance(self) -> dict[str, Any]:
        import imagehash

        return {
            "imagehash": getattr(imagehash, "__version__", "?"),
            "hash_size": 8,
            "phash": "imagehash.phash on the decoded RGB image",
            "dhash": "imagehash.dhash on the decoded RGB image",
        }
