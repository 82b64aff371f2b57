"""Calibrate the bundled model's alignment threshold and near-duplicate radius on a world pool.

Uses a pool seed the demo never uses (seed 7), so the demo's scores are out-of-sample.
Prints the F1-best cosine cut for misaligned captions, and for radii 2..12 the near-duplicate
pair precision and recall per transform. Writes bench/results/calibration.json.

    python bench/calibrate_alignment.py [--n 2000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.demo.truth import score_run
from clipaudit.rules.schema import Dedup
from clipaudit.world import write_world

NOALIGN = "name: calib\nextends: default\nalignment:\n  min: null\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clipaudit-calib-"))
    try:
        write_world(tmp / "w", n=args.n, seed=args.seed, format="webdataset", shard_size=500)
        (tmp / "p.yaml").write_text(NOALIGN)
        curate(
            CurateConfig(
                dataset=str(tmp / "w" / "data"),
                out=str(tmp / "run"),
                rules=str(tmp / "p.yaml"),
                stages=["quality", "hashes", "alignment"],  # what calibration reads
                gates=False,
            )
        )
        labels = {x["id"]: x for x in map(json.loads, (tmp / "w" / "labels.jsonl").open())}
        dec = pq.read_table(tmp / "run" / "decisions.parquet").to_pylist()
        rows = [
            (d["alignment"], "misaligned" in labels[d["id"]]["issues"])
            for d in dec
            if d["alignment"] is not None
        ]
        a = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        best = (0.0, 0.0)
        curve = []
        for cut in np.round(np.arange(a.min(), a.max(), 0.005), 3):
            pred = a < cut
            tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
            f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            curve.append((float(cut), round(f1, 4)))
            if f1 > best[1]:
                best = (float(cut), f1)
        radii = {}
        for r in range(2, 13, 2):
            t = score_run(
                tmp / "run",
                tmp / "w" / "labels.jsonl",
                dedup=Dedup(near_radius=r, hashes=["phash"]),
            )
            radii[r] = {
                "pair_precision": t["near_duplicate_pair_precision"],
                "by_transform": {
                    k: v["recall"] for k, v in t["near_duplicate_by_transform"].items()
                },
            }
        result = {
            "seed": args.seed,
            "n": args.n,
            "best_cut": best[0],
            "best_f1": best[1],
            "aligned_mean": float(a[~y].mean()),
            "misaligned_mean": float(a[y].mean()),
            "f1_curve": curve,
            "near_duplicate_by_radius": radii,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(__file__).parent / "results" / "calibration.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        f"best cut {best[0]} (F1 {best[1]:.3f}); radii: "
        + "; ".join(f"r={r}: precision {v['pair_precision']}" for r, v in radii.items())
    )


if __name__ == "__main__":
    main()
