"""Bias metrics from their formulas (reference.md, "Evaluation"), on plain arrays.

Conventions, stated once:

* Skew_a@k = ln(p_topk(a) / p_desired(a)) (Geyik et al. 2019). The definition gives −∞ for
  a group absent from the top k; it is reported as the finite stand-in
  ln(1 / (k + 1)) = −ln(k + 1), the skew of the share p_desired(a) / (k + 1) that one
  pseudo-image spread by the desired shares over k + 1 places would give. It is negative
  whatever the desired share, below the skew of a group with one image in the top k
  (ln(1 / (k·p_desired)) ≥ −ln k), and finite, so MinSkew and its interval stay usable;
  the probe lists the absent groups. (The Berg et al. floor of 1/k gave a group whose
  desired share is under 1/k a positive skew for being absent.) A group with no desired
  share (absent from a resample's data, base-rate target) has no skew: NaN, left out of
  MaxSkew and MinSkew.
* NDKL@k = (1/Z) Σ_{i=1..k} KL(D_top-i ‖ D_desired) / log2(i+1), Z = Σ 1/log2(i+1); KL in
  nats with 0·ln 0 = 0 (no stand-in needed: only the top-i side can be zero).
* Groups are integer codes 0..G-1; every group has a desired share > 0 (groups absent
  from the data are not groups of it).
* Degenerate k is refused: k ≥ N makes every metric trivially 0, k < G cannot hold every
  group.
* Proportions between groups (accuracy, harmful-label rates): Wilson score intervals per
  group (not degenerate at 0 or n hits) and two-sided Fisher exact tests between groups,
  with Holm or Bonferroni adjustment for the number of comparisons.
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


def absent_skew(k: float | np.ndarray) -> np.ndarray:
    """The skew reported for a group absent from the top k: −ln(k + 1) (see the module)."""
    return -np.log(np.asarray(k, np.float64) + 1.0)


def skew_from_counts(counts: np.ndarray, k: int | np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Skew per group (..., G) from top-k counts (..., G); a zero count gets −ln(k + 1), a
    zero desired share NaN (see the module)."""
    kk = np.asarray(k, np.float64)[..., None] if np.ndim(k) else float(k)
    counts = np.asarray(counts, np.float64)
    desired = np.asarray(desired, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.log(counts / kk / desired)
    out = np.where(counts > 0, exact, absent_skew(kk))
    return np.where(desired > 0, out, np.nan)


def skew(top_groups: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Skew_a@k for each group a, given the group codes of the top k (in any order)."""
    desired = np.asarray(desired, np.float64)
    counts = np.bincount(np.asarray(top_groups), minlength=len(desired))
    return skew_from_counts(counts, len(top_groups), desired)


def max_skew(top_groups: np.ndarray, desired: np.ndarray) -> float:
    return float(np.nanmax(skew(top_groups, desired)))


def min_skew(top_groups: np.ndarray, desired: np.ndarray) -> float:
    return float(np.nanmin(skew(top_groups, desired)))


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


def weat_p_values(
    s_x: np.ndarray, s_y: np.ndarray, n_samples: int = EXACT_LIMIT, seed: int = 0
) -> tuple[float, float, str, int]:
    """Permutation p-values of mean_X s − mean_Y s over re-partitions of X ∪ Y keeping sizes.

    Returns (two-sided p, one-sided p, "exact"|"sampled", partitions used). Two-sided:
    P(|stat| ≥ |observed|), the test that matches a verdict on |d| and does not depend on
    which group is X; one-sided: P(stat ≥ observed), the iEAT p (X closer to A). Exact when
    C(|X|+|Y|, |X|) ≤ 10,000, else ``n_samples`` random re-partitions with the
    (1 + hits) / (1 + n) correction. The two sets are put in a canonical order (sorted
    values, the smaller set, then the lexicographically smaller, first) before sampling, so
    swapping X and Y gives the same sampled re-partitions and the same two-sided p."""
    xs, ys = np.sort(np.asarray(s_x, np.float64)), np.sort(np.asarray(s_y, np.float64))
    swap = (len(ys), ys.tolist()) < (len(xs), xs.tolist())
    if swap:
        xs, ys = ys, xs
    pooled = np.concatenate([xs, ys])
    nx, ny, total = len(xs), len(ys), float(pooled.sum())

    def stat(sum_x: np.ndarray) -> np.ndarray:
        return sum_x / nx - (total - sum_x) / ny

    observed = float(stat(xs.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(pooled).max(initial=0.0)))

    def hits(stats: np.ndarray) -> np.ndarray:
        """Re-partitions at least as extreme: |stat|, stat ≥ observed, stat ≤ observed."""
        return np.array(
            [
                (np.abs(stats) >= abs(observed) - tol).sum(),
                (stats >= observed - tol).sum(),
                (stats <= observed + tol).sum(),
            ]
        )

    if math.comb(len(pooled), nx) <= EXACT_LIMIT:
        sums = np.array(
            [pooled[list(c)].sum() for c in itertools.combinations(range(len(pooled)), nx)]
        )
        count, used, method, extra = hits(stat(sums)), len(sums), "exact", 0
    else:
        rng = np.random.default_rng(seed)
        count, done = np.zeros(3, np.int64), 0
        while done < n_samples:
            b = min(1000, n_samples - done)
            perm = rng.permuted(np.broadcast_to(np.arange(len(pooled)), (b, len(pooled))), axis=1)
            count += hits(stat(pooled[perm[:, :nx]].sum(axis=1)))
            done += b
        used, method, extra = n_samples, "sampled", 1
    two, greater, less = ((count + extra) / (used + extra)).tolist()
    # One-sided in the caller's orientation: X closer to A (stat ≥ observed before the swap).
    return two, (less if swap else greater), method, used


def weat_p_value(
    s_x: np.ndarray,
    s_y: np.ndarray,
    n_samples: int = EXACT_LIMIT,
    seed: int = 0,
    alternative: str = "two-sided",
) -> tuple[float, str, int]:
    """One p of :func:`weat_p_values`: ``two-sided`` (default) or ``greater`` (one-sided).
    Returns (p, "exact"|"sampled", partitions used)."""
    if alternative not in ("two-sided", "greater"):
        raise ValueError(f"alternative must be two-sided or greater, got {alternative!r}")
    two, one, method, used = weat_p_values(s_x, s_y, n_samples, seed)
    return (two if alternative == "two-sided" else one), method, used


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


# ---------------------------------------------------------------- proportions between groups


def wilson_interval(hits: int, n: int, confidence: float) -> list[float] | None:
    """Wilson score interval for a proportion hits/n: inside [0, 1] and not degenerate at
    0 or n hits (a percentile bootstrap gives [0, 0] for a group with no hits)."""
    if n <= 0:
        return None
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = hits / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [max(0.0, centre - half), min(1.0, centre + half)]


def fisher_p(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p for hits_a/n_a vs hits_b/n_b (exact at any n)."""
    from scipy.stats import fisher_exact

    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(fisher_exact(table, alternative="two-sided")[1])


def holm(p: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error over the list), same order."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
