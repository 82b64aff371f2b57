"""Visible-watermark stage: the project's trained detector (``safety.visible.detector``).

Column ``visible_watermark_score``: the detector's score in [0, 1], null when the image did
not decode; for a video, its sampled frames' scores aggregated over time
(``safety.visible.video.aggregate``: the best mean over three consecutive frames), judged
against the pack's ``video_threshold``, which was calibrated on filmed real photos. Column
``visible_watermark_frames``: how many frames a video's score rests on (null for an image).

Resizing to the detector's input runs per sample on worker threads (``prepare``); the
detector scores the batch at once in ``process``. The pack's thresholds are applied at
decide time (``watermark_suspect``), so moving them never re-reads an image.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from clipaudit.curate.stages import Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import Signals, column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.safety.visible.video import aggregate

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack
    from clipaudit.safety.visible.detector import Detector

COLUMN = "visible_watermark_score"
FRAMES = "visible_watermark_frames"  # frames scored for a video sample, null for an image


@register_stage("visible_watermark")
class VisibleWatermarkStage(Stage):
    columns = (COLUMN, FRAMES)

    def __init__(self) -> None:
        self.detector: Detector | None = None
        self.batch_size = 64

    def setup(self, ctx: StageContext) -> None:
        from clipaudit.safety.visible.detector import load_detector

        self.detector = load_detector()
        self.batch_size = ctx.batch_size

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[np.ndarray, bool] | None:
        """The detector's input, (frames, ...) stacked in time order for a video, or None
        (no image, or pixels Pillow cannot resize)."""
        if decoded.image is None:
            return None
        assert self.detector is not None, "setup() was not called"
        to_input = self.detector.to_input
        try:
            # A video's frames; an animated image is judged on its first frame, the picture
            # the image threshold was calibrated on.
            if decoded.frames and decoded.video is not None:
                return np.stack([to_input(f) for f in decoded.frames]), True
            return to_input(decoded.image)[None], False
        except (OSError, ValueError, MemoryError):
            return None

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        assert self.detector is not None, "setup() was not called"
        prepared = self.prepared_for(batch)
        rows = [i for i, x in enumerate(prepared) if x is not None]
        out: list[float | None] = [None] * len(prepared)
        frames: list[int | None] = [None] * len(prepared)
        if rows:
            scores = self.detector.score_arrays(
                np.concatenate([prepared[i][0] for i in rows]), batch_size=self.batch_size
            )
            at = 0
            for i in rows:
                x, video = prepared[i]
                k = len(x)
                out[i] = round(aggregate(scores[at : at + k]) if video else float(scores[at]), 6)
                frames[i] = k if video else None
                at += k
        return {COLUMN: out, FRAMES: frames}

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
    for i in np.nonzero(_scores(sig) >= _thresholds(sig, pack))[0].tolist():
        out[i].append("watermark_suspect")
    return out


def _thresholds(sig: Signals, pack: Pack) -> np.ndarray:
    """Each row's threshold: the pack's video one for a video sample, else the image one."""
    rules = pack.visible_watermark
    if FRAMES not in sig:  # a run scored before videos had their own threshold
        return np.full(len(sig["id"]), rules.threshold)
    video = np.array([k is not None for k in column(sig, FRAMES)], bool)
    return np.where(video, rules.video_threshold, rules.threshold)


@register_stats("visible_watermark")
def visible_watermark_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if COLUMN not in sig:
        return {}
    rules = pack.visible_watermark
    score = _scores(sig)
    above = score >= _thresholds(sig, pack)
    scored = score[~np.isnan(score)]
    quantiles = (
        {f"p{q}": round(float(np.percentile(scored, q)), 4) for q in (10, 50, 90, 99)}
        if len(scored)
        else {}
    )
    return {
        "enabled": rules.enabled,
        "threshold": rules.threshold,
        "video_threshold": rules.video_threshold,
        "scored": len(scored),
        "unscored": int(np.isnan(score).sum()),
        "above_threshold": int(above.sum()),
        "share_above": round(float(above.sum() / len(scored)), 4) if len(scored) else None,
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
