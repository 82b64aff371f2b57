"""The pool in memory: every trainable sample decoded once, at the model's input size.

All arms train from this one tensor (an arm is a list of row indices into it), so no arm
pays for decoding and every arm sees exactly the same pixels for the same sample.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipaudit.data.decode import decode_image
from clipaudit.data.formats import open_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError

# Planted issues whose share in each arm's kept data the report shows (the world's truth).
TRACKED_ISSUES = ("misaligned", "exact_duplicate", "near_duplicate", "watermarked")


@dataclass
class PoolData:
    ids: list[str]  # trainable samples, in the dataset's order
    captions: list[str]
    images: torch.Tensor  # uint8, N × 3 × S × S
    n_input: int  # samples in the dataset, trainable or not
    skipped: dict[str, int]  # why a sample could not be trained on → count
    issues: dict[str, set[str]] | None  # planted issue → ids, for a world pool

    def rows(self, ids: set[str]) -> np.ndarray:
        """Row indices of the trainable samples among ``ids``, in pool order."""
        return np.array([i for i, s in enumerate(self.ids) if s in ids], np.int64)


def locate(pool: str | Path) -> tuple[Path, Path | None]:
    """The dataset path and, for a ``clipaudit world`` folder, its labels.jsonl.

    ``pool`` may be the world folder itself or its ``data/`` subfolder.
    """
    p = Path(pool)
    if not p.exists():
        raise ClipauditError(f"The pool {str(pool)!r} does not exist; pass a dataset path.")
    if (p / "world.json").is_file() and (p / "data").exists():
        labels = p / "labels.jsonl"
        return p / "data", labels if labels.is_file() else None
    labels = p.parent / "labels.jsonl"
    if (p.parent / "world.json").is_file() and labels.is_file():
        return p, labels
    return p, None


def read_planted(labels: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in labels.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            for issue in row.get("issues", []):
                out.setdefault(str(issue), set()).add(str(row["id"]))
    return out


def to_input(im: Image.Image, size: int) -> np.ndarray:
    """Shortest side to ``size`` (bicubic) then a centre crop: open_clip's eval preprocess,
    so training sees what the benchmarks will feed the model."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return np.array(im.convert("RGB"), np.uint8)


def _prepare(sample: Sample, size: int) -> tuple[np.ndarray | None, str | None]:
    if sample.error is not None:
        return None, sample.error
    if not (sample.caption or "").strip():
        return None, "no_caption"
    decoded = decode_image(sample.image)
    if decoded.image is None:
        return None, decoded.error or "decode_error"
    return to_input(decoded.image, size), None


def load_pool(
    pool: str | Path,
    image_size: int,
    fmt: str | None = None,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> PoolData:
    data_path, labels = locate(pool)
    ds = open_dataset(str(data_path), format=fmt)
    ids: list[str] = []
    captions: list[str] = []
    arrays: list[np.ndarray] = []
    skipped: dict[str, int] = {}
    seen: set[str] = set()
    n_input = 0
    with ThreadPoolExecutor(max(1, workers)) as ex:
        for shard in ds.shards():
            samples = list(ds.read_shard(shard))
            for sample, (arr, err) in zip(
                samples, ex.map(lambda s: _prepare(s, image_size), samples), strict=True
            ):
                n_input += 1
                if sample.id in seen:
                    raise ClipauditError(
                        f"The pool repeats the sample id {sample.id!r}; ids must be unique."
                    )
                seen.add(sample.id)
                if arr is None:
                    skipped[err or "unknown"] = skipped.get(err or "unknown", 0) + 1
                    continue
                ids.append(sample.id)
                captions.append(str(sample.caption))
                arrays.append(arr)
    if len(ids) < 2:
        raise ClipauditError(
            f"The pool {str(pool)!r} has {len(ids)} trainable samples (image and caption); "
            "an ablation needs at least 2."
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    log(f"pool: {len(ids)} of {n_input} samples decoded at {image_size} px")
    return PoolData(
        ids, captions, images, n_input, skipped, read_planted(labels) if labels else None
    )
