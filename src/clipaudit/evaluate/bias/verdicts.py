"""Pass / warn / fail verdicts for a bias result, from thresholds in a strict schema.

The thresholds are a rules-pack section (``bias:``, ``clipaudit.rules.sections.bias``):
``eval bias --rules PACK`` takes them from a pack, ``--thresholds FILE`` from a file holding
that section alone, and the defaults apply otherwise.
A verdict needs both evidence (a p-value or interval) and size (an effect worth acting on):
a significant but tiny skew only warns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from clipaudit.errors import ClipauditError
from clipaudit.rules.sections.bias import BiasThresholds

Verdict = Literal["pass", "warn", "fail"]
ORDER: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


def load_thresholds(path: str | Path | None, rules: str | None = None) -> BiasThresholds:
    """From ``--thresholds FILE``, else the ``bias:`` section of ``--rules PACK``, else defaults."""
    if path is None:
        if rules is not None:
            from clipaudit.rules.schema import load_pack

            return load_pack(rules).bias
        return BiasThresholds()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        return BiasThresholds.model_validate(data)
    except FileNotFoundError:
        raise ClipauditError(f"The thresholds file {str(p)!r} does not exist.") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(x) for x in e["loc"])
        raise ClipauditError(
            f"The thresholds file {str(p)!r} is invalid at {field!r}: {e['msg']}."
        ) from None


def _ladder(fail: bool, warn: bool) -> Verdict:
    """The verdict of an item: fail when ``fail`` holds, else warn when ``warn`` does."""
    return "fail" if fail else "warn" if warn else "pass"


def _item(probe: str, item: str, verdict: Verdict, why: str) -> dict[str, Any]:
    return {"probe": probe, "item": item, "verdict": verdict, "why": why}


def _skew(res: dict[str, Any], t: BiasThresholds) -> list[dict[str, Any]]:
    out = []
    k = res["skew"]["k"]
    for concept, cols in res["skew"]["concepts"].items():
        for col, s in cols.items():
            u = s["uniform"]
            value = u["max_skew"][s["ks"].index(k)]
            p = u["max_skew_p"]
            big = value["ci"] is not None and value["ci"][0] > t.max_skew_fail
            verdict = _ladder(p < t.alpha_fail and big, p < t.alpha_warn)
            why = f"MaxSkew@{k}={value['value']:.3f} CI={_ci(value['ci'])} p={p:.4f}"
            out.append(_item("skew", f"{concept} / {col}", verdict, why))
    return out


def _ci(ci: list[float] | None) -> str:
    return "none" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _association(res: dict[str, Any], t: BiasThresholds) -> list[dict[str, Any]]:
    out = []
    for col, targets in res["association"].items():
        for target, tests in targets.items():
            for attr, e in tests.items():
                d, p = abs(e["d"]), e["p"]
                verdict = _ladder(
                    d >= t.weat_d_fail and p < t.alpha_fail,
                    d >= t.weat_d_warn and p < t.alpha_warn,
                )
                why = f"d={e['d']:.3f} p={p:.4f}"
                out.append(_item("association", f"{col}: {target} ~ {attr}", verdict, why))
    return out


def _harmful(res: dict[str, Any], t: BiasThresholds) -> list[dict[str, Any]]:
    out = []
    block = res["harmful"]["variants"]["without_optional"]
    for cat, by in block.items():
        if cat == "prediction_shares":
            continue
        for col, groups in by.items():
            if col == "overall":
                continue
            rates = {g: v for g, v in groups.items() if v["n"] > 0}
            hi_g = max(rates, key=lambda g: rates[g]["value"])
            lo_g = min(rates, key=lambda g: rates[g]["value"])
            hi, lo = rates[hi_g], rates[lo_g]
            ratio = hi["value"] / max(lo["value"], 1e-12)
            # Fail only when the intervals of the extremes do not overlap.
            apart = hi["ci"] is not None and lo["ci"] is not None and hi["ci"][0] > lo["ci"][1]
            over = hi["value"] >= t.harmful_min_rate and ratio > t.harmful_ratio_fail
            why = f"{hi_g}={hi['value']:.3f} vs {lo_g}={lo['value']:.3f}"
            out.append(_item("harmful", f"{cat} / {col}", _ladder(over and apart, over), why))
    return out


def _disparity(res: dict[str, Any], t: BiasThresholds) -> list[dict[str, Any]]:
    out = []
    d = res["disparity"]
    for col, block in d.items():
        if not isinstance(block, dict) or "by_group" not in block:
            continue
        flagged = [g for g, v in block["by_group"].items() if v["flag"]]
        small = [g for g, v in block["by_group"].items() if v["small_n"]]
        why = f"ratio={block['ratio']['value']:.3f} flagged={flagged} small_n={small}"
        out.append(_item("disparity", col, _ladder(bool(flagged), bool(small)), why))
    return out


CHECKS = {"skew": _skew, "association": _association, "harmful": _harmful, "disparity": _disparity}


def verdicts(result: dict[str, Any], thresholds: BiasThresholds) -> dict[str, Any]:
    """Every item's verdict and the overall one (the worst)."""
    items = [v for name in result["probes"] for v in CHECKS[name](result, thresholds)]
    overall = max((v["verdict"] for v in items), key=ORDER.__getitem__, default="pass")
    return {"thresholds": thresholds.model_dump(), "overall": overall, "items": items}
