"""Near-duplicate search scaling: clipaudit's multi-index hashing vs imagededup's search.

N random 64-bit hashes with N/100 planted pairs at Hamming distance exactly 8 (on disjoint
samples, so no planting overwrites another), searched at radius 8. Prints seconds and recall
per N and the fitted growth exponent; runs imagededup's own hash search (its Linux default,
brute force in Cython) on the same hashes for N it finishes within a time budget. Writes
bench/results/dedup_scaling.json.

    python bench/dedup_scaling.py [--sizes 10000 100000 1000000] [--imagededup-budget 300]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np

from clipaudit.curate.decide.neardup import choose_bands, near_pairs

RADIUS = 8


def make(n: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    picks = rng.choice(n, 2 * (n // 100), replace=False)
    planted = set()
    for a, b in zip(picks[::2], picks[1::2], strict=True):
        mask = 0
        for f in rng.choice(64, RADIUS, replace=False):
            mask |= 1 << int(f)
        h[b] = h[a] ^ np.uint64(mask)
        planted.add((min(int(a), int(b)), max(int(a), int(b))))
    return h, planted


def run_ours(n: int) -> dict[str, float]:
    h, planted = make(n)
    t0 = time.perf_counter()
    i, j, _ = near_pairs(h, RADIUS)
    dt = time.perf_counter() - t0
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    return {
        "n": n,
        "seconds": round(dt, 3),
        "recall": len(planted & found) / len(planted),
        "pairs_found": len(found),
        "bands": choose_bands(n, RADIUS),
    }


def _imagededup_worker(n: int, q: mp.Queue) -> None:
    from real_photos import imagededup_phash  # its package init needs the network otherwise

    PHash = imagededup_phash()
    h, planted = make(n)
    enc = {str(k): f"{int(v):016x}" for k, v in enumerate(h)}
    t0 = time.perf_counter()
    dups = PHash(verbose=False).find_duplicates(
        encoding_map=enc, max_distance_threshold=RADIUS, scores=False
    )
    dt = time.perf_counter() - t0
    found = {(min(int(a), int(b)), max(int(a), int(b))) for a, bs in dups.items() for b in bs}
    q.put({"n": n, "seconds": round(dt, 3), "recall": len(planted & found) / len(planted)})


def run_imagededup(n: int, budget: float) -> dict[str, object]:
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=_imagededup_worker, args=(n, q))
    p.start()
    p.join(budget)
    if p.is_alive():
        p.kill()
        p.join()
        return {"n": n, "seconds": None, "note": f"did not finish within {budget:.0f} s"}
    return q.get() if not q.empty() else {"n": n, "seconds": None, "note": "failed"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--imagededup-budget", type=float, default=300)
    args = ap.parse_args()
    ours = [run_ours(n) for n in args.sizes]
    for r in ours:
        print(f"clipaudit   N={r['n']:>9,}  {r['seconds']:8.2f} s  recall {r['recall']:.3f}")
    ns = np.log([r["n"] for r in ours])
    ts = np.log([max(r["seconds"], 1e-3) for r in ours])
    exponent = float(np.polyfit(ns, ts, 1)[0]) if len(ours) > 1 else None
    print(f"fitted growth exponent: {exponent:.2f}" if exponent is not None else "")
    theirs: list[dict[str, object]] = []
    try:
        import imagededup  # noqa: F401

        for n in args.sizes:
            got = run_imagededup(n, args.imagededup_budget)
            theirs.append(got)
            print(f"imagededup  N={n:>9,}  {got.get('seconds')} s  {got.get('note', '')}")
            if got.get("seconds") is None:
                break
    except ImportError:
        theirs.append({"note": "imagededup is not installed (pip install imagededup)"})
    ratios = {
        str(t["n"]): round(float(t["seconds"]) / o["seconds"], 1)  # type: ignore[arg-type]
        for t, o in zip(theirs, ours, strict=False)
        if isinstance(t.get("seconds"), float) and o["seconds"]
    }
    result = {
        "radius": RADIUS,
        "clipaudit": ours,
        "growth_exponent": exponent,
        "imagededup": theirs,
        "imagededup_over_clipaudit_seconds": ratios,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
    }
    out = Path(__file__).parent / "results" / "dedup_scaling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
