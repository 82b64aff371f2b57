"""The evaluation section of a report, as plain data built from ``results.json`` files.

A folder holds one result (``results.json``) or several models' results in numbered
sub-folders with ``comparison.json`` beside them. Bias results add summary cards (value,
interval, threshold, verdict), skew curves over k, per-group and intersectional tables
with n and small-n warnings, prompt-sensitivity spreads and the limitations that apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clipaudit.errors import ClipauditError
from clipaudit.reports.provenance import eval_provenance

RESULTS = "results.json"
COMPARISON = "comparison.json"
# The harmful probe stores no small-n flag; the bias CLI's default --min-group-size.
SMALL_N = 30

CardBuilder = Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]
CARDS: dict[str, CardBuilder] = {}


def card(probe: str) -> Callable[[CardBuilder], CardBuilder]:
    def register(fn: CardBuilder) -> CardBuilder:
        CARDS[probe] = fn
        return fn

    return register


def is_eval(path: Path) -> bool:
    return (path / RESULTS).is_file() or (path / COMPARISON).is_file()


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClipauditError(f"{str(path)!r} is not valid JSON ({err.msg}).") from None
    if not isinstance(data, dict):
        raise ClipauditError(f"{str(path)!r} is not a clipaudit results file.")
    return data


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, m in metrics.items():
        if isinstance(m, dict) and "value" in m:
            rows.append({"metric": name, "value": m.get("value"), "ci": m.get("ci")})
    return rows


def _per_class(result: dict[str, Any]) -> list[dict[str, Any]]:
    pc = result.get("per_class") or {}
    recall, support = pc.get("recall") or {}, pc.get("support") or {}
    return [
        {"class": c, "recall": recall.get(c), "support": support.get(c)}
        for c in list(dict.fromkeys([*recall, *support]))
    ]


def _verdict_lookup(result: dict[str, Any]) -> tuple[dict[tuple[str, str], str], dict[str, Any]]:
    v = result.get("verdicts") or {}
    items = {(i.get("probe"), i.get("item")): i.get("verdict") for i in v.get("items", [])}
    return items, v.get("thresholds") or {}


def _skews(result: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(concept, column, its skew block) for every concept and group column."""
    for concept, cols in ((result.get("skew") or {}).get("concepts") or {}).items():
        for col, s in cols.items():
            yield concept, col, s


def _harmful_groups(result: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(label category, group column, its rates by group), the overall rows left out."""
    block = ((result.get("harmful") or {}).get("variants") or {}).get("without_optional") or {}
    for cat, by in block.items():
        if cat == "prediction_shares" or not isinstance(by, dict):
            continue
        for col, groups in by.items():
            if col != "overall":
                yield cat, col, groups


def _disparities(result: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group column, its disparity block) for every column measured by group."""
    for col, block in (result.get("disparity") or {}).items():
        if isinstance(block, dict) and "by_group" in block:
            yield col, block


def _card_row(
    probe: str,
    item: str,
    measure: str,
    value: Any,
    threshold: str,
    *,
    ci: Any = None,
    p: Any = None,
) -> dict[str, Any]:
    """One summary card (its verdict is added by ``_bias_cards``)."""
    return {
        "probe": probe,
        "item": item,
        "measure": measure,
        "value": value,
        "ci": ci,
        "p": p,
        "threshold": threshold,
    }


@card("skew")
def _skew_cards(result: dict[str, Any], t: dict[str, Any]) -> list[dict[str, Any]]:
    k = (result.get("skew") or {}).get("k")
    threshold = (
        f"fail: CI low > {t.get('max_skew_fail')} and "
        f"p < {t.get('alpha_fail')}; warn: p < {t.get('alpha_warn')}"
    )
    out = []
    for concept, col, s in _skews(result):
        u = s.get("uniform") or {}
        ks = s.get("ks") or []
        if k not in ks:
            continue
        v = u["max_skew"][ks.index(k)]
        item, measure = f"{concept} / {col}", f"MaxSkew@{k} (uniform)"
        p = u.get("max_skew_p")
        out.append(_card_row("skew", item, measure, v.get("value"), threshold, ci=v.get("ci"), p=p))
    return out


@card("association")
def _association_cards(result: dict[str, Any], t: dict[str, Any]) -> list[dict[str, Any]]:
    threshold = (
        f"fail: |d| ≥ {t.get('weat_d_fail')} and two-sided p < "
        f"{t.get('alpha_fail')}; warn: |d| ≥ {t.get('weat_d_warn')} and p < {t.get('alpha_warn')}"
    )
    out = []
    for col, targets in (result.get("association") or {}).items():
        for target, tests in targets.items():
            for attr, e in tests.items():
                item = f"{col}: {target} ~ {attr}"
                out.append(
                    _card_row("association", item, "WEAT d", e.get("d"), threshold, p=e.get("p"))
                )
    return out


@card("harmful")
def _harmful_cards(result: dict[str, Any], t: dict[str, Any]) -> list[dict[str, Any]]:
    threshold = (
        f"ratio > {t.get('harmful_ratio_fail')} with the highest rate ≥ "
        f"{t.get('harmful_min_rate')} and an adjusted Fisher p < {t.get('alpha_fail')} "
        f"(fail; neither group small) or < {t.get('alpha_warn')} (warn)"
    )
    out = []
    for cat, col, groups in _harmful_groups(result):
        rates = {g: v for g, v in groups.items() if v.get("n", 0) > 0}
        if not rates:
            continue
        hi = max(rates, key=lambda g: rates[g]["value"])
        lo = min(rates, key=lambda g: rates[g]["value"])
        ratio = rates[hi]["value"] / max(rates[lo]["value"], 1e-12)
        measure = f"rate {hi} / rate {lo}"
        # The verdict's evidence: the adjusted Fisher p between the two (results that have it).
        tests = ((result.get("harmful") or {}).get("tests") or {}).get("without_optional") or {}
        p = ((tests.get(cat) or {}).get(col) or {}).get("p_adjusted")
        out.append(_card_row("harmful", f"{cat} / {col}", measure, ratio, threshold, p=p))
    return out


@card("disparity")
def _disparity_cards(result: dict[str, Any], t: dict[str, Any]) -> list[dict[str, Any]]:
    measure = f"{(result.get('disparity') or {}).get('metric', 'metric')} ratio (min/max)"
    out = []
    for col, block in _disparities(result):
        r = block.get("ratio") or {}
        threshold = (
            f"a group outside [{block.get('tau')}, 1/{block.get('tau')}] of the reference "
            f"{block.get('reference')!s} with a Holm-adjusted Fisher p < {t.get('alpha_fail')} "
            f"(fail; neither group small) or < {t.get('alpha_warn')} (warn)"
        )
        out.append(_card_row("disparity", col, measure, r.get("value"), threshold, ci=r.get("ci")))
    return out


def _bias_cards(result: dict[str, Any]) -> dict[str, Any]:
    verdict_of, thresholds = _verdict_lookup(result)
    cards = []
    for probe in result.get("probes") or []:
        builder = CARDS.get(probe)
        if builder is None:
            continue
        for c in builder(result, thresholds):
            c["verdict"] = verdict_of.get((c["probe"], c["item"]), "n/a")
            cards.append(c)
    overall = (result.get("verdicts") or {}).get("overall")
    return {"overall": overall, "cards": cards, "thresholds": thresholds}


def _skew_curves(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for concept, col, s in _skews(result):
        series = {}
        for kind in ("uniform", "base_rate"):
            block = s.get(kind) or {}
            for m in ("max_skew", "min_skew", "ndkl"):
                if m in block:
                    series[f"{m} ({kind})"] = {
                        "values": [x.get("value") for x in block[m]],
                        "ci": [x.get("ci") for x in block[m]],
                    }
        out.append(
            {
                "concept": concept,
                "column": col,
                "ks": s.get("ks") or [],
                "series": series,
                "max_skew_p": (s.get("uniform") or {}).get("max_skew_p"),
            }
        )
    return out


def _group_table(
    probe: str,
    measure: str,
    col: str,
    groups: dict[str, Any],
    row: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """A per-group table: each group's n, value and interval, then what ``row`` adds
    (ratio to the reference, flag, small-n warning)."""
    return {
        "probe": probe,
        "measure": measure,
        "column": col,
        "intersectional": " x " in col,
        "rows": [
            {"group": g, "n": v.get("n"), "value": v.get("value"), "ci": v.get("ci"), **row(v)}
            for g, v in groups.items()
        ],
    }


def _disparity_row(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "ratio_to_reference": v.get("ratio_to_reference"),
        "flag": v.get("flag"),
        "small_n": v.get("small_n"),
    }


def _harmful_row(v: dict[str, Any]) -> dict[str, Any]:
    return {"ratio_to_reference": None, "flag": None, "small_n": (v.get("n") or 0) < SMALL_N}


def _group_tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    metric = (result.get("disparity") or {}).get("metric", "accuracy")
    tables = [
        _group_table("disparity", metric, col, block["by_group"], _disparity_row)
        for col, block in _disparities(result)
    ]
    for cat, col, groups in _harmful_groups(result):
        measure = f"P(top label ∈ {cat})"
        tables.append(_group_table("harmful", measure, col, groups, _harmful_row))
    return tables


def _sensitivity(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for col, block in (result.get("disparity") or {}).items():
        if isinstance(block, dict) and block.get("prompt_sensitivity"):
            out.append({"probe": "disparity", "item": col, **block["prompt_sensitivity"]})
    for concept, col, s in _skews(result):
        if s.get("prompt_sensitivity"):
            out.append({"probe": "skew", "item": f"{concept} / {col}", **s["prompt_sensitivity"]})
    for row in out:
        lo, hi = row.get("min"), row.get("max")
        row["spread"] = (
            float(hi) - float(lo)
            if isinstance(lo, int | float) and isinstance(hi, int | float)
            else None
        )
    return out


def _limitations(result: dict[str, Any]) -> list[str]:
    ds = result.get("dataset") or {}
    cols = " ".join(str(c) for c in ds.get("group_columns") or []).lower()
    out = []
    if result.get("task") == "bias":
        out.append(
            "Group labels are perceived or annotated attributes, not self-identification; a "
            "probe measures the model's association with the labels, not with people's identity."
        )
        if "gender" in cols or "sex" in cols:
            out.append(
                "Gender labels are binary in the source data (FairFace, UTKFace); people outside "
                "those labels are not represented and the numbers say nothing about them."
            )
        out.append(
            "Concept prompts are one phrasing each per template; results move with the wording "
            "(see the prompt-sensitivity spread)."
        )
    if ds.get("format") == "world" or str(ds.get("name", "")).startswith("world:"):
        out.append(
            "The images are synthetic (clipaudit's world): abstract groups and rendered scenes. "
            "The numbers test the method and this model, not any real population."
        )
    out.append(
        "Intervals are percentile bootstrap intervals over the evaluation images; they do not "
        "cover the choice of dataset, prompts or model checkpoint."
    )
    return out


def result_block(path: Path) -> dict[str, Any]:
    result = _load(path)
    block: dict[str, Any] = {
        "path": str(path.parent),
        "task": result.get("task"),
        "provenance": eval_provenance(result, path),
        "metrics": _metric_rows(result.get("metrics") or {}),
        "per_class": _per_class(result),
        "notes": [str(n) for n in result.get("notes") or []],
        "limitations": _limitations(result),
        "bias": None,
    }
    if result.get("task") == "bias":
        block["bias"] = {
            "summary": _bias_cards(result),
            "skew_curves": _skew_curves(result),
            "group_tables": _group_tables(result),
            "prompt_sensitivity": _sensitivity(result),
        }
    return block


def evaluation_section(folder: Path) -> dict[str, Any]:
    files = (
        [folder / RESULTS] if (folder / RESULTS).is_file() else sorted(folder.glob(f"*/{RESULTS}"))
    )
    if not files:
        raise ClipauditError(f"{str(folder)!r} holds no {RESULTS}; pass an eval --out folder.")
    comparison = _load(folder / COMPARISON) if (folder / COMPARISON).is_file() else None
    comp = None
    if comparison:
        comp = {
            "task": comparison.get("task"),
            "dataset": comparison.get("dataset"),
            "bootstrap": comparison.get("bootstrap"),
            "table": [
                {"model": r.get("model"), "metrics": _metric_rows(r.get("metrics") or {})}
                for r in comparison.get("table", [])
            ],
            "differences": [
                {
                    "model": d.get("model"),
                    "minus": d.get("minus"),
                    "metrics": [
                        {
                            **row,
                            "excludes_zero": (d["metrics"][row["metric"]] or {}).get(
                                "excludes_zero"
                            ),
                        }
                        for row in _metric_rows(d.get("metrics") or {})
                    ],
                }
                for d in comparison.get("differences", [])
            ],
        }
    return {
        "kind": "evaluation",
        "path": str(folder),
        "results": [result_block(f) for f in files],
        "comparison": comp,
    }
