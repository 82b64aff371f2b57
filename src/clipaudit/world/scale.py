"""Scale pools for decide: crawl-sized inputs whose duplicate truths are planted.

Two generators, both seeded and written a shard at a time (memory does not grow with n):

- :func:`write_scale_pool`: a parquet dataset of small real-looking JPEGs (smooth random
  colour fields, 48 px) with exact copies (the same bytes) and near copies (resized and
  re-encoded) planted, for ``clipaudit curate --stages quality,hashes`` end to end;
- :func:`write_signal_run`: a scored run folder written directly (signal shards, markers,
  ``run.json``) with no images, for deciding 10^7 samples without scoring them. Hashes are
  uniform random 64-bit codes, near copies flip a few bits, thumbnails are random bytes and a
  near copy's is its original's plus small noise.

Each writes ``planted.parquet`` beside its output: copy id, original id, kind.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipaudit.curate.stages.hashes import THUMB

THUMB_BYTES = THUMB * THUMB * 3


def _plant(
    n: int, exact: float, near: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the row it copies (-1: an original) and how: 0 exact, 1 near."""
    source = np.full(n, -1, np.int64)
    kind = np.full(n, -1, np.int8)
    n_exact, n_near = int(n * exact), int(n * near)
    copies = rng.choice(n, size=n_exact + n_near, replace=False)
    originals = np.setdiff1d(np.arange(n), copies)
    source[copies] = rng.choice(originals, size=len(copies))
    kind[copies[:n_exact]] = 0
    kind[copies[n_exact:]] = 1
    return source, kind


def _ids(rows: np.ndarray) -> list[str]:
    return [f"s{r:09d}" for r in rows.tolist()]


def _write_planted(out: Path, source: np.ndarray, kind: np.ndarray) -> int:
    rows = np.flatnonzero(source >= 0)
    table = pa.table(
        {
            "id": _ids(rows),
            "original": _ids(source[rows]),
            "kind": pa.array(np.where(kind[rows] == 0, "exact", "near")),
        }
    )
    pq.write_table(table, out / "planted.parquet")
    return len(rows)


# ---- signals without images ------------------------------------------------------------


def _flip(codes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    out = codes.copy()
    for _ in range(bits):
        out ^= np.uint64(1) << rng.integers(0, 64, len(codes)).astype(np.uint64)
    return out


def write_signal_run(
    out: str | Path,
    n: int,
    *,
    thumbs: str = "all",
    shard_size: int = 10_000,
    seed: int = 0,
    exact: float = 0.01,
    near: float = 0.02,
) -> dict[str, Any]:
    """A scored run of ``n`` simulated samples under ``out/run``; ``thumbs='planted'`` stores
    thumbnails only for planted copies and their originals (10^7 thumbnails are 30 GB)."""
    out = Path(out)
    run = out / "run"
    for sub in ("signals", "markers"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    source, kind = _plant(n, exact, near, rng)
    phash = rng.integers(0, 2**64, n, dtype=np.uint64)
    dhash = rng.integers(0, 2**64, n, dtype=np.uint64)
    mirror = rng.integers(0, 2**64, n, dtype=np.uint64)
    pixel = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    copies = np.flatnonzero(source >= 0)
    src = source[copies]
    phash[copies], dhash[copies], mirror[copies] = phash[src], dhash[src], mirror[src]
    pixel[copies[kind[copies] == 0]] = pixel[src[kind[copies] == 0]]
    nc = copies[kind[copies] == 1]
    pixel[nc] = rng.integers(-(2**63), 2**63 - 1, len(nc), dtype=np.int64)
    phash[nc] = _flip(phash[nc], 3, rng)
    dhash[nc] = _flip(dhash[nc], 3, rng)
    involved = np.zeros(n, np.bool_)
    involved[copies] = involved[src] = True
    side = np.where(rng.random(n) < 0.5, 48, 64)
    align = rng.normal(0.6, 0.05, n)
    n_shards = (n + shard_size - 1) // shard_size
    thumb_seed = int(rng.integers(0, 2**31))
    for k in range(n_shards):
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        rows = np.arange(lo, hi)
        th: list[bytes | None] = []
        for r in rows.tolist():
            if thumbs != "all" and not involved[r]:
                th.append(None)
                continue
            base = int(source[r]) if source[r] >= 0 else r
            px = np.random.default_rng([thumb_seed, base]).integers(0, 256, THUMB_BYTES, np.uint8)
            if source[r] >= 0 and kind[r] == 1:
                noise = np.random.default_rng([thumb_seed, r, 1]).integers(-6, 7, THUMB_BYTES)
                px = np.clip(px.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            th.append(px.tobytes())
        table = pa.table(
            {
                "id": _ids(rows),
                "row": pa.array(rows - lo, pa.int64()),
                "error": pa.nulls(len(rows), pa.string()),
                "width": side[lo:hi],
                "height": side[lo:hi],
                "min_side": side[lo:hi],
                "aspect": np.ones(len(rows)),
                "file_bytes": np.full(len(rows), 1500),
                "caption_words": np.full(len(rows), 6),
                "caption_chars": np.full(len(rows), 32),
                "phash": phash[lo:hi].view(np.int64),
                "dhash": dhash[lo:hi].view(np.int64),
                "pixel_hash": pixel[lo:hi],
                "thumb": pa.array(th, pa.binary()),
                "pixel_std": np.full(len(rows), 40.0),
                "phash_mirror": mirror[lo:hi].view(np.int64),
                "alignment": align[lo:hi],
            }
        )
        pq.write_table(table, run / "signals" / f"shard-{k:05d}.parquet", compression="zstd")
        (run / "markers" / f"shard-{k:05d}.done").write_bytes(b"")
    record = {
        "clipaudit": "simulated",
        "dataset": {
            "source": None,
            "format": None,
            "shards": [f"sim-{k}" for k in range(n_shards)],
        },
        "settings": {"stages": ["quality", "hashes"], "model": None},
        "fingerprint": f"simulated-{n}-{seed}",
    }
    (run / "run.json").write_text(json.dumps(record, indent=2))
    planted = _write_planted(out, source, kind)
    return {"run": str(run), "samples": n, "shards": n_shards, "planted": planted}


# ---- a pool of real JPEGs ----------------------------------------------------------------


def _smooth_image(rng: np.random.Generator, side: int) -> Image.Image:
    grid = rng.integers(0, 256, (5, 5, 3), np.uint8)
    return Image.fromarray(grid).resize((side, side), Image.Resampling.BICUBIC)


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_scale_pool(
    out: str | Path,
    n: int,
    *,
    side: int = 48,
    shard_size: int = 10_000,
    seed: int = 0,
    exact: float = 0.01,
    near: float = 0.02,
) -> dict[str, Any]:
    """A parquet pool under ``out/data`` of ``n`` small JPEGs with planted copies."""
    out = Path(out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    source, kind = _plant(n, exact, near, rng)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.binary()),
            ("image_ext", pa.string()),
            ("caption", pa.string()),
        ]
    )
    img_seed = int(rng.integers(0, 2**31))
    for k in range(0, (n + shard_size - 1) // shard_size):
        rows = range(k * shard_size, min(n, (k + 1) * shard_size))
        images, captions = [], []
        for r in rows:
            base = int(source[r]) if source[r] >= 0 else r
            im = _smooth_image(np.random.default_rng([img_seed, base]), side)
            if source[r] >= 0 and kind[r] == 1:  # a near copy: resized and re-encoded
                im = im.resize((side - 8, side - 8), Image.Resampling.BILINEAR)
                images.append(_jpeg(im, 70))
            else:
                images.append(_jpeg(im, 90))
            captions.append(f"a smooth colour field number {base}")
        table = pa.table(
            {
                "id": _ids(np.arange(rows.start, rows.stop)),
                "image": images,
                "image_ext": ["jpg"] * len(images),
                "caption": captions,
            },
            schema=schema,
        )
        pq.write_table(table, data / f"{k:05d}.parquet", row_group_size=256)
    planted = _write_planted(out, source, kind)
    return {"data": str(data), "samples": n, "planted": planted}
