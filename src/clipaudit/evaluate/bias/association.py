"""Association (WEAT on images, as iEAT): targets X, Y are the image sets of two groups,
attributes A, B the text embeddings of two prompt classes (every template × phrase).

Pairs of attribute classes come from the prompt set's ``pairs``; with none, each class is
tested against all the others. Groups: the two values of a two-group column, otherwise
each group against the rest. d > 0 means X sits closer to A than Y does.

The p-value ``p`` is two-sided (P(|mean_X s − mean_Y s| ≥ |observed|) over re-partitions),
matching the verdict on |d|: which group is X (the first name in sorted order) changes the
sign of d, never p or the verdict. The one-sided iEAT p (X closer to A) is kept as
``p_one_sided``.
"""

from __future__ import annotations

from typing import Any

from clipaudit.evaluate.bias.context import BiasContext
from clipaudit.evaluate.bias.metrics import association, weat_effect_size, weat_p_values
from clipaudit.evaluate.bias.registry import ProbeResult, probe


def _attribute_pairs(
    classes: list[str], pairs: list[tuple[str, str]]
) -> list[tuple[str, list[str], list[str]]]:
    if pairs:
        return [(f"{a}|{b}", [a], [b]) for a, b in pairs]
    return [(f"{c}|rest", [c], [o for o in classes if o != c]) for c in classes]


@probe("association", role="concepts")
def association_probe(ctx: BiasContext) -> ProbeResult:
    ps = ctx.prompt_set("concepts")
    res = ProbeResult()
    detail: dict[str, Any] = {}
    tests = _attribute_pairs(ps.classnames(), ps.spec.pairs)
    for col in ctx.group_columns:
        g = ctx.groups(col)
        if len(g.names) == 2:
            targets = [(f"{g.names[0]}|{g.names[1]}", g.codes == 0, g.codes == 1)]
        else:
            targets = [(f"{n}|rest", g.codes == a, g.codes != a) for a, n in enumerate(g.names)]
        detail[col] = {}
        for tname, xm, ym in targets:
            for aname, a_cls, b_cls in tests:
                a = ctx.text_rows([t for c in a_cls for t in ps.texts(c)])
                b = ctx.text_rows([t for c in b_cls for t in ps.texts(c)])
                s = association(ctx.emb, a, b)
                d = weat_effect_size(s[xm], s[ym])
                # The iEAT convention: 10,000 re-partitions when not enumerated.
                p, p_one, method, used = weat_p_values(s[xm], s[ym], seed=ctx.boot.seed)
                entry = {
                    "d": d,
                    "p": p,
                    "alternative": "two-sided",
                    "p_one_sided": p_one,
                    "p_method": method,
                    "partitions": used,
                    "n_x": int(xm.sum()),
                    "n_y": int(ym.sum()),
                }
                detail[col].setdefault(tname, {})[aname] = entry
                res.metrics[f"association.{col}.{tname}.{aname}.d"] = {"value": d, "ci": None}
                res.rows.append(
                    {
                        "probe": "association",
                        "prompt": aname,
                        "column": col,
                        "group": tname,
                        "k": None,
                        "variant": method,
                        "metric": "weat_d",
                        "value": d,
                        "ci_low": None,
                        "ci_high": None,
                    }
                )
                res.rows.append({**res.rows[-1], "metric": "weat_p", "value": p})
    res.detail = detail
    res.notes.append(
        "WEAT/iEAT: s(w,A,B) = mean cos(w,A) − mean cos(w,B); d = (mean_X s − mean_Y s) / "
        "std_{X∪Y} s (ddof=1); p is two-sided (|mean_X s − mean_Y s|, consistent with the "
        "verdict on |d|, independent of group order) over size-preserving re-partitions of "
        "X∪Y, exact when C(|X|+|Y|, |X|) ≤ 10,000, else sampled with (1+hits)/(1+n); "
        "p_one_sided is the iEAT one-sided p (X closer to A)."
    )
    return res
