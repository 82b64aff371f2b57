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

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        import imagehash

        out: dict[str, list[Any]] = {c: [] for c in self.columns}
        for d in batch.decoded:
            if d.image is None:
                for c in self.columns:
                    out[c].append(None)
                continue
            out["phash"].append(bits_to_int64(imagehash.phash(d.image).hash))
            out["dhash"].append(bits_to_int64(imagehash.dhash(d.image).hash))
            digest = hashlib.sha256(d.image.tobytes())
            digest.update(f"{d.image.size}".encode())
            out["pixel_hash"].append(int.from_bytes(digest.digest()[:8], "little", signed=True))
            # A 32x32 colour thumbnail verifies hash candidates at decide time: perceptual
            # hashes of plain, similar scenes collide; their colour layouts do not.
            thumb = d.image.resize((THUMB, THUMB), Image.Resampling.BOX)
            out["thumb"].append(thumb.tobytes())
        return out

    def provenance(self) -> dict[str, Any]:
        import imagehash

        return {
            "imagehash": getattr(imagehash, "__version__", "?"),
            "hash_size": 8,
            "phash": "imagehash.phash on the decoded RGB image",
            "dhash": "imagehash.dhash on the decoded RGB image",
        }
