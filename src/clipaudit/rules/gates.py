"""Quality gates on Great Expectations, built from the rules pack.

GX stays at this edge: the curation code hands over plain tables and gets back plain
dicts. The input gate checks what came in (unique ids, decodable share, caption share); the
output gate checks what the decisions promise (kept rows meet the pack's thresholds, no two
kept rows share a duplicate group, and every input row has exactly one decision).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clipaudit.data.sample import SOFT_READ_ERRORS
from clipaudit.rules.schema import Pack


def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    logging.disable(logging.INFO)  # GX announces its temporary docs folder at INFO
    try:
        ctx = gx.get_context(mode="ephemeral")
    finally:
        logging.disable(logging.NOTSET)
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:
        pass
    return ctx


def _validate(ctx: Any, name: str, df: pd.DataFrame, expectations: list[Any]) -> dict[str, Any]:
    import great_expectations as gx

    asset = ctx.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = gx.ExpectationSuite(name=f"{name}_gate")
    for e in expectations:
        suite.add_expectation(e)
    result = batch.validate(suite)
    checks = []
    for r in result.results:
        cfg = r.expectation_config
        # Plain numbers: numpy scalars printed as "np.float64(0.75)" in the error line.
        observed = {
            k: _plain(r.result.get(k))
            for k in ("observed_value", "unexpected_count", "element_count")
            if k in r.result
        }
        checks.append(
            {
                "expectation": cfg.type,
                "kwargs": {k: v for k, v in cfg.kwargs.items() if k != "batch_id"},
                "success": bool(r.success),
                "observed": observed,
            }
        )
    return {"success": bool(result.success), "checks": checks}


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", None) == 0 else value


GATED_CODES = ("near_duplicate", "exact_duplicate", "low_alignment", "too_small")


def marked_codes(reasons: pa.ChunkedArray | pa.Array) -> dict[str, np.ndarray]:
    """``marked:CODE`` → whether each row's reasons hold CODE, for the codes the output gate
    checks; read from the list column without making a Python list per row."""
    arr = reasons.combine_chunks() if isinstance(reasons, pa.ChunkedArray) else reasons
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy()
    out = {}
    for code in GATED_CODES:
        hit = np.zeros(len(arr), dtype=bool)
        hit[parents[pc.equal(flat, code).to_numpy(zero_copy_only=False)]] = True
        out[f"marked:{code}"] = hit
    return out


def run_gates(
    signals: pd.DataFrame, decisions: pd.DataFrame, pack: Pack, alignment_cut: float | None
) -> dict[str, Any]:
    """Both gates; the result is JSON-ready. ``alignment_cut`` is the resolved threshold."""
    import great_expectations as gx

    E = gx.expectations
    ctx = _context()
    sig = pd.DataFrame(
        {
            "id": signals["id"].astype(str),
            # A soft reader code (bad_metadata) leaves the image decoded and scored.
            "decodable": (
                (signals["error"].isna() | signals["error"].isin(list(SOFT_READ_ERRORS))).astype(
                    float
                )
                if "error" in signals
                else 1.0
            ),
            "has_caption": (
                signals.get("caption_chars", pd.Series(0, index=signals.index)).fillna(0) > 0
            ).astype(float),
        }
    )
    g = pack.gates
    input_gate = _validate(
        ctx,
        "input",
        sig,
        [
            E.ExpectColumnValuesToBeUnique(column="id"),
            E.ExpectColumnMeanToBeBetween(column="decodable", min_value=g.min_decodable_share),
            E.ExpectColumnMeanToBeBetween(column="has_caption", min_value=g.min_caption_share),
        ],
    )
    kept = decisions[decisions["decision"].isin(["keep", "flag"])].copy()
    kept["dup_group"] = kept["duplicate_of"].fillna(kept["id"])

    # The output gate checks what the pack promises of the kept rows: a cut whose code the
    # pack keeps (keep-all) promises nothing; one it flags promises that every kept row
    # past the cut carries the code, so rows marked with it (`marked:CODE` columns, from
    # `marked_codes`) are set aside and the rest must meet the cut. Without the marks, a
    # pack that flags duplicates for review failed its own gate on every run.
    def drops(code: str) -> bool:
        return pack.action(code) != "keep"

    def unmarked(*codes: str) -> pd.Series:
        out = pd.Series(True, index=kept.index)
        for code in codes:
            col = f"marked:{code}"
            if pack.action(code) == "flag" and col in kept:
                out &= ~kept[col].astype(bool)
        return out

    out_exp: list[Any] = []
    if drops("near_duplicate") and drops("exact_duplicate"):
        kept.loc[~unmarked("near_duplicate", "exact_duplicate"), "dup_group"] = None
        out_exp.append(E.ExpectColumnValuesToBeUnique(column="dup_group"))
    if "pixel_hash" in kept and drops("exact_duplicate"):
        kept.loc[~unmarked("exact_duplicate"), "pixel_hash"] = None
        out_exp.append(E.ExpectColumnValuesToBeUnique(column="pixel_hash"))
    if alignment_cut is not None and "alignment" in kept and drops("low_alignment"):
        # A judge's "faithful" answer lifts low_alignment: those rows are kept on purpose.
        if "judge_faithful" in kept:
            kept.loc[kept["judge_faithful"] == "yes", "alignment"] = None
        kept.loc[~unmarked("low_alignment"), "alignment"] = None
        out_exp.append(E.ExpectColumnValuesToBeBetween(column="alignment", min_value=alignment_cut))
    if pack.quality.min_side and "min_side" in kept and drops("too_small"):
        kept.loc[~unmarked("too_small"), "min_side"] = None
        out_exp.append(
            E.ExpectColumnValuesToBeBetween(column="min_side", min_value=pack.quality.min_side)
        )
    output_gate = _validate(
        ctx,
        "output",
        kept[[c for c in ("id", "dup_group", "pixel_hash", "alignment", "min_side") if c in kept]],
        out_exp,
    )
    accounting = _validate(
        ctx,
        "accounting",
        decisions[["id", "decision"]],
        [
            E.ExpectTableRowCountToEqual(value=len(signals)),
            E.ExpectColumnValuesToBeInSet(
                column="decision", value_set=["keep", "flag", "drop", "error"]
            ),
            E.ExpectColumnValuesToBeUnique(column="id"),
        ],
    )
    parts = {"input": input_gate, "output": output_gate, "accounting": accounting}
    return {**parts, "success": all(v["success"] for v in parts.values())}


def first_failure(gates: dict[str, Any]) -> str | None:
    for name in ("input", "output", "accounting"):
        for check in gates[name]["checks"]:
            if not check["success"]:
                kw = ", ".join(f"{k}={v}" for k, v in check["kwargs"].items())
                return (
                    f"the {name} gate failed: {check['expectation']}({kw}) observed "
                    f"{check['observed']}"
                )
    return None
