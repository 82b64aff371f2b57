"""Ranks with one tie rule: equal scores keep index order (a stable descending sort).

``torch.topk`` breaks ties arbitrarily, so clip-benchmark's numbers can move with exact
ties (duplicate images or captions); everywhere else ours equal its numbers exactly.
"""

from __future__ import annotations

import numpy as np


def rank_of(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Position of column ``target[i]`` in row i sorted by descending score, ties by index."""
    rows = np.arange(len(scores))
    own = scores[rows, target][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    ahead = (scores > own) | ((scores == own) & (cols < target[:, None]))
    return ahead.sum(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, in the same stable order."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
