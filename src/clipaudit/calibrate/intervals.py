"""Confidence intervals for the rates measured on real photos."""

from __future__ import annotations

import math


def wilson(k: int, n: int, z: float = 1.96, digits: int = 4) -> list[float]:
    """95% (by default) Wilson score interval of a proportion k/n, rounded to ``digits``."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, mid - half), digits), round(min(1.0, mid + half), digits)]
