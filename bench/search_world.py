"""Search and routes on the world, against its truths, with the bundled model.

* **Text search**: every colour-shape pair of the object split ("a red circle", 48 queries)
  over ``eval-objects`` scenes (one object an image); a hit is relevant when its object has
  that colour and shape. precision@10 per query, averaged (target >= 0.9).
* **Image search** (``--like``): on the noisy pool, for every original with planted exact or
  near copies, are its copies the first results? (share of copies within the first ranks,
  and the mean rank of a copy), as the command runs it (decide's duplicate group first) and
  by cosine alone. The routes are also scored on this pool, where only 10% of the scenes
  carry a watermark (``routes_on_pool``).
* **Routes** (pack ``world-routes``) on ``eval-watermark`` scenes (half watermarked) of seeds
  the thresholds were not chosen on: precision and recall of the watermark route (truth: a
  watermark) and the people route (truth: a person scene; first-match order sends
  watermarked people to the watermark route, so people recall counts unwatermarked people).

Writes bench/results/search_world.json.

    python bench/search_world.py [--objects 1152] [--pool 1000] [--routes 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _curate(data: Path, out: Path, rules: str = "default") -> None:
    from clipaudit.curate.pipeline import CurateConfig, curate

    curate(
        CurateConfig(
            dataset=str(data),
            out=str(out),
            rules=rules,
            stages=["quality", "hashes", "alignment"],
            gates=False,
        )
    )


def text_search(tmp: Path, n: int) -> dict[str, Any]:
    from clipaudit.search.index import build_index
    from clipaudit.search.query import embed_text, open_searchable, search
    from clipaudit.world import write_world
    from clipaudit.world.vocab import COLORS, SHAPES

    write_world(tmp / "objects", split="eval-objects", n=n, seed=3, format="webdataset")
    labels = {
        x["id"]: x["truth"]["objects"][0]
        for x in map(json.loads, (tmp / "objects" / "labels.jsonl").open())
    }
    _curate(tmp / "objects" / "data", tmp / "objects-run", "keep-all")
    build_index(tmp / "objects-run")
    s = open_searchable(tmp / "objects-run")
    per: dict[str, float] = {}
    for color in sorted(COLORS):
        for shape in SHAPES:
            q = f"a {color} {shape}"
            hits = search(s, embed_text(s, q), k=10)
            good = [labels[h.id]["color"] == color and labels[h.id]["shape"] == shape for h in hits]
            per[q] = float(np.mean(good))
    vals = np.array(list(per.values()))
    return {
        "scenes": n,
        "queries": len(per),
        "precision_at_10_mean": round(float(vals.mean()), 4),
        "precision_at_10_min": round(float(vals.min()), 2),
        "queries_below_0.9": sorted(q for q, v in per.items() if v < 0.9),
    }


def like_search(tmp: Path, n: int) -> dict[str, Any]:
    from clipaudit.search.query import open_searchable, position_of, search
    from clipaudit.world import write_world

    write_world(tmp / "pool", split="pool", n=n, seed=4, format="webdataset")
    labels = [json.loads(x) for x in (tmp / "pool" / "labels.jsonl").open()]
    copies: dict[str, list[tuple[str, str]]] = {}
    for x in labels:
        if x.get("duplicate_of"):
            orig = str(x["duplicate_of"])
            kind = "exact" if x.get("transform") is None else "near"
            copies.setdefault(orig, []).append((x["id"], kind))
    _curate(tmp / "pool" / "data", tmp / "pool-run", "world-routes")
    s = open_searchable(tmp / "pool-run")
    out: dict[str, Any] = {
        "pool": n,
        "originals_with_copies": len(copies),
        "copies": {
            k: sum(kind == k for cs in copies.values() for _, kind in cs) for k in ("exact", "near")
        },
    }
    # --like as the command runs it (decide's duplicate group first), and by cosine alone.
    for label, group_first in (("like", True), ("cosine_only", False)):
        first: dict[str, list[bool]] = {"exact": [], "near": []}
        ranks: list[int] = []
        for orig, cs in copies.items():
            at = position_of(s, orig)
            query = s.vector_of(np.array([at]))[0]
            hits = search(s, query, k=len(cs) + 5, exclude=at, copies_first=group_first)
            got = [h.id for h in hits]
            top = set(got[: len(cs)])
            for cid, kind in cs:
                first[kind].append(cid in top)
                ranks.append(got.index(cid) + 1 if cid in got else len(cs) + 6)
        out[label] = {
            "copy_in_first_ranks": {k: round(float(np.mean(v)), 4) for k, v in first.items() if v},
            "mean_copy_rank": round(float(np.mean(ranks)), 3),
        }
    out["routes_on_pool"] = _route_scores(tmp / "pool-run", tmp / "pool" / "labels.jsonl")
    return out


def _route_scores(run: Path, labels: Path) -> dict[str, Any]:
    """Watermark and people routes against the truths of one decided run."""
    import pyarrow.parquet as pq

    truth = {x["id"]: x["truth"] for x in map(json.loads, labels.open())}
    rows = pq.read_table(run / "decisions.parquet", columns=["id", "route"])
    tallies = {r: {"tp": 0, "fp": 0, "fn": 0} for r in ("watermark", "people")}
    for sid, route in zip(
        rows.column("id").to_pylist(), rows.column("route").to_pylist(), strict=True
    ):
        t = truth[sid]
        want = {
            "watermark": bool(t.get("watermark")),
            "people": t["kind"] == "person" and not t.get("watermark"),
        }
        for r, w in want.items():
            got = route == r
            tallies[r]["tp"] += int(got and w)
            tallies[r]["fp"] += int(got and not w)
            tallies[r]["fn"] += int(w and not got)
    return {
        r: {
            **t,
            "precision": round(t["tp"] / max(t["tp"] + t["fp"], 1), 4),
            "recall": round(t["tp"] / max(t["tp"] + t["fn"], 1), 4),
        }
        for r, t in tallies.items()
    }


def routes(tmp: Path, n: int) -> dict[str, Any]:
    from clipaudit.curate.decide import decide_run
    from clipaudit.world import write_world

    out: dict[str, Any] = {"scenes": n, "pack": "world-routes", "seeds": [2, 5]}
    merged: dict[str, dict[str, int]] = {
        r: {"tp": 0, "fp": 0, "fn": 0} for r in ("watermark", "people")
    }
    for seed in out["seeds"]:
        folder = tmp / f"wm{seed}"
        write_world(folder, split="eval-watermark", n=n, seed=seed, format="webdataset")
        _curate(folder / "data", tmp / f"wm{seed}-run")
        t0 = time.perf_counter()
        decide_run(tmp / f"wm{seed}-run", "world-routes", write_kept=False, gates=False)
        out[f"decide_s_seed{seed}"] = round(time.perf_counter() - t0, 2)
        for r, t in _route_scores(tmp / f"wm{seed}-run", folder / "labels.jsonl").items():
            for key in ("tp", "fp", "fn"):
                merged[r][key] += t[key]
    for r, t in merged.items():
        out[r] = {
            **t,
            "precision": round(t["tp"] / max(t["tp"] + t["fp"], 1), 4),
            "recall": round(t["tp"] / max(t["tp"] + t["fn"], 1), 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1152)
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clipaudit-search-"))
    try:
        t0 = time.perf_counter()
        result = {
            "model": "bundled:world-clip",
            "text_search": text_search(tmp, args.objects),
            "like_search": like_search(tmp, args.pool),
            "routes": routes(tmp, args.routes),
            "wall_s": 0.0,
            "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
            "command": "python bench/search_world.py "
            f"--objects {args.objects} --pool {args.pool} --routes {args.routes}",
        }
        result["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(__file__).parent / "results" / "search_world.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
