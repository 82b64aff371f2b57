"""How often a multimodal judge agreed with the signal it was asked about, with intervals.

For each rubric the judge answered: the signal's own call on the same samples (faithful:
alignment at or above the pack's cut; watermark: the visible-watermark score at or above its
threshold; nsfw: the ``nsfw`` code) against the judge's yes / no, as a share agreeing with a
95% Wilson interval. Borderline samples are where the two should disagree most: this is a
measure of the signal near its cut, not of the judge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipaudit.calibrate.intervals import wilson

COLUMNS = {"faithful": "judge_faithful", "watermark": "judge_watermark", "nsfw": "judge_nsfw"}


def asked(run: Path) -> dict[str, dict[str, int]]:
    """Rubric → status (ok / unparseable / failed) → samples, from the judge's
    ``verdicts.parquet``: what was asked, not only what was answered."""
    path = run / "judge" / "verdicts.parquet"
    if not path.is_file():
        return {}
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path, columns=["rubric", "status"]).to_pylist()
    except Exception:  # an older judge's file without a status column: answered rows only
        return {}
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        by = out.setdefault(str(r["rubric"]), {})
        by[str(r["status"])] = by.get(str(r["status"]), 0) + 1
    return out


def agreement(
    dec: dict[str, Any],
    stats: dict[str, Any],
    pack: dict[str, Any],
    asked_by: dict[str, dict[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Per rubric: agreement where the judge answered, and (``asked_by``) how many samples
    it was asked about and got no usable answer for, so a failed judge run is not a blank."""
    asked_by = asked_by or {}
    cut = (stats.get("thresholds") or {}).get("alignment_min")
    wm_thr = (pack.get("visible_watermark") or {}).get("threshold")
    out = []
    for rubric, col in COLUMNS.items():
        verdicts: list[Any] = dec.get(col) or []
        statuses = asked_by.get(rubric, {})
        unanswered = sum(v for k, v in statuses.items() if k != "ok")
        if not any(v in ("yes", "no") for v in verdicts):
            # No column, or decide's all-null column for a rubric whose every request failed
            # while another rubric answered.
            if statuses:
                out.append(
                    {
                        "rubric": rubric,
                        "asked": sum(statuses.values()),
                        "no_answer": unanswered,
                        "answered": 0,
                        "judge_yes": 0,
                        "agree": 0,
                        "agreement": None,
                        "ci": None,
                    }
                )
            continue
        n = agree = yes = 0
        for k, v in enumerate(verdicts):
            if v not in ("yes", "no"):
                continue
            if rubric == "faithful":
                a = (dec.get("alignment") or [None] * len(verdicts))[k]
                if a is None or cut is None:
                    continue
                signal = a >= cut
            elif rubric == "watermark":
                s = (dec.get("visible_watermark_score") or [None] * len(verdicts))[k]
                if s is None or wm_thr is None:
                    continue
                signal = s >= wm_thr
            else:
                signal = "nsfw" in (dec["reasons"][k] or [])
            n += 1
            yes += v == "yes"
            agree += signal == (v == "yes")
        if n:
            out.append(
                {
                    "rubric": rubric,
                    "asked": sum(statuses.values()) if statuses else None,
                    "no_answer": unanswered if statuses else None,
                    "answered": n,
                    "judge_yes": yes,
                    "agree": agree,
                    "agreement": round(agree / n, 4),
                    "ci": wilson(agree, n),
                }
            )
    return out
