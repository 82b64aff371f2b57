"""Which stored scores a report plots, the pack thresholds drawn on each, and what-if tables.

A registry (dict + decorator) maps a decisions column to the pack values that cut it and
the reason code the cut produces, so a new signal adds one entry here and gets its
histogram and what-if table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Thresholds = Callable[[dict[str, Any], dict[str, Any]], list[tuple[str, float]]]


@dataclass(frozen=True)
class ScoreSpec:
    column: str
    label: str
    code: str | None  # the reason code a cut on this score produces
    keep_when: Literal["above", "below"]  # which side of the threshold passes
    thresholds: Thresholds


SCORES: dict[str, ScoreSpec] = {}


def score(
    column: str, label: str, code: str | None, keep_when: Literal["above", "below"]
) -> Callable[[Thresholds], Thresholds]:
    def register(fn: Thresholds) -> Thresholds:
        SCORES[column] = ScoreSpec(column, label, code, keep_when, fn)
        return fn

    return register


def _present(*pairs: tuple[str, Any]) -> list[tuple[str, float]]:
    return [(name, float(v)) for name, v in pairs if isinstance(v, int | float) and v is not None]


@score("alignment", "image-caption cosine", "low_alignment", "above")
def _alignment(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    t = stats.get("thresholds", {})
    return _present(("min", t.get("alignment_min")), ("pct", t.get("alignment_percentile_value")))


@score("min_side", "shorter side (px)", "too_small", "above")
def _min_side(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    v = pack.get("quality", {}).get("min_side")
    return _present(("min", v)) if v else []


@score("aspect", "aspect ratio", "bad_aspect", "below")
def _aspect(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _present(("max", pack.get("quality", {}).get("max_aspect")))


@score("pixel_std", "colour spread of the 32-px thumbnail (flat = blank)", "blank_image", "above")
def _flat(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _present(("min", pack.get("quality", {}).get("min_pixel_std")))


def _length_cuts(pack: dict[str, Any], measure: str) -> list[tuple[str, float]]:
    """The caption length cuts, drawn on the measure the pack counts them in."""
    q = pack.get("quality", {})
    if q.get("caption_length", "chars") != measure:
        return []
    return _present(("min", q.get("min_caption_chars")), ("max", q.get("max_caption_chars")))


@score("caption_chars", "caption characters", None, "above")
def _chars(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _length_cuts(pack, "chars")


@score("caption_width", "caption width (a wide CJK character counts 2)", None, "above")
def _width(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _length_cuts(pack, "width")


@score("caption_words", "caption words", None, "above")
def _words(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _present(("min", pack.get("quality", {}).get("min_caption_words")))


@score("visible_watermark_score", "visible-watermark detector", "watermark_suspect", "below")
def _visible(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _present(("max", pack.get("visible_watermark", {}).get("threshold")))


@score("wm_phrase_score", "watermark phrase margin", "watermark_suspect", "below")
def _phrase(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return _present(("max", pack.get("watermark", {}).get("visible_min_margin")))


@score("caption_lang_score", "caption language probability", None, "above")
def _lang(pack: dict[str, Any], stats: dict[str, Any]) -> list[tuple[str, float]]:
    return []


def histogram(values: np.ndarray, bins: int = 30) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"edges": [], "counts": [], "n": 0, "missing": len(values)}
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
    return {
        "edges": [round(float(e), 6) for e in edges],
        "counts": [int(c) for c in counts],
        "n": len(finite),
        "missing": int(len(values) - len(finite)),
        "percentiles": {
            str(p): round(float(np.percentile(finite, p)), 6) for p in (1, 10, 50, 90, 99)
        },
    }


WHAT_IF_PERCENTILES = (10, 20, 30, 50, 70, 80, 90)


def what_if(
    values: np.ndarray,
    spec: ScoreSpec,
    others_drop: np.ndarray,
    current: list[tuple[str, float]],
    drops: bool,
) -> list[dict[str, Any]]:
    """Kept share of the run if this one cut moved, every other decision held fixed.

    ``kept_share`` is None when the cut only flags (a flagged sample stays kept). A missing
    score passes (decide skips it too). Duplicate groups are not re-resolved:
    the exact figure after a change is what ``clipaudit decide`` gives.
    """
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return []
    n = len(values)
    rows: list[tuple[str, float]] = [(f"current ({name})", v) for name, v in current]
    rows += [(f"p{p}", float(np.percentile(finite, p))) for p in WHAT_IF_PERCENTILES]
    out = []
    for label, t in rows:
        with np.errstate(invalid="ignore"):
            fails = values < t if spec.keep_when == "above" else values > t
        fails = fails & np.isfinite(values)
        out.append(
            {
                "at": label,
                "threshold": round(t, 6),
                "passing_share": round(float(1 - fails.mean()), 6),
                "kept_share": round(float((~fails & ~others_drop).sum() / n), 6) if drops else None,
            }
        )
    return out
