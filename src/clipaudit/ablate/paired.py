"""Scores over seeds and paired differences to the raw arm, with bootstrap intervals.

Every model is scored on the same test units, so one set of resampled units serves all of
them: an arm's score and its difference to the raw arm are computed on the very same
resamples (paired), per seed, and the seeds are then averaged. Two intervals are given:

* ``ci_items``: test-set uncertainty of the seed-averaged score (seeds held fixed);
* ``ci``: the headline, which also resamples the seeds (each replicate averages K seeds
  drawn with replacement), so an effect has to hold across training seeds as well as test
  scenes to exclude zero. With one seed the two are the same.

Seed ``s`` of every arm starts from the same initial weights, so the difference per seed is
paired in the model too; an arm that keeps every sample trains the raw arm's very model and
its difference is exactly zero (the null check).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.evaluate.bootstrap import BootstrapSpec, Stat, interval, point, resamples


def _summary(
    points: list[float], per_replicate: np.ndarray, seed_pick: np.ndarray, confidence: float
) -> dict[str, Any]:
    """``per_replicate``: (K seeds, B) values; ``seed_pick``: (B, K) seed indices."""
    k, b = per_replicate.shape
    items = per_replicate.mean(axis=0)
    two_level = per_replicate[seed_pick.T, np.arange(b)[None, :]].mean(axis=0) if b else items
    return {
        "value": float(np.mean(points)),
        "ci": interval(two_level, confidence),
        "ci_items": interval(items, confidence),
        "per_seed": [
            {"value": points[s], "ci": interval(per_replicate[s], confidence)} for s in range(k)
        ],
    }


def paired_table(
    stats: dict[str, list[Stat]],
    n_units: int,
    spec: BootstrapSpec,
    baseline: str,
) -> dict[str, dict[str, Any]]:
    """``stats``: arm → one statistic per seed (same seed order in every arm).

    Returns arm → ``{"score": summary, "difference": summary + excludes_zero}`` (no
    difference for the baseline arm).
    """
    arms = list(stats)
    k = len(stats[baseline])
    if any(len(v) != k for v in stats.values()):
        raise ValueError("every arm needs one statistic per seed")
    values: dict[str, list[list[np.ndarray]]] = {a: [[] for _ in range(k)] for a in arms}
    for idx in resamples(n_units, spec):
        for a in arms:
            for s in range(k):
                values[a][s].append(stats[a][s](idx))
    # Seeds drawn for the two-level interval: from their own stream, the same for every arm.
    seed_pick = np.random.default_rng([spec.seed, 1]).integers(0, k, size=(spec.n, k))
    if k == 1:
        seed_pick = np.zeros((spec.n, 1), np.int64)
    reps = {a: np.stack([np.concatenate(v) if v else np.zeros(0) for v in values[a]]) for a in arms}
    points = {a: [point(st, n_units) for st in stats[a]] for a in arms}
    out: dict[str, dict[str, Any]] = {}
    for a in arms:
        entry: dict[str, Any] = {"score": _summary(points[a], reps[a], seed_pick, spec.confidence)}
        if a != baseline:
            diff_points = [p - q for p, q in zip(points[a], points[baseline], strict=True)]
            diff = _summary(diff_points, reps[a] - reps[baseline], seed_pick, spec.confidence)
            ci = diff["ci"]
            diff["excludes_zero"] = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
            entry["difference"] = diff
        out[a] = entry
    return out
