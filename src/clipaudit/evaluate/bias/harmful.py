"""Harmful labels (CLIP paper §7): classify every image among a label set and report
P(prediction ∈ harmful category | group), with Wilson score intervals (not degenerate at 0
hits, unlike a bootstrap of a small group), for each category and for their union
(``any``), with and without the optional classes (the "child" ablation): adding a class
can only take predictions away from others, so the ablation shows how much of a rate rests
on the label set's design.

The evidence for a verdict (``tests``): the groups with the highest and lowest rate, a
two-sided Fisher exact p between them, and that p times the G(G−1)/2 pairs they were
picked from (Bonferroni, ``p_adjusted``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.evaluate.bias.context import BiasContext
from clipaudit.evaluate.bias.metrics import fisher_p, wilson_interval
from clipaudit.evaluate.bias.registry import ProbeResult, probe


def _rates(ctx: BiasContext, hit: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    n, k = int(mask.sum()), int(hit[mask].sum())
    return {
        "value": k / n if n else float("nan"),
        "ci": wilson_interval(k, n, ctx.boot.confidence),
        "ci_method": "wilson",
        "n": n,
        "hits": k,
        "small_n": n < ctx.min_group_size,
    }


def _extremes(groups: dict[str, Any]) -> dict[str, Any]:
    """The highest and lowest rate, and the Fisher exact p between them (Bonferroni over
    the pairs of groups they were picked from)."""
    rates = {g: v for g, v in groups.items() if v["n"] > 0}
    hi = max(rates, key=lambda g: rates[g]["value"])
    lo = min(rates, key=lambda g: rates[g]["value"])
    a, b = rates[hi], rates[lo]
    p = fisher_p(a["hits"], a["n"], b["hits"], b["n"]) if hi != lo else 1.0
    pairs = max(1, len(rates) * (len(rates) - 1) // 2)
    return {
        "high": hi,
        "low": lo,
        "ratio": a["value"] / b["value"] if b["value"] else None,  # None: the lowest is 0
        "p": p,
        "pairs": pairs,
        "p_adjusted": min(1.0, p * pairs),
        "test": "two-sided Fisher exact, Bonferroni over the pairs",
    }


@probe("harmful", role="labels")
def harmful_probe(ctx: BiasContext) -> ProbeResult:
    ps = ctx.prompt_set("labels")
    res = ProbeResult()
    cats = {**ps.spec.categories}
    cats["any"] = sorted({c for members in ps.spec.categories.values() for c in members})
    variants = {"without_optional": False}
    if ps.spec.optional:
        variants["with_optional"] = True
    columns = [ctx.groups(c) for c in ctx.group_columns]
    detail: dict[str, Any] = {
        "optional": ps.spec.optional,
        "categories": cats,
        "min_group_size": ctx.min_group_size,
        "variants": {},
        "tests": {},
    }
    for variant, with_opt in variants.items():
        names = ps.classnames(with_optional=with_opt)
        head = np.stack([ctx.head(ps.texts(c)) for c in names])
        pred = np.asarray(names, dtype=object)[(ctx.emb @ head.T).argmax(axis=1)]
        res.per_sample[f"label:{variant}"] = pred.astype(str)
        block: dict[str, Any] = {"prediction_shares": _shares(pred, names)}
        tests: dict[str, Any] = {}
        for cat, members in cats.items():
            hit = np.isin(pred, members).astype(np.float64)
            by: dict[str, Any] = {"overall": _rates(ctx, hit, np.ones(len(hit), bool))}
            for g in columns:
                by[g.column] = {
                    name: _rates(ctx, hit, g.codes == a) for a, name in enumerate(g.names)
                }
                for name, v in by[g.column].items():
                    res.metrics[f"harmful.{cat}.{g.column}={name}.{variant}"] = {
                        "value": v["value"],
                        "ci": v["ci"],
                    }
                    res.rows.append(_row(ps.name, g.column, name, variant, cat, v))
                tests.setdefault(cat, {})[g.column] = _extremes(by[g.column])
            block[cat] = by
        detail["variants"][variant] = block
        detail["tests"][variant] = tests
    if len(variants) == 2:
        detail["ablation"] = _ablation(detail["variants"], cats, [g.column for g in columns])
    res.detail = detail
    res.notes.append(
        "Harmful-label rate = P(argmax label ∈ category | group); 'any' is the union of the "
        f"categories; optional classes ({', '.join(ps.spec.optional) or 'none'}) are added "
        "only in the with_optional variant. Intervals: Wilson score; evidence: two-sided Fisher "
        "exact p between the highest and lowest group, Bonferroni over the pairs of groups."
    )
    return res


def _shares(pred: np.ndarray, names: list[str]) -> dict[str, float]:
    return {n: float(np.mean(pred == n)) for n in names}


def _ablation(
    variants: dict[str, Any], cats: dict[str, list[str]], columns: list[str]
) -> dict[str, Any]:
    """with_optional − without_optional, per category and group."""
    a, b = variants["with_optional"], variants["without_optional"]
    out: dict[str, Any] = {}
    for cat in cats:
        out[cat] = {"overall": a[cat]["overall"]["value"] - b[cat]["overall"]["value"]}
        for col in columns:
            out[cat][col] = {
                g: a[cat][col][g]["value"] - b[cat][col][g]["value"] for g in a[cat][col]
            }
    return out


def _row(
    prompt: str, column: str, group: str, variant: str, cat: str, v: dict[str, Any]
) -> dict[str, Any]:
    ci = v.get("ci")
    return {
        "probe": "harmful",
        "prompt": prompt,
        "column": column,
        "group": group,
        "k": None,
        "variant": variant,
        "metric": f"rate:{cat}",
        "value": v["value"],
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
    }
