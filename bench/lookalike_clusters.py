"""Near-duplicate confirmation on a family of look-alike images (no copies among them).

Product shots on white, screenshots of one app, or noise on one gradient make every member
a candidate of every other: pHash, dHash and the copy hash all fall within the radius, and
each candidate costs a thumbnail check, a crop candidate a shifted search. The pair budgets
bound how many; this bench measures what each costs. It writes ``--n`` noisy 72-px gradients
(JPEG q80) as a parquet shard, curates them with ``--stages quality,hashes`` and decides with
the keep-all pack (the default pack drops them as too small first), timing the duplicate
reduce. In the same process it then times the two mechanisms that made the check cheaper,
each on and off, on the same pairs of the same thumbnails:

- the edge check (``ThumbCorrelation.edge_corr``) with every row's edges filtered once
  (the cache) against each pair's rows filtered per chunk (``EDGE_CACHE_MAX = 0``);
- the crop check (``crop_confirmed``) with the coarse edge gate against without it
  (``COARSE_EDGE_MARGIN = inf``: values alone send a pair to the fine check).

Writes bench/results/lookalike_clusters.json and prints it.

    python bench/lookalike_clusters.py [--n 2000] [--pairs 4000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

RESULTS = Path(__file__).parent / "results" / "lookalike_clusters.json"


def gradients(n: int, seed: int = 1) -> list[bytes]:
    """``n`` JPEGs of one 72-px gradient with independent noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 72, dtype=np.float32)[None, :, None]
    out = []
    for _ in range(n):
        px = np.clip(ramp + rng.integers(0, 56, (72, 72, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def decide_reduce(images: list[bytes], work: Path) -> dict[str, object]:
    """Curate and decide (keep-all) the images; the duplicate reduce's wall and stats."""
    data = work / "data"
    data.mkdir()
    ids = [f"g{i:06d}" for i in range(len(images))]
    caps = [f"a noisy gradient number {i}" for i in range(len(images))]
    pq.write_table(pa.table({"id": ids, "image": images, "caption": caps}), data / "0.parquet")
    run = work / "run"
    cli = [sys.executable, "-m", "clipaudit"]
    subprocess.run(
        [*cli, "curate", str(data), "--out", str(run), "--stages", "quality,hashes"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cli, "decide", str(run), "--rules", "keep-all"], check=True, capture_output=True
    )
    phases = json.loads((run / "phases.json").read_text())["phases"]
    search = json.loads((run / "stats.json").read_text())["duplicate_search"]
    return {
        "reduce_duplicates_s": phases["reduce_duplicates"]["wall_s"],
        "duplicate_search": search,
    }


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def mechanisms(images: list[bytes], pairs: int) -> dict[str, object]:
    """Per-pair cost of the edge and crop checks, each mechanism on and off."""
    from clipaudit.curate.stages import hashes
    from clipaudit.curate.stages.hashes import THUMB, ThumbCorrelation
    from clipaudit.rules.schema import load_pack

    thumbs = [
        Image.open(io.BytesIO(b)).convert("RGB").resize((THUMB, THUMB), Image.Resampling.BOX)
        for b in images
    ]
    rows = [t.tobytes() for t in thumbs]
    n = len(rows)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = a != b
    a, b = a[keep], b[keep]
    d = load_pack("default").dedup
    out: dict[str, object] = {"pairs": len(a)}

    cached, per_chunk = ThumbCorrelation(rows), ThumbCorrelation(rows)
    per_chunk.EDGE_CACHE_MAX = 0
    t_on, e_on = timed(lambda: cached.edge_corr(a, b))
    t_off, e_off = timed(lambda: per_chunk.edge_corr(a, b))
    out["edge_corr_ms_per_pair"] = {"cache": 1e3 * t_on / len(a), "per_chunk": 1e3 * t_off / len(a)}
    out["edge_corr_same"] = bool(np.array_equal(e_on, e_off))

    corr = ThumbCorrelation(rows)
    args = (a, b, d.min_crop_value_corr, d.min_crop_corr)
    t_gate, (ok_gate, fine_gate) = timed(lambda: corr.crop_confirmed(*args))
    margin = hashes.COARSE_EDGE_MARGIN
    hashes.COARSE_EDGE_MARGIN = float("inf")
    try:
        t_plain, (ok_plain, fine_plain) = timed(lambda: corr.crop_confirmed(*args))
    finally:
        hashes.COARSE_EDGE_MARGIN = margin
    out["crop_confirmed_ms_per_pair"] = {
        "coarse_edge_gate": 1e3 * t_gate / len(a),
        "values_only_gate": 1e3 * t_plain / len(a),
    }
    out["crop_fine_checks"] = {"coarse_edge_gate": fine_gate, "values_only_gate": fine_plain}
    out["crop_confirmed_same"] = bool(np.array_equal(ok_gate, ok_plain))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=4000)
    args = ap.parse_args()
    images = gradients(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        report: dict[str, object] = {"images": args.n, **decide_reduce(images, Path(tmp))}
    report["mechanisms"] = mechanisms(images, args.pairs)
    report["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
