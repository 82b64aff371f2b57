"""Retrieval skew: rank images by a concept prompt, measure the groups in the top k.

For each concept × group column × desired distribution (``uniform``: equal opportunity;
``base_rate``: the data's own shares, demographic parity): MaxSkew@k, MinSkew@k, NDKL@k as
curves over k with percentile-bootstrap intervals (images resampled, then re-ranked), and a
label-permutation p-value for MaxSkew@k at the headline k (ranking fixed, group labels
shuffled: P(MaxSkew ≥ observed) under independence of rank and group). Per-group signed
Skew@k with intervals says *which* group is over-represented.

A percentile bootstrap of a max (or min) over groups is biased away from the null: each
resample takes the max again, so under independence the interval of MaxSkew sits above
its own value and excludes 0. The MaxSkew (MinSkew) interval is therefore the interval of
the signed skew of the group that holds the max (min) on the full data, fixed once, at
confidence 1 − (1 − c)/G (Bonferroni over the G groups it was picked from): it holds its
value, and under independence it excludes 0 in at most about 1 − c of runs. NDKL ≥ 0
always, so its interval cannot contain 0: the p-value is the test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.evaluate.bias.context import BiasContext, Groups, ci_block
from clipaudit.evaluate.bias.metrics import check_k, ndkl_curve, skew_from_counts
from clipaudit.evaluate.bias.registry import ProbeResult, probe
from clipaudit.evaluate.bootstrap import resamples

DEFAULT_KS = (10, 20, 50, 100, 200, 500, 1000)


def curve_ks(ctx: BiasContext, n: int, n_groups: int) -> list[int]:
    check_k(ctx.k, n, n_groups)
    if ctx.ks is not None:
        for k in ctx.ks:
            check_k(k, n, n_groups)
        ks = set(ctx.ks)
    else:
        ks = {k for k in DEFAULT_KS if n_groups <= k < n}
    return sorted(ks | {ctx.k})


def _desired(kind: str, codes: np.ndarray, n_groups: int) -> np.ndarray:
    if kind == "uniform":
        return np.full(n_groups, 1.0 / n_groups)
    return np.bincount(codes, minlength=n_groups) / codes.shape[-1]


def _curves(
    ranked: np.ndarray, all_codes: np.ndarray, n_groups: int, ks: list[int], kind: str
) -> dict[str, np.ndarray]:
    """MaxSkew/MinSkew/NDKL at each k for rankings (B, ≥max k) of group codes."""
    kmax = max(ks)
    cum = np.cumsum(np.eye(n_groups, dtype=np.int32)[ranked[:, :kmax]], axis=1)
    desired = np.stack([_desired(kind, c, n_groups) for c in all_codes])  # (B, G)
    sel = cum[:, [k - 1 for k in ks], :]  # (B, K, G)
    sk = skew_from_counts(sel, np.array(ks)[None, :], desired[:, None, :])
    nd = ndkl_curve(cum, desired[:, None, :])
    return {
        "max_skew": np.nanmax(sk, axis=-1),
        "min_skew": np.nanmin(sk, axis=-1),
        "ndkl": nd[:, [k - 1 for k in ks]],
        "skew": sk,  # (B, K, G)
    }


def _perm_p(
    ctx: BiasContext, order: np.ndarray, g: Groups, kind: str, observed: float, seed: int
) -> float:
    if ctx.permutations <= 0:
        return float("nan")
    n_groups, k = len(g.names), ctx.k
    desired = _desired(kind, g.codes, n_groups)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < ctx.permutations:
        b = min(1000, ctx.permutations - done)
        perm = rng.permuted(np.broadcast_to(g.codes, (b, len(g.codes))), axis=1)
        top = perm[:, order[:k]]
        counts = (top[..., None] == np.arange(n_groups)).sum(axis=1)
        stat = np.nanmax(skew_from_counts(counts, k, desired), axis=-1)
        hits += int((stat >= observed - 1e-12).sum())
        done += b
    return (1 + hits) / (1 + ctx.permutations)


def skew_for(ctx: BiasContext, scores: np.ndarray, g: Groups, ks: list[int]) -> dict[str, Any]:
    """Every skew number for one concept's scores and one group column."""
    n, n_groups = len(scores), len(g.names)
    order = np.argsort(-scores, kind="stable")
    ih = ks.index(ctx.k)
    base = dict(zip(g.names, g.base_rate.tolist(), strict=True))
    out: dict[str, Any] = {"ks": ks, "base_rate": base}
    for kind in ("uniform", "base_rate"):
        point = _curves(g.codes[order][None, :], g.codes[None, :], n_groups, ks, kind)
        dists: dict[str, list[np.ndarray]] = {m: [] for m in point}
        for idx in resamples(n, ctx.boot):
            o = np.argsort(-scores[idx], axis=1, kind="stable")
            codes = g.codes[idx]
            c = _curves(np.take_along_axis(codes, o, axis=1), codes, n_groups, ks, kind)
            for m in dists:
                dists[m].append(c[m])
        block: dict[str, Any] = {}
        sk = np.concatenate(dists["skew"]) if dists["skew"] else np.zeros((0, len(ks), n_groups))
        # MaxSkew / MinSkew: the interval of the group holding the extreme on the full data.
        level = 1 - (1 - ctx.boot.confidence) / n_groups
        for m, pick in (("max_skew", np.nanargmax), ("min_skew", np.nanargmin)):
            block[m] = []
            for j in range(len(ks)):
                a = int(pick(point["skew"][0, j]))
                entry = ci_block(point[m][0, j], sk[:, j, a], level)
                block[m].append({**entry, "group": g.names[a], "confidence": level})
        d = np.concatenate(dists["ndkl"]) if dists["ndkl"] else np.zeros((0, len(ks)))
        block["ndkl"] = [
            ci_block(point["ndkl"][0, j], d[:, j], ctx.boot.confidence) for j in range(len(ks))
        ]
        block["skew_by_group"] = {
            name: ci_block(point["skew"][0, ih, a], sk[:, ih, a], ctx.boot.confidence)
            for a, name in enumerate(g.names)
        }
        # Absent from the top k at the headline k: skew −ln(k + 1), the stand-in for −∞.
        top = np.bincount(g.codes[order[: ctx.k]], minlength=n_groups)
        block["absent"] = [name for a, name in enumerate(g.names) if top[a] == 0]
        observed = float(point["max_skew"][0, ih])
        block["max_skew_p"] = _perm_p(ctx, order, g, kind, observed, ctx.boot.seed)
        out[kind] = block
    return out


@probe("skew", role="concepts")
def skew_probe(ctx: BiasContext) -> ProbeResult:
    ps = ctx.prompt_set("concepts")
    res = ProbeResult()
    n = len(ctx.emb)
    columns = [ctx.groups(c) for c in ctx.group_columns]
    detail: dict[str, Any] = {"k": ctx.k, "permutations": ctx.permutations, "concepts": {}}
    for concept in ps.classnames():
        scores = ctx.emb @ ctx.head(ps.texts(concept))
        res.per_sample[f"score:{concept}"] = scores.astype(np.float32)
        per_col: dict[str, Any] = {}
        for g in columns:
            ks = curve_ks(ctx, n, len(g.names))
            s = skew_for(ctx, scores, g, ks)
            s["prompt_sensitivity"] = _sensitivity(ctx, ps.spec.templates, concept, g)
            per_col[g.column] = s
            ih = ks.index(ctx.k)
            for kind in ("uniform", "base_rate"):
                for m in ("max_skew", "min_skew", "ndkl"):
                    key = f"skew.{concept}.{g.column}.{kind}.{m}@{ctx.k}"
                    res.metrics[key] = s[kind][m][ih]
                    for j, k in enumerate(ks):
                        v = s[kind][m][j]
                        res.rows.append(_row(concept, g.column, "", k, kind, m, v))
                for name, v in s[kind]["skew_by_group"].items():
                    res.rows.append(_row(concept, g.column, name, ctx.k, kind, "skew", v))
                res.rows.append(
                    _row(
                        concept,
                        g.column,
                        "",
                        ctx.k,
                        kind,
                        "max_skew_p",
                        {"value": s[kind]["max_skew_p"], "ci": None},
                    )
                )
        detail["concepts"][concept] = per_col
    res.detail = detail
    res.notes.append(
        "Skew_a@k = ln(p_topk(a)/p_desired(a)) (Geyik et al. 2019); a group absent from the "
        "top k (skew −∞ by the definition) is reported as −ln(k+1) and listed under 'absent'. "
        "MaxSkew/MinSkew intervals are those of the group holding the extreme on the full "
        "data, at 1 − (1 − confidence)/G. NDKL uses KL in nats with 0·ln 0 = 0."
    )
    return res


def _sensitivity(ctx: BiasContext, templates: list[str], concept: str, g: Groups) -> dict[str, Any]:
    """MaxSkew@k (uniform) per template alone: the spread is the prompt sensitivity."""
    if len(templates) < 2:
        return {}
    ps = ctx.prompt_set("concepts")
    desired = _desired("uniform", g.codes, len(g.names))
    values = []
    for t in templates:
        order = np.argsort(-(ctx.emb @ ctx.head(ps.template_texts(concept, t))), kind="stable")
        counts = np.bincount(g.codes[order[: ctx.k]], minlength=len(g.names))
        values.append(float(np.nanmax(skew_from_counts(counts, ctx.k, desired))))
    v = np.array(values)
    return {
        "metric": f"max_skew@{ctx.k} (uniform)",
        "by_template": dict(zip(templates, values, strict=True)),
        "min": float(v.min()),
        "max": float(v.max()),
        "std": float(v.std(ddof=1)),
    }


def _row(
    prompt: str, column: str, group: str, k: int, desired: str, metric: str, v: dict[str, Any]
) -> dict[str, Any]:
    ci = v.get("ci")
    return {
        "probe": "skew",
        "prompt": prompt,
        "column": column,
        "group": group,
        "k": k,
        "variant": desired,
        "metric": metric,
        "value": v["value"],
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
    }
