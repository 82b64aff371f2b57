"""Semantic deduplication (SemDeDup, Abbas et al. 2023): near-identical image embeddings.

Embeddings are clustered with spherical k-means; inside each cluster every pair with cosine
above ``1 - eps`` is a semantic duplicate. Comparing only inside clusters keeps the work near
``N * cluster_size`` instead of ``N^2``; the price, as in the paper, is that a pair split
across two clusters is not compared. The clustering is seeded, so a re-decide finds the same
pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipaudit.errors import ClipauditError

# Mean cluster size aimed for: the in-cluster cosine matrix stays small.
TARGET_CLUSTER = 1000


def load_image_embeddings(run_path: Path, shards: np.ndarray) -> np.ndarray:
    """The run's image embeddings, row-aligned with the signals (which carry ``shard``)."""
    parts = []
    for k in sorted({int(s) for s in shards}):
        f = run_path / "img_emb" / f"img_emb_{k}.npy"
        if not f.is_file():
            raise ClipauditError(
                f"{str(f)!r} is missing: semantic dedup needs the image embeddings of the "
                "alignment stage; curate again with it, or unset dedup.semantic_eps."
            )
        parts.append(np.load(f, allow_pickle=False))
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if len(emb) != len(shards):
        raise ClipauditError(
            f"{str(run_path)!r} has {len(emb)} image embeddings for {len(shards)} samples; "
            "the run is incomplete: resume it with clipaudit curate."
        )
    return emb


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster label per row of unit vectors ``x`` (cosine k-means, seeded)."""
    n = len(x)
    k = max(1, min(k, n))
    if k == 1:
        return np.zeros(n, np.int64)
    rng = np.random.default_rng(seed)
    centers = x[rng.choice(n, size=k, replace=False)].copy()
    labels = np.zeros(n, np.int64)
    for _ in range(iters):
        labels = _assign(x, centers)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        # An empty cluster keeps its old centre rather than vanishing.
        centers = np.where(empty[:, None], centers, sums / np.where(norms == 0, 1, norms))
    return _assign(x, centers)


def _assign(x: np.ndarray, centers: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), chunk):
        out[a : a + chunk] = (x[a : a + chunk] @ centers.T).argmax(1)
    return out


def semantic_pairs(
    emb: np.ndarray, rows: np.ndarray, eps: float, seed: int = 0, chunk: int = 2048
) -> list[tuple[int, int, float]]:
    """(row a, row b, cosine) for pairs among ``rows`` with cosine > ``1 - eps``."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 2:
        return []
    x = emb[rows].astype(np.float32)
    norms = np.linalg.norm(x, axis=1)
    ok = norms > 0  # a sample without an image embedding (zeros) is never a duplicate
    rows, x = rows[ok], x[ok] / norms[ok, None]
    labels = spherical_kmeans(x, round(len(x) / TARGET_CLUSTER), seed=seed)
    out: list[tuple[int, int, float]] = []
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]
        xc = x[members]
        for a in range(0, len(members), chunk):
            sims = xc[a : a + chunk] @ xc.T
            ii, jj = np.nonzero(sims > 1 - eps)
            keep = (ii + a) < jj
            for i, j in zip(ii[keep], jj[keep], strict=True):
                out.append((int(rows[members[i + a]]), int(rows[members[j]]), float(sims[i, j])))
    return sorted(out)
