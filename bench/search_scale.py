"""Vector search at scale: ``--n`` random unit vectors (10^6 by default), the index kinds
``clipaudit index`` builds (search/index.py: exact flat inner product; ``pq``: 4-bit
fast-scan product quantisation re-ranked exactly), on this machine.

For each dimension (512, and 128: the bundled model's), in a fresh process each:

* build time (training included) and size of the pq index (what it holds in memory)
  as ``make_faiss("pq")`` makes it at this size (full-float re-ranking up to 2x10^6), and of
  the 8-bit re-ranking variant used above that;
* queries one at a time (as ``clipaudit search`` asks them): p50 and p99 latency, and
  recall@10 against the exact search, at several k_factor values (candidates re-ranked per
  wanted neighbour; the index's default is search/index.py's K_FACTOR);
* the exact search's latency beside it.

Two query sets: ``random`` unit vectors (the hardest case: in 512 dimensions the nearest of
10^6 random points is barely nearer than the rest) and ``near``: data vectors moved to
cosine ~0.8, the way a text or image query lands near its matches.

    python bench/search_scale.py [--n 1000000] [--queries 200] [--dims 512 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

K_FACTORS = (25, 50, 100, 200)


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _data(n: int, d: int, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(d)
    return np.concatenate([_unit(rng, min(chunk, n - s), d) for s in range(0, n, chunk)])


def _latencies(
    index: Any, queries: np.ndarray, k: int, params: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((len(queries), k), np.int64)
    times = np.zeros(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, lab = index.search(q[None], k, params=params)
        times[i] = time.perf_counter() - t
        labels[i] = lab[0]
    return labels, times


def _ms(times: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(times, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
    }


def one(n: int, d: int, n_queries: int) -> dict[str, Any]:
    """Everything for one dimension, in this process."""
    import faiss

    from clipaudit.search.index import K_FACTOR, make_faiss

    xb = _data(n, d)
    rng = np.random.default_rng(1000 + d)
    queries: dict[str, np.ndarray] = {"random": _unit(rng, n_queries, d)}
    base = xb[rng.choice(n, n_queries, replace=False)]
    noise = _unit(rng, n_queries, d)
    near = 0.8 * base + 0.6 * noise
    queries["near"] = near / np.linalg.norm(near, axis=1, keepdims=True)
    out: dict[str, Any] = {"n": n, "dim": d, "threads": faiss.omp_get_max_threads()}
    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    truth: dict[str, np.ndarray] = {}
    for name, q in queries.items():
        _, truth[name] = flat.search(q, 10)  # batched: the ground truth
    _, times = _latencies(flat, queries["random"][:50], 10)
    out["exact"] = _ms(times)
    del flat
    from clipaudit.search.index import REFINE_FLAT_MAX, TRAIN_MAX

    for label, count in (("pq", n), ("pq_sq8", REFINE_FLAT_MAX + 1)):
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        index = make_faiss("pq", d, count)
        index.train(xb[rng.choice(n, min(n, TRAIN_MAX), replace=False)])
        for s in range(0, n, 100_000):
            index.add(xb[s : s + 100_000])
        build = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "image.index"
            faiss.write_index(index, str(f))
            size = f.stat().st_size
        row: dict[str, Any] = {
            "refine": "sq8" if count > REFINE_FLAT_MAX else "flat",
            "build_s": round(build, 1),
            # The process also holds the data (4 d bytes a vector) and the exact index.
            "process_peak_rss_mib": round(rss1, 1),
            "process_peak_before_build_mib": round(rss0, 1),
            "index_mib": round(size / 2**20, 1),
            "default_k_factor": K_FACTOR,
            "by_k_factor": {},
        }
        for kf in K_FACTORS:
            index.k_factor = kf
            cell: dict[str, Any] = {}
            for name, q in queries.items():
                labels, times = _latencies(index, q, 10)
                recall = np.mean(
                    [len(set(a) & set(b)) / 10 for a, b in zip(labels, truth[name], strict=True)]
                )
                cell[name] = {"recall_at_10": round(float(recall), 4), **_ms(times)}
            row["by_k_factor"][str(kf)] = cell
        out[label] = row
        del index
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 128])
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.n, args.one, args.queries)))
        return
    results = []
    for d in args.dims:
        cmd = [sys.executable, __file__, "--n", str(args.n), "--queries", str(args.queries)]
        done = subprocess.run([*cmd, "--one", str(d)], check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=1))
    out = {
        "command": f"python bench/search_scale.py --n {args.n} --queries {args.queries} "
        f"--dims {' '.join(map(str, args.dims))}",
        "results": results,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    path = Path(__file__).parent / "results" / "search_scale.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
