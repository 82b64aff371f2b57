"""``clipaudit world``: write a split or the noisy pool as a dataset, with its ground truth.

Layout of the output folder::

    data/          the dataset, in any format clipaudit reads
    labels.jsonl   one line per sample: id, truth, planted issues, duplicate_of
    planted.json   issue → sorted sample ids (the pool's answer key)
    world.json     how it was made (split, n, seed, size, rates, version)
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clipaudit.data.formats import atomic_write_bytes, write_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.world.pool import PoolConfig, PoolItem, generate_pool
from clipaudit.world.scenes import encode
from clipaudit.world.splits import SPLITS, scenes

WORLD_MARKER = "clipaudit-world"


def _split_items(split: str, n: int, seed: int, size: int) -> Iterator[PoolItem]:
    for i, scene in enumerate(scenes(split, n, seed=seed)):
        rng = random.Random(f"{seed}:{split}:{i}:encode")
        data, ext = encode(scene.render(size), rng)
        sample = Sample(f"{split}-{i:06d}", data, scene.caption, None, {"world": WORLD_MARKER}, ext)
        issues = ["watermarked"] if scene.watermark is not None else []
        yield PoolItem(sample, scene.truth(), issues)


def write_world(
    out: str | Path,
    split: str = "pool",
    n: int = 1000,
    seed: int = 0,
    size: int = 256,
    format: str = "webdataset",
    shard_size: int = 1000,
    rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write ``n`` samples of ``split`` (or the noisy pool) under ``out``; return world.json."""
    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise ClipauditError(
            f"The output {str(out_path)!r} is a file or a folder that is not empty; choose a "
            "new folder."
        )
    if n < 1:
        raise ClipauditError(f"--n must be at least 1, got {n}.")
    if split == "pool":
        cfg = PoolConfig(n=n, seed=seed, size=size, **(rates or {}))
        items: list[PoolItem] | Iterator[PoolItem] = generate_pool(cfg)
        for item in items:
            item.sample.meta["world"] = WORLD_MARKER
        settings: dict[str, Any] = asdict(cfg)
    elif split in SPLITS:
        if rates:
            raise ClipauditError(
                "Planted-issue rates apply to the pool only; drop them or use --split pool."
            )
        items = list(_split_items(split, n, seed, size))
        settings = {"n": n, "seed": seed, "size": size}
    else:
        raise ClipauditError(
            f"Unknown world split {split!r}; use pool or one of: {', '.join(sorted(SPLITS))}."
        )
    items = list(items)
    write_dataset((it.sample for it in items), out_path / "data", format, shard_size=shard_size)
    planted: dict[str, list[str]] = {}
    lines = []
    for it in items:
        for issue in it.issues:
            planted.setdefault(issue, []).append(it.sample.id)
        lines.append(
            json.dumps(
                {
                    "id": it.sample.id,
                    "issues": it.issues,
                    "duplicate_of": it.duplicate_of,
                    "transform": it.transform,
                    "truth": it.truth,
                },
                sort_keys=True,
            )
        )
    atomic_write_bytes(out_path / "labels.jsonl", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(
        out_path / "planted.json",
        json.dumps({k: sorted(v) for k, v in sorted(planted.items())}, indent=1).encode(),
    )
    from clipaudit import __version__

    record = {
        "split": split,
        "format": format,
        "settings": settings,
        "samples": len(items),
        "planted_counts": {k: len(v) for k, v in sorted(planted.items())},
        "clipaudit": __version__,
    }
    atomic_write_bytes(out_path / "world.json", json.dumps(record, indent=2).encode())
    return record
