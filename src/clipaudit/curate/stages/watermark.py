"""Watermark signals: SD v1 / SDXL invisible marks (imwatermark's dwtDct) and a CLIP phrase
score for visible ones.

Columns:

* ``wm_invisible``       best grade over both marks: none / partial / likely / very_likely,
  or not_checkable (shorter side under 256 px, or over 36 MP); null without an image;
* ``wm_invisible_mark``  the mark that gave that grade (sdxl / sdv1), null for none;
* ``wm_sdxl_bits``, ``wm_sdv1_bits``  matching bits of 48 and of 136;
* ``wm_phrase_score``    cosine(image, visible_phrase) - cosine(image, visible_baseline);
* ``wm_phrase_fp``       fingerprint of the two phrases: the score is a contrast of exactly
  those two, so a pack with other phrases is refused at decide rather than misread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clipaudit.curate.stages import FRAME_EMB, Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.safety.invisible import GRADES, MARKS, NOT_CHECKABLE, grade, read_marks
from clipaudit.safety.phrases import image_embeddings
from clipaudit.safety.words import fingerprint

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack
    from clipaudit.rules.sections.safety import WatermarkRules

BITS_COLUMN = {"sdxl": "wm_sdxl_bits", "sdv1": "wm_sdv1_bits"}


def phrase_fingerprint(rules: WatermarkRules) -> str:
    return fingerprint([["phrase", rules.visible_phrase], ["baseline", rules.visible_baseline]])


@register_stage("watermark")
class WatermarkStage(Stage):
    columns = (
        "wm_invisible",
        "wm_invisible_mark",
        "wm_sdxl_bits",
        "wm_sdv1_bits",
        "wm_phrase_score",
        "wm_phrase_fp",
    )
    needs_model = True

    def __init__(self) -> None:
        self.rules: WatermarkRules | None = None
        self.clip: Any = None
        self.text_emb = np.zeros((2, 0), np.float32)
        self.fp = ""

    def setup(self, ctx: StageContext) -> None:
        from clipaudit.rules.schema import load_pack

        self.rules = load_pack(str(ctx.options.get("rules") or "default")).watermark
        self.clip = ctx.clip()
        self.text_emb = self.clip.encode_texts(
            [self.rules.visible_phrase, self.rules.visible_baseline]
        )
        self.fp = phrase_fingerprint(self.rules)

    def prepare(self, sample: Sample, decoded: Decoded) -> Any:
        """Both invisible marks from one pass over the pixels (thread-safe, no shared state)."""
        if decoded.image is None:
            return None
        try:
            return read_marks(decoded.image, tuple(MARKS))
        except (ValueError, MemoryError):
            return None

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        assert self.clip is not None, "setup() was not called"
        n = len(batch.samples)
        readings = self.prepared_for(batch)
        out: dict[str, list[Any]] = {c: [] for c in self.columns}
        for rd in readings:
            out["wm_invisible"].append(rd.grade if rd else None)
            out["wm_invisible_mark"].append(rd.mark if rd else None)
            for m, col in BITS_COLUMN.items():
                out[col].append(rd.bits.get(m) if rd else None)
        score: list[float | None] = [None] * n
        if any(d.image is not None for d in batch.decoded):
            emb, rows = image_embeddings(batch, self.clip)
            sims = emb[rows] @ self.text_emb.T
            frames = batch.prepared.get(FRAME_EMB) or [None] * n
            for k, i in enumerate(rows):
                score[i] = round(float(sims[k, 0] - sims[k, 1]), 4)
                if frames[i] is not None:  # a video: its most marked frame counts
                    fs = frames[i] @ self.text_emb.T
                    score[i] = round(float((fs[:, 0] - fs[:, 1]).max()), 4)
        out["wm_phrase_score"] = score
        out["wm_phrase_fp"] = [self.fp if s is not None else None for s in score]
        return out

    def provenance(self) -> dict[str, Any]:
        if self.rules is None:
            return {}
        from importlib.metadata import version

        return {
            "invisible": "imwatermark dwtDct readings (EmbedMaxDct defaults), vectorised",
            "invisible_watermark": version("invisible-watermark"),
            "visible_phrase": self.rules.visible_phrase,
            "visible_baseline": self.rules.visible_baseline,
            "phrase_fingerprint": self.fp,
            "clip": self.clip.provenance.to_dict() if self.clip is not None else None,
        }


# ---- decide ----------------------------------------------------------------------------


def invisible_grades(sig: dict[str, np.ndarray], pack: Pack) -> list[tuple[str | None, str | None]]:
    """(grade, mark) per row over the marks the pack counts; grades recomputed from bits."""
    marks = pack.watermark.invisible_marks
    stored = column(sig, "wm_invisible")
    bits = {m: column(sig, BITS_COLUMN[m]) for m in marks}
    out: list[tuple[str | None, str | None]] = []
    for i in range(len(sig["id"])):
        if stored[i] is None or stored[i] == NOT_CHECKABLE:
            out.append((stored[i], None))
            continue
        best, best_mark = "none", None
        for m in marks:
            b = bits[m][i]
            g = grade(int(b), len(MARKS[m])) if b is not None else "none"
            if GRADES.index(g) > GRADES.index(best):
                best, best_mark = g, m
        out.append((best, best_mark))
    return out


def _phrase_scores(sig: dict[str, np.ndarray], pack: Pack) -> np.ndarray:
    fps = {str(f) for f in column(sig, "wm_phrase_fp") if f is not None}
    want = phrase_fingerprint(pack.watermark)
    if fps - {want}:
        raise ClipauditError(
            f"Pack {pack.name!r} sets other watermark.visible_phrase / visible_baseline than this "
            "run scored; curate again with this pack, or keep the phrases it was scored with."
        )
    return np.array(
        [np.nan if v is None else float(v) for v in column(sig, "wm_phrase_score")], np.float64
    )


@register_rule("watermark")
def watermark_rule(sig: dict[str, np.ndarray], pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    out: list[list[str]] = [[] for _ in range(n)]
    if "wm_invisible" not in sig:
        return out
    w = pack.watermark
    counted = set(w.invisible_grades)
    for i, (g, _) in enumerate(invisible_grades(sig, pack)):
        if g in counted:
            out[i].append("invisible_watermark")
    if w.visible_min_margin is not None:
        score = _phrase_scores(sig, pack)
        for j in np.nonzero(score >= w.visible_min_margin)[0].tolist():
            out[j].append("watermark_suspect")
    return out


@register_stats("watermark")
def watermark_stats(
    sig: dict[str, np.ndarray], pack: Pack, reasons: list[list[str]]
) -> dict[str, Any]:
    if "wm_invisible" not in sig:
        return {"computed": False}
    w = pack.watermark
    graded = invisible_grades(sig, pack)
    grades: dict[str, int] = {g: 0 for g in (*GRADES, NOT_CHECKABLE)}
    by_mark: dict[str, int] = {}
    for g, m in graded:
        if g is not None:
            grades[g] += 1
        if m is not None and g in w.invisible_grades:
            by_mark[m] = by_mark.get(m, 0) + 1
    score = _phrase_scores(sig, pack)
    scored = score[~np.isnan(score)]
    pct = (
        {f"p{q}": round(float(np.percentile(scored, q)), 4) for q in (50, 90, 99)}
        if len(scored)
        else {}
    )
    return {
        "computed": True,
        "invisible": {
            "grades": grades,
            "counted_grades": list(w.invisible_grades),
            "counted_by_mark": dict(sorted(by_mark.items())),
            "flagged": sum("invisible_watermark" in r for r in reasons),
        },
        "visible_phrase": {
            "phrase": w.visible_phrase,
            "baseline": w.visible_baseline,
            "min_margin": w.visible_min_margin,
            "scored": len(scored),
            "above": None
            if w.visible_min_margin is None
            else int((scored >= w.visible_min_margin).sum()),
            **pct,
        },
    }
