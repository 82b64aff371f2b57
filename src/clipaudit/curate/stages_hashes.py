"""Perceptual hashes (pHash, dHash; 64 bits each) and an exact hash of the decoded pixels.

Hashes are stored as signed int64 (the bit pattern of the uint64) so parquet keeps them
exactly; :func:`as_uint64` turns a column back.

pHash and dHash are imagehash's (``imagehash.phash`` / ``imagehash.dhash``, hash size 8),
computed for a whole batch at once: each image still gets Pillow's own grayscale conversion
and LANCZOS resize, then one scipy DCT over the stacked 32×32 thumbnails and one numpy
comparison give the bits. The result is bit-for-bit imagehash's (tests/test_throughput_hashes.py),
at a fraction of the per-image Python and scipy call overhead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.curate.stage import Batch, Stage, register_stage
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample

THUMB = 32
HASH_SIZE = 8
# imagehash.phash: a DCT over a (HASH_SIZE * 4)² grayscale thumbnail.
PHASH_SIDE = HASH_SIZE * 4


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


def rows_to_int64(bits: np.ndarray) -> list[int]:
    """Each row of 64 booleans (first = most significant bit) as a signed int64."""
    packed = np.packbits(bits.reshape(len(bits), 64).astype(bool), axis=1, bitorder="big")
    return [int(v) for v in packed.view(">u8").ravel().astype(np.uint64).view(np.int64)]


def as_uint64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def perceptual_hashes(images: Sequence[Image.Image]) -> tuple[list[int], list[int]]:
    """(pHash, dHash) of each image as signed int64, equal to imagehash's bit for bit."""
    import scipy.fftpack

    if not images:
        return [], []
    lanczos = Image.Resampling.LANCZOS
    grays = [im.convert("L") for im in images]
    small = np.stack([np.asarray(g.resize((PHASH_SIDE, PHASH_SIDE), lanczos)) for g in grays])
    wide = np.stack([np.asarray(g.resize((HASH_SIZE + 1, HASH_SIZE), lanczos)) for g in grays])
    # The same 1-D transforms imagehash runs per image (rows, then columns), batched.
    dct = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=1), axis=2)
    low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(images), -1)
    phash = low > np.median(low, axis=1, keepdims=True)
    dhash = wide[:, :, 1:] > wide[:, :, :-1]
    return rows_to_int64(phash), rows_to_int64(dhash)


def pixel_hash(im: Image.Image) -> int:
    """First 8 bytes of the SHA-256 of the decoded pixels and the size, as a signed int64."""
    digest = hashlib.sha256(im.tobytes())
    digest.update(f"{im.size}".encode())
    return int.from_bytes(digest.digest()[:8], "little", signed=True)


@register_stage("hashes")
class HashStage(Stage):
    columns = ("phash", "dhash", "pixel_hash", "thumb")

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        return self.prepare_batch([sample], [decoded])[0]

    def prepare_batch(self, samples: list[Sample], decoded: list[Decoded]) -> list[Any]:
        images = [d.image for d in decoded if d.image is not None]
        phash, dhash = perceptual_hashes(images)
        out: list[Any] = []
        k = 0
        for d in decoded:
            im = d.image
            if im is None:
                out.append((None, None, None, None))
                continue
            # A 32x32 colour thumbnail verifies hash candidates at decide time: perceptual
            # hashes of plain, similar scenes collide; their colour layouts do not.
            thumb = im.resize((THUMB, THUMB), Image.Resampling.BOX)
            out.append((phash[k], dhash[k], pixel_hash(im), thumb.tobytes()))
            k += 1
        return out

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(self.columns)}

    def provenance(self) -> dict[str, Any]:
        import imagehash

        return {
            "imagehash": getattr(imagehash, "__version__", "?"),
            "hash_size": HASH_SIZE,
            "phash": "imagehash.phash on the decoded RGB image",
            "dhash": "imagehash.dhash on the decoded RGB image",
        }
