"""Decide's per-sample rules: every rule that reads one sample's signals, applied to a
table of rows (a shard, or a whole small run), and the decision a row's codes give.

These run in decide's map step, a shard at a time and in parallel; only the alignment
percentile needs the whole run, and it comes in as a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from clipaudit.curate.signal_shards import floats
from clipaudit.curate.stages import load_stage_modules
from clipaudit.curate.stages.reasons import RULES, column
from clipaudit.data.decode import DECODE_ERRORS
from clipaudit.data.sample import SOFT_READ_ERRORS
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import Pack

# Reader and decoder codes: the sample could not be scored at all.
ERROR_CODES = set(DECODE_ERRORS) | {"unsafe_path", "truncated_shard", "remote_path"}


def shown_action(code: str, actions: dict[str, str]) -> str:
    """What a reason code does, as reports and cards show it: a reading error always makes
    the decision ``error`` (no pack action applies), another code its pack action."""
    return "error" if code in ERROR_CODES else actions.get(code, "drop")


DECISIONS = ("keep", "flag", "drop", "error")

load_stage_modules(scoring=False)  # every signal registers its rules and stats
_OWN = object()


def alignment_percentile(align: np.ndarray, pack: Pack, model_spec: str | None) -> float | None:
    """The alignment value at the pack's ``min_percentile`` over every scored sample."""
    thr = pack.alignment_for(model_spec)
    if thr.min_percentile is None:
        return None
    scored = align[~np.isnan(align)]
    return float(np.percentile(scored, thr.min_percentile)) if len(scored) else None


def quality_reasons(
    sig: dict[str, np.ndarray],
    pack: Pack,
    model_spec: str | None,
    percentile_value: Any = _OWN,
) -> tuple[list[list[str]], dict[str, Any]]:
    """Reading errors, quality and alignment codes per row. ``percentile_value`` is the
    run-wide alignment value behind ``min_percentile`` (a shard is not the run); left out,
    it is computed from ``sig`` itself."""
    n = len(sig["id"])
    reasons: list[list[str]] = [[] for _ in range(n)]
    q = pack.quality
    err = column(sig, "error")
    min_side = floats(column(sig, "min_side"))
    aspect = floats(column(sig, "aspect"))
    fbytes = floats(column(sig, "file_bytes"))
    flat = floats(column(sig, "pixel_std"))  # NaN in runs scored before the signal existed
    words = floats(column(sig, "caption_words"))
    chars = floats(column(sig, "caption_chars"))
    if q.caption_length == "width" and "caption_width" in sig:
        # Runs scored before the column existed keep the code-point count.
        chars = floats(column(sig, "caption_width"))
    align = floats(column(sig, "alignment"))
    if q.languages is not None and "caption_lang" not in sig:
        raise ClipauditError(
            f"pack {pack.name!r} sets quality.languages but the run has no caption_lang "
            "signal; curate it again with the quality stage of this version."
        )
    lang, lang_score = column(sig, "caption_lang"), floats(column(sig, "caption_lang_score"))
    allowed = set(q.languages or [])
    thr = pack.alignment_for(model_spec)
    cut = thr.min
    if percentile_value is _OWN:  # one table holds the whole run: its own percentile
        percentile_value = alignment_percentile(align, pack, model_spec)
    pct_value = percentile_value
    for i in range(n):
        r = reasons[i]
        if err[i] is not None:
            r.append(str(err[i]))
            if err[i] not in SOFT_READ_ERRORS:
                continue  # nothing else was measured
        if q.min_side and min_side[i] < q.min_side:
            r.append("too_small")
        if q.max_aspect is not None and aspect[i] > q.max_aspect:
            r.append("bad_aspect")
        if q.min_file_bytes and fbytes[i] < q.min_file_bytes:
            r.append("file_too_small")
        if q.min_pixel_std is not None and flat[i] < q.min_pixel_std:
            r.append("blank_image")
        if chars[i] == 0:
            r.append("no_caption")
        elif words[i] < q.min_caption_words or chars[i] < q.min_caption_chars:
            r.append("caption_too_short")
        if q.max_caption_chars is not None and chars[i] > q.max_caption_chars:
            r.append("caption_too_long")
        if (
            q.languages is not None
            and lang[i] is not None
            and lang[i] not in allowed
            and lang_score[i] >= q.min_language_score
        ):
            r.append("wrong_language")
        a = align[i]
        if not np.isnan(a) and (
            (cut is not None and a < cut) or (pct_value is not None and a < pct_value)
        ):
            r.append("low_alignment")
    used = {
        "alignment_min": cut,
        "alignment_min_percentile": thr.min_percentile,
        "alignment_percentile_value": pct_value,
        "alignment_source": "model" if model_spec in pack.models else "pack",
        "blank_check": "pixel_std" in sig if q.min_pixel_std is not None else None,
    }
    return reasons, used


def sample_reasons(
    sig: dict[str, np.ndarray], pack: Pack, model_spec: str | None, percentile_value: Any = _OWN
) -> tuple[list[list[str]], dict[str, Any]]:
    """Every per-sample rule: quality and alignment first, then each registered signal rule
    in name order (an errored row carries only its error)."""
    reasons, used = quality_reasons(sig, pack, model_spec, percentile_value)
    errored = [bool(set(r) & ERROR_CODES) for r in reasons]
    for name in sorted(RULES):
        for i, extra in enumerate(RULES[name](sig, pack)):
            if extra and not errored[i]:
                reasons[i].extend(c for c in extra if c not in reasons[i])
    return reasons, used


def standing(reasons: list[list[str]], pack: Pack) -> np.ndarray:
    """Rows no rule drops and no error stops: the only ones deduplication looks at."""
    return np.array(
        [all(pack.action(c) != "drop" for c in r) and not (set(r) & ERROR_CODES) for r in reasons],
        dtype=np.bool_,
    )


def decision_of(r: list[str], pack: Pack) -> str:
    if set(r) & ERROR_CODES:
        return "error"
    if any(pack.action(c) == "drop" for c in r):
        return "drop"
    if any(pack.action(c) == "flag" for c in r):
        return "flag"
    return "keep"


def tally(reasons: list[list[str]], decisions: list[str], pack: Pack) -> dict[str, Any]:
    """Counts that add over shards: decisions, and samples per reason code."""
    counts = {d: 0 for d in DECISIONS}
    by_reason: dict[str, int] = {}
    dropping: dict[str, int] = {}
    for r, dec in zip(reasons, decisions, strict=True):
        counts[dec] += 1
        for c in set(r):
            by_reason[c] = by_reason.get(c, 0) + 1
            if dec == "drop" and pack.action(c) == "drop":
                dropping[c] = dropping.get(c, 0) + 1
    return {"counts": counts, "by_reason": by_reason, "by_reason_dropping": dropping}


def add_tallies(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "counts": {d: 0 for d in DECISIONS},
        "by_reason": {},
        "by_reason_dropping": {},
    }
    for p in parts:
        for key in out:
            for c, v in p[key].items():
                out[key][c] = out[key].get(c, 0) + v
    return out


def _content_area(sig: dict[str, np.ndarray], rows: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Pixel area, or the area inside a trimmed black or white border where there is one."""
    if "content_area" not in sig:
        return area
    inner = floats(sig["content_area"][rows])
    return np.where(np.isnan(inner), area, inner)


def flag_counts(reasons: list[list[str]], pack: Pack) -> np.ndarray:
    """How many distinct codes the pack flags each row for (the ``flags`` keeper key)."""
    return np.array([sum(pack.action(c) == "flag" for c in set(r)) for r in reasons], np.int16)


def compact_columns(
    sig: dict[str, np.ndarray], rows: np.ndarray, flags: np.ndarray | None = None
) -> pa.Table:
    """What the duplicate reduce needs of ``rows``: a few numbers a sample (no thumbnails,
    a video's frame pHashes; its frame thumbnails are read per candidate pair).
    A table without some column (hashes only, say) gets nulls there. ``flags`` (per row
    of the shard, from ``flag_counts``) ranks a clean copy above a flagged one."""
    n = len(rows)

    def num(name: str) -> np.ndarray:
        return floats(sig[name][rows]) if name in sig else np.full(n, np.nan)

    ids = sig["id"][rows] if "id" in sig else rows
    # A video with frame hashes is paired through its frames alone (keeper.video_pairs): its
    # middle frame's image hashes would pair two distinct clips that share one look (a red
    # circle on a plain ground) and confirm them on that one frame. Exact copies still meet
    # on the pixel hash.
    video = (
        np.array([m == "video" for m in sig["media"][rows]], bool)
        if "media" in sig and "frame_phash" in sig
        else np.zeros(n, bool)
    )
    area = _content_area(sig, rows, num("width") * num("height"))
    # A clip's size is its pixels times its seconds: a 6 s original was dropped for its 5 s
    # trim (same frame size, the id decided). Clips pair only with clips.
    seconds = num("video_duration")
    area = np.where(video & (seconds > 0), area * seconds, area)
    cols: dict[str, Any] = {
        "row": pa.array(rows.astype(np.int64)),
        "id": pa.array([str(v) for v in ids], pa.string()),
        "alignment": pa.array(num("alignment")),
        "area": pa.array(area),
        # The resolution key's tie-break: of two copies of one size, the one with more
        # bytes is the less compressed (a JPEG q30 or CRF 45 copy was kept by id order).
        "bytes": pa.array(num("file_bytes").astype(np.float32)),
        "flags": pa.array(flags[rows] if flags is not None else np.zeros(n, np.int16), pa.int16()),
    }
    for name in ("pixel_hash", "phash", "dhash", "phash_mirror", "phash_inner", "chash"):
        if name in sig:
            v = sig[name][rows]
            mask = video if name != "pixel_hash" and video.any() else None
            cols[name] = pa.array(list(v) if v.dtype == object else v, pa.int64(), mask=mask)
    if "frame_phash" in sig:
        cols["frame_phash"] = pa.array(list(sig["frame_phash"][rows]), pa.list_(pa.int64()))
    return pa.table(cols)
