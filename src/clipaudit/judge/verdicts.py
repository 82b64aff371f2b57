"""A judge's verdicts at decide time: read from ``RUN/judge/verdicts.parquet`` and applied
to each sample's reason codes as the pack's ``judge:`` section allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.rules.schema import Pack

VERDICTS_FILE = Path("judge") / "verdicts.parquet"
COLUMNS = {"faithful": "judge_faithful", "watermark": "judge_watermark", "nsfw": "judge_nsfw"}


def load_verdicts(run_path: Path) -> dict[str, dict[str, str]]:
    """id → {rubric: verdict} of the parsed answers (empty without a judge run). The file
    also lists the samples that got no usable answer (status unparseable or failed, no
    verdict): those are skipped."""
    f = run_path / VERDICTS_FILE
    if not f.is_file():
        return {}
    out: dict[str, dict[str, str]] = {}
    for r in pq.read_table(f).to_pylist():
        if r["verdict"] is not None and r.get("status", "ok") == "ok":
            out.setdefault(str(r["id"]), {})[str(r["rubric"])] = str(r["verdict"])
    return out


def apply_verdicts(
    ids: list[str], reasons: list[list[str]], verdicts: dict[str, dict[str, str]], pack: Pack
) -> dict[str, Any]:
    """Change ``reasons`` in place where a verdict confirms or overturns a signal; return
    the verdict columns for the decision rows (one per shipped rubric, null where unasked).

    faithful: "yes" lifts low_alignment (keep_faithful); "no" adds judge_unfaithful
    (drop_unfaithful). watermark: "yes" adds judge_watermark (flag_watermark). nsfw: "yes"
    adds judge_nsfw."""
    j = pack.judge
    cols: dict[str, list[str | None]] = {c: [None] * len(ids) for c in COLUMNS.values()}
    for row, sid in enumerate(ids):
        v = verdicts.get(sid)
        if not v:
            continue
        r = reasons[row]
        for rubric, col in COLUMNS.items():
            cols[col][row] = v.get(rubric)
        if v.get("faithful") == "yes" and j.keep_faithful and "low_alignment" in r:
            r.remove("low_alignment")
        if v.get("faithful") == "no" and j.drop_unfaithful and "judge_unfaithful" not in r:
            r.append("judge_unfaithful")
        if v.get("watermark") == "yes" and j.flag_watermark and "judge_watermark" not in r:
            r.append("judge_watermark")
        if v.get("nsfw") == "yes" and "judge_nsfw" not in r:
            r.append("judge_nsfw")
    return {c: pa.array(v, pa.string()) for c, v in cols.items()}
