"""Score a curation run against a world pool's planted truths (labels.jsonl)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from clipaudit.curate.decide import near_duplicate_pairs
from clipaudit.curate.rundir import RunDir
from clipaudit.curate.signal_shards import SignalShards
from clipaudit.rules.schema import Dedup


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


# Planted pool issue → the reason code that should catch it.
ISSUE_CODES: dict[str, str] = {
    "exif_copyright": "copyright_notice",
    "xmp_prohibited": "optout_iptc",
    "stock_url": "copyright_risk_domain",
    "caption_copyright": "caption_copyright",
    "license_nc": "license_nc",
    "xrobots_noai": "optout_xrobots",
    "sdxl_watermark": "invisible_watermark",
    "watermarked": "watermark_suspect",
}


def signal_scores(
    dec: list[dict[str, Any]], labels: dict[str, Any], issue_codes: dict[str, str] | None = None
) -> dict[str, Any]:
    """Per planted issue: recall of its reason code, and how often the code fired elsewhere."""
    out: dict[str, Any] = {}
    rows = [r for r in dec if r["id"] in labels and r["decision"] != "error"]
    for issue, code in (ISSUE_CODES if issue_codes is None else issue_codes).items():
        planted = [issue in labels[r["id"]]["issues"] for r in rows]
        said = [code in (r["reasons"] or []) for r in rows]
        tp = sum(p and s for p, s in zip(planted, said, strict=True))
        fp = sum(s and not p for p, s in zip(planted, said, strict=True))
        n_pos, n_neg = sum(planted), len(rows) - sum(planted)
        out[issue] = {
            "code": code,
            "planted": n_pos,
            "found": tp,
            "recall": round(tp / n_pos, 4) if n_pos else None,
            "false_positives": fp,
            "false_positive_rate": round(fp / n_neg, 4) if n_neg else None,
        }
    return out


def score_run(
    run: str | Path, labels_path: str | Path, dedup: Dedup | None = None
) -> dict[str, Any]:
    """Precision / recall of the run's signals and decisions against the planted labels."""
    dedup = dedup or Dedup()
    labels = {x["id"]: x for x in map(json.loads, Path(labels_path).read_text().splitlines())}
    dec = pq.read_table(Path(run) / "decisions.parquet").to_pylist()
    out: dict[str, Any] = {}
    # Misaligned captions: the low_alignment reason against the planted label.
    tp = fp = fn = 0
    for row in dec:
        if row["id"] not in labels or row["decision"] == "error":
            continue
        planted = "misaligned" in labels[row["id"]]["issues"]
        said = "low_alignment" in (row["reasons"] or [])
        tp += planted and said
        fp += said and not planted
        fn += planted and not said
    out["misaligned_caption"] = prf(tp, fp, fn)

    # Duplicates, at the signal level: every planted copy against its original, by transform.
    group = {}
    for i, x in labels.items():
        group[i] = x["duplicate_of"] or i
    ids = [r["id"] for r in dec]
    pos = {i: k for k, i in enumerate(ids)}
    # Every signal the run's own duplicate search reads: the crop hash and the hashes inside
    # borders too. Scored without them, crops read as found 3 of 19 while the run dropped 16
    # of them, and the pair precision left out the crop matcher's false pairs.
    sig = {
        name: np.array([r.get(name) for r in dec], dtype=object)
        for name in {*dedup.hashes, "phash", "phash_mirror", "phash_inner", "chash"}
        if dec and name in dec[0]
    }
    # Thumbnails stay in the signal shards (decisions do not repeat them).
    shards = SignalShards(RunDir(run))
    for name in ("thumb", "thumb_inner"):
        if not shards.has(name):
            continue
        thumb_of: dict[str, Any] = {}
        for k in shards:
            t = shards.read(k, ["id", name])
            if name in t.column_names:
                thumb_of.update(
                    zip(t.column("id").to_pylist(), t.column(name).to_pylist(), strict=True)
                )
        sig[name] = np.array([thumb_of.get(i) for i in ids], dtype=object)
    pairs = near_duplicate_pairs(sig, np.arange(len(ids)), dedup)
    found = {(ids[x], ids[y]) for x, y in pairs}
    found |= {(y, x) for x, y in found}
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, x in labels.items():
        if x["duplicate_of"] is None or i not in pos or x["duplicate_of"] not in pos:
            continue
        kind = x["transform"] or "exact"
        per[kind][0] += (i, x["duplicate_of"]) in found
        per[kind][1] += 1
    false_pairs = sum(1 for p, q in found if p < q and group.get(p) != group.get(q))
    true_pairs = sum(1 for p, q in found if p < q and group.get(p) == group.get(q))
    out["near_duplicate_by_transform"] = {
        k: {"recall": round(v[0] / v[1], 4) if v[1] else None, "found": v[0], "planted": v[1]}
        for k, v in sorted(per.items())
    }
    out["near_duplicate_pair_precision"] = (
        round(true_pairs / (true_pairs + false_pairs), 4) if true_pairs + false_pairs else 1.0
    )
    # What the run did with those pairs: of its near-duplicate drops, how many copy the
    # sample they name (the keeper links one pair per drop; the pair precision above counts
    # every confirmed pair, links or not).
    linked = [r for r in dec if "near_duplicate" in (r.get("reasons") or [])]
    same = sum(group.get(r["id"]) == group.get(r.get("duplicate_of")) for r in linked)
    out["near_duplicate_drops"] = {
        "dropped": len(linked),
        "copy_their_kept_sample": same,
        "precision": round(same / len(linked), 4) if linked else None,
    }
    main = [per[k] for k in ("resize", "reencode", "brightness") if k in per]
    out["near_duplicate_recall_resize_reencode_brightness"] = round(
        sum(v[0] for v in main) / max(1, sum(v[1] for v in main)), 4
    )
    out["radius"] = dedup.near_radius
    out["hashes"] = list(dedup.hashes)
    out["hash_match"] = dedup.match
    out["mirrors"] = dedup.mirrors
    out["min_thumb_corr"] = dedup.min_thumb_corr
    out["signals_by_planted_issue"] = signal_scores(dec, labels)
    # Decisions: how each planted issue ended up.
    fate: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in dec:
        for issue in labels.get(row["id"], {}).get("issues", []) or ["clean"]:
            fate[issue][row["decision"]] += 1
    out["decisions_by_planted_issue"] = {k: dict(v) for k, v in sorted(fate.items())}
    return out
