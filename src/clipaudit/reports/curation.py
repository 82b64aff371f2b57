"""The curation section of a report, as plain data built from a run directory.

Numbers come from ``stats.json`` where it has them (so the report and the run can never
disagree) and from ``decisions.parquet`` for what stats do not hold: reason overlaps, the
ids per reason, duplicate groups, score distributions. Sizes are bounded for large runs:
id lists and thumbnails are capped and the caps are stated in the report.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from clipaudit.curate.decide.rules import shown_action
from clipaudit.errors import ClipauditError
from clipaudit.reports.judge_agreement import agreement, asked
from clipaudit.reports.provenance import run_provenance
from clipaudit.reports.scores import SCORES, histogram, what_if
from clipaudit.reports.thumbs import NSFW_CODES, SampleView, ThumbSource
from clipaudit.rules.reasons import meaning

# Caps that keep a 100,000-sample report small; every cap is reported where it bites.
IDS_PER_REASON = 2000
THUMBS_PER_REASON = 6
DUP_GROUPS_SHOWN = 24
FLAGGED_PER_CODE = 8
ROUTE_SHOWN = 12
OVERLAP_CODES = 14
ERROR_CODES_NOTE = "reader or decoder errors: the sample could not be scored"


def is_run(path: Path) -> bool:
    return (path / "stats.json").is_file() and (path / "run.json").is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipauditError(
            f"{str(path)!r} is missing; is this a complete clipaudit run?"
        ) from None
    except json.JSONDecodeError as err:
        raise ClipauditError(f"{str(path)!r} is not valid JSON ({err.msg}).") from None


def _actions(pack: dict[str, Any]) -> dict[str, str]:
    """Each reason code's action; a route's code (route:NAME) takes the route's own."""
    out = dict(pack.get("actions") or {})
    for name, route in (pack.get("routes") or {}).items():
        out[f"route:{name}"] = route.get("action", "flag")
    return out


def _decisions(run: Path) -> dict[str, Any]:
    path = run / "decisions.parquet"
    if not path.is_file():
        raise ClipauditError(f"{str(path)!r} is missing; run `clipaudit decide` on this run first.")
    table = pq.read_table(path)
    names = set(table.column_names)
    cols = ["id", "decision", "reasons", "duplicate_of"]
    cols += [c for c in ("shard", "route", *SCORES) if c in names]
    cols += sorted(c for c in names if c.startswith("route_score_"))
    cols += [c for c in ("judge_faithful", "judge_watermark", "judge_nsfw") if c in names]
    return {c: table.column(c).to_pylist() for c in cols}


def _captions(run: Path) -> dict[str, tuple[str | None, str | None]]:
    """id → (caption, url) from the run's metadata tables (present when a model stage ran)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for f in sorted((run / "metadata").glob("metadata_*.parquet")):
        t = pq.read_table(f, columns=["id", "caption", "url"]).to_pydict()
        for i, c, u in zip(t["id"], t["caption"], t["url"], strict=True):
            out[str(i)] = (c, u)
    return out


def _funnel(stats: dict[str, Any]) -> dict[str, Any]:
    n, err, drop = stats["input"], stats["errored"], stats["dropped"]
    kept, flagged = stats["kept"], stats["flagged"]
    return {
        "input": n,
        "errored": err,
        "readable": n - err,
        "dropped": drop,
        "kept": kept,
        "flagged": flagged,
        "kept_unflagged": kept - flagged,
        "adds_up": bool(stats.get("adds_up")) and kept + drop + err == n,
        "steps": [
            ["input", n],
            ["readable", n - err],
            ["kept (incl. flagged)", kept],
            ["kept, not flagged", kept - flagged],
        ],
    }


def _reasons(
    dec: dict[str, Any], stats: dict[str, Any], actions: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by_code: dict[str, list[str]] = {}
    pair: Counter[tuple[str, str]] = Counter()
    only: Counter[str] = Counter()
    for i, reasons in zip(dec["id"], dec["reasons"], strict=True):
        codes = sorted(set(reasons or []))
        for c in codes:
            by_code.setdefault(c, []).append(str(i))
        if len(codes) == 1:
            only[codes[0]] += 1
        for a in codes:
            for b in codes:
                if a < b:
                    pair[(a, b)] += 1
    counts = stats.get("by_reason", {})
    dropping = stats.get("by_reason_dropping", {})
    rows = []
    for code in sorted(set(by_code) | set(counts), key=lambda c: (-counts.get(c, 0), c)):
        ids = sorted(by_code.get(code, []))
        rows.append(
            {
                "code": code,
                "meaning": meaning(code),
                "action": shown_action(code, actions),
                "samples": counts.get(code, len(ids)),
                "dropping": dropping.get(code, 0),
                "only_reason": only.get(code, 0),
                "ids": ids[:IDS_PER_REASON],
                "ids_total": len(ids),
                "ids_truncated": len(ids) > IDS_PER_REASON,
            }
        )
    top = [r["code"] for r in rows[:OVERLAP_CODES]]
    matrix = [
        [counts.get(a, 0) if a == b else pair[(min(a, b), max(a, b))] for b in top] for a in top
    ]
    overlaps = {"codes": top, "matrix": matrix, "shown_of": len(rows)}
    return rows, overlaps


def _duplicates(dec: dict[str, Any]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, str]]] = {}
    for i, dup, reasons in zip(dec["id"], dec["duplicate_of"], dec["reasons"], strict=True):
        if dup:
            kind = next((r for r in (reasons or []) if r.endswith("_duplicate")), "duplicate")
            groups.setdefault(str(dup), []).append({"id": str(i), "kind": kind})
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    return {
        "groups": len(groups),
        "dropped": sum(len(v) for v in groups.values()),
        "by_kind": dict(Counter(m["kind"] for v in groups.values() for m in v)),
        "shown": [
            {"keeper": k, "dropped": sorted(groups[k], key=lambda m: m["id"])}
            for k in order[:DUP_GROUPS_SHOWN]
        ],
    }


def _flagged(dec: dict[str, Any], actions: dict[str, str]) -> dict[str, Any]:
    by_code: dict[str, list[str]] = {}
    total = 0
    for i, d, reasons in zip(dec["id"], dec["decision"], dec["reasons"], strict=True):
        if d != "flag":
            continue
        total += 1
        for c in sorted(set(reasons or [])):
            if actions.get(c, "drop") == "flag":
                by_code.setdefault(c, []).append(str(i))
    return {
        "total": total,
        "by_code": {
            c: {"samples": len(v), "shown": sorted(v)[:FLAGGED_PER_CODE]}
            for c, v in sorted(by_code.items())
        },
    }


def _routes(dec: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Per route (pack order): its action and counts, and the samples routed there with the
    highest scores (routes without phrases: the first ones), for a gallery."""
    out = []
    for name, r in (stats.get("routes") or {}).items():
        members = [k for k, v in enumerate(dec.get("route") or []) if v == name]
        score = dec.get(f"route_score_{name}")
        if score is not None:
            members.sort(key=lambda k: -(score[k] if score[k] is not None else float("-inf")))
        out.append(
            {
                "name": name,
                "action": r.get("action"),
                "threshold": r.get("threshold"),
                "samples": r.get("samples", len(members)),
                "decisions": {d: r.get(d, 0) for d in ("keep", "flag", "drop", "error")},
                "shown": [str(dec["id"][k]) for k in members[:ROUTE_SHOWN]],
            }
        )
    return out


def _scores(
    dec: dict[str, Any], stats: dict[str, Any], pack: dict[str, Any], actions: dict[str, str]
) -> list[dict[str, Any]]:
    n = len(dec["id"])
    out = []
    for col, spec in SCORES.items():
        if col not in dec:
            continue
        values = np.array([np.nan if v is None else float(v) for v in dec[col]], dtype=np.float64)
        if not np.isfinite(values).any():
            continue
        lines = spec.thresholds(pack, stats)
        drops = spec.code is not None and actions.get(spec.code, "drop") == "drop"
        others = np.zeros(n, dtype=bool)
        for k, (d, reasons) in enumerate(zip(dec["decision"], dec["reasons"], strict=True)):
            rest = [c for c in (reasons or []) if c != spec.code]
            others[k] = d == "error" or any(actions.get(c, "drop") == "drop" for c in rest)
        out.append(
            {
                "column": col,
                "label": spec.label,
                "code": spec.code,
                "keep_when": spec.keep_when,
                "thresholds": [[name, v] for name, v in lines],
                "histogram": histogram(values),
                "what_if": what_if(values, spec, others, lines, drops) if spec.code else [],
            }
        )
    return out


def _in_file_optouts(sig: dict[str, Any]) -> dict[str, Any]:
    """Reservations the files themselves carry, per kind, where the stage reading it ran."""
    rights, c2pa = sig.get("rights", {}) or {}, sig.get("c2pa", {}) or {}
    out: dict[str, Any] = {}
    if rights.get("computed"):
        out["XMP PLUS Data Mining (prohibits AI training)"] = rights.get("optout_iptc")
        if "tdm_reservation_in_file" in rights:
            out["XMP TDMRep reservation"] = rights["tdm_reservation_in_file"]
    if c2pa.get("computed"):
        out["C2PA training-mining (edit chain)"] = c2pa.get("optout_c2pa")
    return out


def _signals(stats: dict[str, Any]) -> dict[str, Any]:
    sig = stats.get("signals", {}) or {}
    n = stats.get("input", 0) or 1
    src = sig.get("sources", {}) or {}
    c2pa = sig.get("c2pa", {}) or {}
    ai_codes = stats.get("by_reason", {}).get("ai_generated", 0)
    opt = sig.get("optout", {}) or {}
    protocols = {
        k: v
        for k, v in sorted(opt.items())
        if isinstance(v, dict) and {"checked", "opted_out"} <= set(v)
    }
    return {
        "domains": src.get("domains", {}),
        "distinct_domains": src.get("distinct_domains"),
        "licences": src.get("licences", {}),
        "licence_coverage": src.get("licence_coverage"),
        "licence_flags": src.get("licence_flags", {}),
        "on_lists": src.get("on_lists", {}),
        "ai_generated": {
            # Read from the files only where a stage that reads the declaration ran: a
            # quality,hashes run said "0 samples carry ai_generated; C2PA-declared share 0%".
            "checked": (sig.get("rights") or {}).get("computed") is True
            or c2pa.get("computed") is True,
            "samples": ai_codes,
            "share": round(ai_codes / n, 6),
            "c2pa_share": c2pa.get("ai_generated_share") if c2pa.get("computed") else None,
            "c2pa_status": c2pa.get("status", {}),
        },
        "optout": {
            "protocols": protocols,
            "any_opted_out": opt.get("any_opted_out"),
            "in_files": _in_file_optouts(sig),
        },
        "nsfw": {
            k: v
            for k, v in (sig.get("nsfw", {}) or {}).items()
            if k in ("by_signal", "codes", "detector_runs", "detector_by_class")
        },
        "watermark": (sig.get("watermark", {}) or {}).get("invisible", {}),
        "visible_watermark": sig.get("visible_watermark", {}),
        "computed": sorted(k for k, v in sig.items() if isinstance(v, dict) and v.get("computed")),
    }


def _gates(run: Path) -> dict[str, Any]:
    path = run / "gates.json"
    if not path.is_file():
        return {"present": False, "success": None, "checks": []}
    g = _read_json(path)
    checks = []
    for suite, block in sorted(g.items()):
        if not isinstance(block, dict):
            continue
        for c in block.get("checks", []):
            kwargs = {k: v for k, v in (c.get("kwargs") or {}).items()}
            checks.append(
                {
                    "suite": suite,
                    "expectation": c.get("expectation"),
                    "kwargs": json.dumps(kwargs, sort_keys=True),
                    "observed": json.dumps(c.get("observed"), sort_keys=True),
                    "success": bool(c.get("success")),
                }
            )
    return {"present": True, "success": g.get("success"), "checks": checks}


def curation_section(
    run: Path, show_nsfw: bool = False
) -> tuple[dict[str, Any], dict[str, SampleView], list[tuple[str, str, str]]]:
    """(section data, sample views for thumbnails, (reason, id, decision) rows for the CSV)."""
    stats = _read_json(run / "stats.json")
    record = _read_json(run / "run.json")
    pack = stats.get("pack_dump") or {}
    actions = _actions(pack)
    dec = _decisions(run)
    if len(dec["id"]) != stats.get("input"):
        raise ClipauditError(
            f"{str(run)!r}: decisions.parquet has {len(dec['id'])} rows but stats.json says "
            f"{stats.get('input')}; decide the run again."
        )
    reasons, overlaps = _reasons(dec, stats, actions)
    dups = _duplicates(dec)
    flagged = _flagged(dec, actions)
    section: dict[str, Any] = {
        "kind": "curation",
        "path": str(run),
        "provenance": run_provenance(run, record, stats),
        "funnel": _funnel(stats),
        "reasons": reasons,
        "overlaps": overlaps,
        "duplicates": dups,
        "flagged": flagged,
        "routes": _routes(dec, stats),
        "judge": agreement(dec, stats, pack, asked(run)),
        "scores": _scores(dec, stats, pack, actions),
        "signals": _signals(stats),
        "gates": _gates(run),
        "thresholds": stats.get("thresholds", {}),
        "partial": stats.get("partial"),
        # Rules beside alignment left out as the run's model does not know the data.
        "not_applied": [k for k in stats.get("model_scores_not_applied", []) if k != "alignment"],
        "truth_scores": stats.get("truth_scores"),
        "caps": {
            "ids_per_reason": IDS_PER_REASON,
            "thumbnails_per_reason": THUMBS_PER_REASON,
            "duplicate_groups_shown": DUP_GROUPS_SHOWN,
            "flagged_per_code": FLAGGED_PER_CODE,
        },
    }
    # Thumbnails: a few per reason, the duplicate groups shown, the flagged gallery.
    wanted: list[str] = []
    for r in reasons:
        r["thumb_ids"] = r["ids"][:THUMBS_PER_REASON]
        wanted += r["thumb_ids"]
    for g in dups["shown"]:
        wanted += [g["keeper"], *(m["id"] for m in g["dropped"])]
    for block in flagged["by_code"].values():
        wanted += block["shown"]
    for route in section["routes"]:
        wanted += route["shown"]
    nsfw_ids = {
        str(i)
        for i, rs in zip(dec["id"], dec["reasons"], strict=True)
        if set(rs or []) & NSFW_CODES
    }
    shard_of = (
        {str(i): int(s) for i, s in zip(dec["id"], dec["shard"], strict=True)}
        if "shard" in dec
        else {}
    )
    source = ThumbSource(run=run, record=record, shard_of=shard_of)
    views = source.load(wanted, set() if show_nsfw else nsfw_ids)
    meta = _captions(run)
    for i, v in views.items():
        if v.caption is None and i in meta:
            v.caption, v.url = meta[i][0], v.url or meta[i][1]
    section["thumbnails"] = {
        "note": source.note,
        "nsfw_hidden": 0 if show_nsfw else len(nsfw_ids & set(wanted)),
        "show_nsfw": show_nsfw,
    }
    rows = [
        (code, i, d)
        for i, d, rs in zip(dec["id"], dec["decision"], dec["reasons"], strict=True)
        for code in sorted(set(rs or []))
    ]
    return section, views, rows
