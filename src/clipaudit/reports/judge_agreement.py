"""How often a multimodal judge agreed with the signal it was asked about, with intervals.

For each rubric the judge answered: the signal's own call on the same samples (faithful:
alignment at or above the pack's cut; watermark: the visible-watermark score at or above its
threshold; nsfw: the ``nsfw`` code) against the judge's yes / no, as a share agreeing with a
95% Wilson interval. Borderline samples are where the two should disagree most: this is a
measure of the signal near its cut, not of the judge."""

from __future__ import annotations

from typing import Any

from clipaudit.calibrate.intervals import wilson

COLUMNS = {"faithful": "judge_faithful", "watermark": "judge_watermark", "nsfw": "judge_nsfw"}


def agreement(
    dec: dict[str, Any], stats: dict[str, Any], pack: dict[str, Any]
) -> list[dict[str, Any]]:
    cut = (stats.get("thresholds") or {}).get("alignment_min")
    wm_thr = (pack.get("visible_watermark") or {}).get("threshold")
    out = []
    for rubric, col in COLUMNS.items():
        verdicts = dec.get(col)
        if not verdicts:
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
                    "answered": n,
                    "judge_yes": yes,
                    "agree": agree,
                    "agreement": round(agree / n, 4),
                    "ci": wilson(agree, n),
                }
            )
    return out
