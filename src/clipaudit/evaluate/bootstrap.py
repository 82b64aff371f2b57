"""Seeded percentile bootstrap over evaluation units, plain and paired.

A statistic is a function of resampled unit indices (B, n) → (B,) values, so every metric
is computed vectorised on whole chunks of resamples. The resamples depend only on
(n units, seed, count): two models scored on the same units see the same resamples, which
is what makes the paired difference of a model with itself exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clipaudit.errors import ClipauditError

Stat = Callable[[np.ndarray], np.ndarray]
CHUNK = 100  # resamples per chunk: bounds memory at CHUNK × n indices


@dataclass(frozen=True)
class BootstrapSpec:
    n: int = 1000
    seed: int = 0
    confidence: float = 0.95
    method: str = "percentile"

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ClipauditError(f"The bootstrap count must be 0 or more, got {self.n}.")
        if not 0 < self.confidence < 1:
            raise ClipauditError(f"The confidence must be between 0 and 1, got {self.confidence}.")

    def describe(self, unit: str) -> dict[str, Any]:
        return {**asdict(self), "unit": unit}


def resamples(n_items: int, spec: BootstrapSpec) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    done = 0
    while done < spec.n:
        b = min(CHUNK, spec.n - done)
        yield rng.integers(0, n_items, size=(b, n_items))
        done += b


def distribution(stat: Stat, n_items: int, spec: BootstrapSpec) -> np.ndarray:
    if n_items == 0 or spec.n == 0:
        return np.zeros(0)
    return np.concatenate([stat(idx) for idx in resamples(n_items, spec)])


def point(stat: Stat, n_items: int) -> float:
    return float(stat(np.arange(n_items)[None, :])[0])


def interval(values: np.ndarray, confidence: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def summarise(stat: Stat, n_items: int, spec: BootstrapSpec) -> dict[str, Any]:
    """``{"value", "ci"}`` for one headline metric."""
    return {
        "value": point(stat, n_items),
        "ci": interval(distribution(stat, n_items, spec), spec.confidence),
    }


def paired_difference(a: Stat, b: Stat, n_items: int, spec: BootstrapSpec) -> dict[str, Any]:
    """b − a on the same resamples: its value, interval and whether the interval excludes 0."""

    def diff(idx: np.ndarray) -> np.ndarray:
        return b(idx) - a(idx)

    out = summarise(diff, n_items, spec)
    ci = out["ci"]
    out["excludes_zero"] = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
    return out


def mean_stat(values: np.ndarray) -> Stat:
    v = np.asarray(values, dtype=np.float64)
    return lambda idx: v[idx].mean(axis=1)


def ratio_stat(num: np.ndarray, den: np.ndarray) -> Stat:
    """Σ num / Σ den over resampled units (a cluster bootstrap when units hold many items)."""
    nu, de = np.asarray(num, np.float64), np.asarray(den, np.float64)

    def stat(idx: np.ndarray) -> np.ndarray:
        d = de[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, nu[idx].sum(axis=1) / np.where(d > 0, d, 1), np.nan)

    return stat


def balanced_recall_stat(labels: np.ndarray, correct: np.ndarray, n_classes: int) -> Stat:
    """Mean per-class recall over the classes present in the resample (sklearn's
    ``balanced_accuracy_score``, which drops classes with no true samples)."""
    lab = np.asarray(labels, np.int64)
    hit = np.asarray(correct, np.float64)

    def stat(idx: np.ndarray) -> np.ndarray:
        b = idx.shape[0]
        flat = (np.arange(b)[:, None] * n_classes + lab[idx]).ravel()
        tot = np.bincount(flat, minlength=b * n_classes).reshape(b, n_classes)
        hits = np.bincount(flat, weights=hit[idx].ravel(), minlength=b * n_classes)
        present = tot > 0
        rec = np.where(present, hits.reshape(b, n_classes) / np.maximum(tot, 1), 0.0)
        return rec.sum(axis=1) / present.sum(axis=1)

    return stat
