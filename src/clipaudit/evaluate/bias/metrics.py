"""Bias metrics from their formulas (reference.md, "Evaluation"), on plain arrays.

Conventions, stated once:

* Skew_a@k = ln(p_topk(a) / p_desired(a)); a group absent from the top k has its share
  floored at 1/k (the Berg et al. reference code), so MinSkew stays finite.
* NDKL@k = (1/Z) Σ_{i=1..k} KL(D_top-i ‖ D_desired) / log2(i+1), Z = Σ 1/log2(i+1); KL in
  nats with 0·ln 0 = 0 (no floor needed: only the top-i side can be zero).
* Groups are integer codes 0..G-1; every group has a desired share > 0 (groups absent
  from the data are not groups of it).
* Degenerate k is refused: k ≥ N makes every metric trivially 0, k < G cannot hold every
  group.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from clipaudit.errors import ClipauditError

EXACT_LIMIT = 10_000  # enumerate every re-partition up to this many (WEAT/iEAT convention)


def check_k(k: int, n: int, n_groups: int) -> None:
    if k >= n:
        raise ClipauditError(
            f"k={k} is not below the number of images ({n}): at k ≥ N every skew is trivially "
            "0; pass a smaller --k."
        )
    if k < n_groups:
        raise ClipauditError(
            f"k={k} is below the number of groups ({n_groups}), so the top k cannot hold every "
            "group; pass a larger --k."
        )


def topk_counts(order: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(..., N, G) cumulative group counts down each ranking ``order`` (..., N)."""
    onehot = np.eye(n_groups, dtype=np.int32)[groups[order]]
    return np.cumsum(onehot, axis=-2)


def skew_from_counts(counts: np.ndarray, k: int | np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Skew per group (..., G) from top-k counts (..., G), zero counts floored at 1/k."""
    kk = np.asarray(k, np.float64)[..., None] if np.ndim(k) else float(k)
    share = np.maximum(counts, 1) / kk
    return np.log(share / desired)


def skew(top_groups: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Skew_a@k for each group a, given the group codes of the top k (in any order)."""
    desired = np.asarray(desired, np.float64)
    counts = np.bincount(np.asarray(top_groups), minlength=len(desired))
    return skew_from_counts(counts, len(top_groups), desired)


def max_skew(top_groups: np.ndarray, desired: np.ndarray) -> float:
    return float(skew(top_groups, desired).max())


def min_skew(top_groups: np.ndarray, desired: np.ndarray) -> float:
    return float(skew(top_groups, desired).min())


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0)
    return terms.sum(axis=-1)


def ndkl_curve(cum_counts: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """NDKL@k for every k = 1..K from cumulative counts (..., K, G): returns (..., K)."""
    k = cum_counts.shape[-2]
    i = np.arange(1, k + 1, dtype=np.float64)
    dist = cum_counts / i[:, None]
    w = 1.0 / np.log2(i + 1)
    kl = _kl(dist, np.asarray(desired, np.float64))
    return np.cumsum(kl * w, axis=-1) / np.cumsum(w)


def ndkl(ranked_groups: np.ndarray, desired: np.ndarray) -> float:
    """NDKL@k where ``ranked_groups`` holds the group codes of ranks 1..k in order."""
    desired = np.asarray(desired, np.float64)
    counts = np.cumsum(np.eye(len(desired))[np.asarray(ranked_groups)], axis=0)
    return float(ndkl_curve(counts, desired)[-1])


# ---------------------------------------------------------------- WEAT / iEAT association


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) − mean_b cos(w, b) for each row of ``w`` (unit rows)."""
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def weat_effect_size(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """d = (mean_x s − mean_y s) / std_{X∪Y} s (ddof=1)."""
    pooled = np.concatenate([s_x, s_y])
    sd = float(pooled.std(ddof=1))
    if sd == 0:
        return 0.0
    return float((s_x.mean() - s_y.mean()) / sd)


def weat_p_value(
    s_x: np.ndarray, s_y: np.ndarray, n_samples: int = EXACT_LIMIT, seed: int = 0
) -> tuple[float, str, int]:
    """One-sided permutation p of Σ_x s − Σ_y s over re-partitions of X ∪ Y keeping sizes:
    exact when C(|X|+|Y|, |X|) ≤ 10,000, else ``n_samples`` random re-partitions with the
    (1 + hits) / (1 + n) correction. Returns (p, "exact"|"sampled", partitions used)."""
    pooled = np.concatenate([s_x, s_y]).astype(np.float64)
    nx, total = len(s_x), float(pooled.sum())
    observed = 2 * s_x.sum() - total
    tol = 1e-12 * max(1.0, abs(observed))
    if math.comb(len(pooled), nx) <= EXACT_LIMIT:
        sums = np.array(
            [pooled[list(c)].sum() for c in itertools.combinations(range(len(pooled)), nx)]
        )
        stats = 2 * sums - total
        return float(np.mean(stats >= observed - tol)), "exact", len(stats)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_samples:
        b = min(1000, n_samples - done)
        perm = rng.permuted(np.broadcast_to(np.arange(len(pooled)), (b, len(pooled))), axis=1)
        stats = 2 * pooled[perm[:, :nx]].sum(axis=1) - total
        hits += int((stats >= observed - tol).sum())
        done += b
    return (1 + hits) / (1 + n_samples), "sampled", n_samples


# ---------------------------------------------------------------- fairlearn-style disparity


def disparity(by_group: dict[str, float], overall: float) -> dict[str, float]:
    """fairlearn ``MetricFrame`` conventions: difference/ratio between groups (max − min,
    min / max) and to overall (max |g − overall|, min of min(g/overall, overall/g))."""
    v = np.array(list(by_group.values()), np.float64)
    hi, lo = float(v.max()), float(v.min())
    with np.errstate(divide="ignore", invalid="ignore"):
        to_overall = np.minimum(v / overall, overall / v) if overall else np.zeros_like(v)
    return {
        "difference": hi - lo,
        "ratio": lo / hi if hi else float("nan"),
        "difference_to_overall": float(np.abs(v - overall).max()),
        "ratio_to_overall": float(np.nan_to_num(to_overall, nan=0.0).min()),
    }
