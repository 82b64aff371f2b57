"""Visible-watermark stage: the project's trained detector (``safety.visible.detector``).

Column ``visible_watermark_score``: the detector's score in [0, 1], null when the image did
not decode. Resizing to the detector's input runs per sample on worker threads (``prepare``);
the CNN scores the batch at once in ``process``. The pack's threshold is applied at decide
time (``watermark_suspect``), so moving it never re-reads an image.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from clipaudit.curate.stages import Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import Signals, column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack
    from clipaudit.safety.visible.detector import Detector

COLUMN = "visible_watermark_score"


@register_stage("visible_watermark")
class VisibleWatermarkStage(Stage):
    columns = (COLUMN,)

    def __init__(self) -> None:
        self.detector: Detector | None = None
        self.batch_size = 64

    def setup(self, ctx: StageContext) -> None:
        from clipaudit.safety.visible.detector import load_detector

        self.detector = load_detector()
        self.batch_size = ctx.batch_size

    def prepare(self, sample: Sample, decoded: Decoded) -> np.ndarray | None:
        """The detector's input, (frames, ...) stacked for a video (every sampled frame is
        scored and the highest score counts: a mark may show on a few frames only), or None
        (no image, or pixels Pillow cannot resize)."""
        if decoded.image is None:
            return None
        from clipaudit.safety.visible.data import to_input

        try:
            if decoded.frames:
                return np.stack([to_input(f) for f in decoded.frames])
            return to_input(decoded.image)[None]
        except (OSError, ValueError, MemoryError):
            return None

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        assert self.detector is not None, "setup() was not called"
        inputs = self.prepared_for(batch)
        rows = [i for i, x in enumerate(inputs) if x is not None]
        out: list[float | None] = [None] * len(inputs)
        if rows:
            scores = self.detector.score_arrays(
                np.concatenate([inputs[i] for i in rows]), batch_size=self.batch_size
            )
            at = 0
            for i in rows:
                k = len(inputs[i])
                out[i] = round(float(scores[at : at + k].max()), 6)
                at += k
        return {COLUMN: out}

    def provenance(self) -> dict[str, Any]:
        return self.detector.provenance() if self.detector is not None else {}


# ---- decide ----------------------------------------------------------------------------


def _scores(sig: Signals) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in column(sig, COLUMN)], np.float64)


@register_rule("visible_watermark")
def visible_watermark_rule(sig: Signals, pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    out: list[list[str]] = [[] for _ in range(n)]
    rules = pack.visible_watermark
    if COLUMN not in sig or not rules.enabled:
        return out
    for i in np.nonzero(_scores(sig) >= rules.threshold)[0].tolist():
        out[i].append("watermark_suspect")
    return out


@register_stats("visible_watermark")
def visible_watermark_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if COLUMN not in sig:
        return {}
    rules = pack.visible_watermark
    score = _scores(sig)
    scored = score[~np.isnan(score)]
    quantiles = (
        {f"p{q}": round(float(np.percentile(scored, q)), 4) for q in (10, 50, 90, 99)}
        if len(scored)
        else {}
    )
    return {
        "enabled": rules.enabled,
        "threshold": rules.threshold,
        "scored": len(scored),
        "unscored": int(np.isnan(score).sum()),
        "above_threshold": int((scored >= rules.threshold).sum()),
        "share_above": round(float((scored >= rules.threshold).mean()), 4) if len(scored) else None,
        **quantiles,
    }


def score_against_labels(
    ids: Iterable[str],
    scores: Iterable[float | None],
    issues: dict[str, list[str]],
    threshold: float,
) -> dict[str, Any]:
    """Recall and false-positive rate of ``score >= threshold`` against planted
    ``watermarked`` labels (a world pool's labels.jsonl: id → issues); unscored rows skipped."""
    tp = fp = fn = tn = 0
    for i, s in zip(ids, scores, strict=True):
        if s is None or i not in issues:
            continue
        planted, said = "watermarked" in issues[i], float(s) >= threshold
        tp += planted and said
        fn += planted and not said
        fp += said and not planted
        tn += not planted and not said
    return {
        "threshold": threshold,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "fpr": round(fp / (fp + tn), 4) if fp + tn else None,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
    }
