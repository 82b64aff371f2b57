"""Performance disparity: zero-shot accuracy on a label column, by group and by the
intersection of all group columns, with fairlearn's ``MetricFrame`` conventions
(difference and ratio between groups and to overall), an Aequitas-style flag when a
group's ratio to the reference group (the largest) leaves [τ, 1/τ], and a warning for
groups under the minimum size (reported, never dropped). Prompt sensitivity: the
between-group difference with each template alone.

Evidence and intervals:

* each group's accuracy: a Wilson score interval (not degenerate at 0 or n correct);
* each group against the reference: the difference, and a two-sided Fisher exact p,
  Holm-adjusted over the G − 1 comparisons (``p_vs_reference_holm``): what a verdict reads;
* difference (max − min) and ratio (min / max): a percentile bootstrap of max − min is
  biased upward (each resample picks its own extremes), so its interval excludes 0 even
  for random groups. The interval is that of the pair picked on the full data, fixed once
  (``between``), with images resampled within each group (sizes kept), at confidence
  1 − (1 − c)/m for the m = G(G−1)/2 pairs it was picked from (Bonferroni); likewise the
  to-overall measures for the group picked (m = G).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.context import BiasContext, Groups, ci_block
from clipaudit.evaluate.bias.metrics import disparity, fisher_p, holm, wilson_interval
from clipaudit.evaluate.bias.registry import ProbeResult, probe
from clipaudit.evaluate.bootstrap import CHUNK, BootstrapSpec, distribution, interval, mean_stat


def by_group_accuracy(
    correct: np.ndarray, codes: np.ndarray, n_groups: int, idx: np.ndarray
) -> np.ndarray:
    """(B, G) accuracy per group on resampled index rows ``idx`` (B, n); NaN if empty."""
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * n_groups + codes[idx]).ravel()
    tot = np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups)
    hit = np.bincount(flat, weights=correct[idx].ravel(), minlength=b * n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hit.reshape(b, n_groups) / tot


def stratified_resamples(
    codes: np.ndarray, n_groups: int, spec: BootstrapSpec
) -> Iterator[np.ndarray]:
    """(B, n) index rows resampling each group's images within the group (sizes kept)."""
    members = [np.flatnonzero(codes == a) for a in range(n_groups)]
    members = [m for m in members if len(m)]
    rng = np.random.default_rng(spec.seed)
    done = 0
    while done < spec.n:
        b = min(CHUNK, spec.n - done)
        yield np.concatenate([m[rng.integers(0, len(m), (b, len(m)))] for m in members], axis=1)
        done += b


def _fixed_stats(acc: np.ndarray, overall: float) -> dict[str, Any]:
    """For each between-group measure, the group(s) that give its value on the full data and
    the same measure on those groups, fixed, as a function of resampled (B, G) accuracies
    and (B,) overall accuracies."""
    hi = int(np.nanargmax(acc))
    others = np.where(np.arange(len(acc)) == hi, np.inf, acc) if len(acc) > 1 else acc
    lo = int(np.nanargmin(others))  # two groups even when all tie (the interval is not [0, 0])
    dev = acc - overall
    g_d = int(np.nanargmax(np.abs(dev)))
    sign = 1.0 if dev[g_d] >= 0 else -1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        to = np.minimum(acc / overall, overall / acc)
    g_r = int(np.nanargmin(np.nan_to_num(to, nan=0.0)))
    below = bool(acc[g_r] <= overall)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(num / den, np.float64)

    return {
        "difference": ((hi, lo), lambda a, o: a[:, hi] - a[:, lo]),
        "ratio": ((hi, lo), lambda a, o: ratio(a[:, lo], a[:, hi])),
        "difference_to_overall": ((g_d,), lambda a, o: sign * (a[:, g_d] - o)),
        "ratio_to_overall": (
            (g_r,),
            lambda a, o: ratio(a[:, g_r], o) if below else ratio(o, a[:, g_r]),
        ),
    }


def disparity_for(ctx: BiasContext, correct: np.ndarray, g: Groups) -> dict[str, Any]:
    n_groups, n = len(g.names), len(correct)
    full = np.arange(n)[None, :]
    acc = by_group_accuracy(correct, g.codes, n_groups, full)[0]
    overall = float(correct.mean())
    point = disparity(dict(zip(g.names, acc.tolist(), strict=True)), overall)

    conf = ctx.boot.confidence
    sizes = np.bincount(g.codes, minlength=n_groups)
    hits = np.bincount(g.codes, weights=correct, minlength=n_groups).round().astype(int)
    ref = int(sizes.argmax())
    p_ref = [
        fisher_p(int(hits[a]), int(sizes[a]), int(hits[ref]), int(sizes[ref]))
        for a in range(n_groups)
        if a != ref
    ]
    p_holm = iter(holm(p_ref))
    p_raw = iter(p_ref)
    groups: dict[str, Any] = {}
    for a, name in enumerate(g.names):
        ratio_ref = float(acc[a] / acc[ref]) if acc[ref] else float("nan")
        groups[name] = {
            "value": float(acc[a]),
            "ci": wilson_interval(int(hits[a]), int(sizes[a]), conf),
            "ci_method": "wilson",
            "n": int(sizes[a]),
            "hits": int(hits[a]),
            "small_n": bool(sizes[a] < ctx.min_group_size),
            "ratio_to_reference": ratio_ref,
            "flag": bool(not ctx.tau <= ratio_ref <= 1 / ctx.tau),
            "difference_to_reference": float(acc[a] - acc[ref]),
            "p_vs_reference": None if a == ref else next(p_raw),
            "p_vs_reference_holm": None if a == ref else next(p_holm),
        }
    out: dict[str, Any] = {
        "overall": overall,
        "reference": g.names[ref],
        "tau": ctx.tau,
        "test": "two-sided Fisher exact against the reference, Holm-adjusted over the groups",
        "by_group": groups,
    }
    # Resample within groups once; every between-group measure reads the same resamples.
    boot_acc, boot_overall = [], []
    for idx in stratified_resamples(g.codes, n_groups, ctx.boot):
        boot_acc.append(by_group_accuracy(correct, g.codes, n_groups, idx))
        boot_overall.append(correct[idx].mean(axis=1))
    a_b = np.concatenate(boot_acc) if boot_acc else np.zeros((0, n_groups))
    o_b = np.concatenate(boot_overall) if boot_overall else np.zeros(0)
    pairs = max(1, n_groups * (n_groups - 1) // 2)
    for key, (picked, stat) in _fixed_stats(acc, overall).items():
        m = pairs if len(picked) == 2 else max(1, n_groups)
        level = 1 - (1 - conf) / m
        block: dict[str, Any] = {
            "value": float(point[key]),
            "ci": interval(stat(a_b, o_b), level),
            "confidence": level,
        }
        if len(picked) == 2:
            block["between"] = [g.names[picked[0]], g.names[picked[1]]]
        else:
            block["group"] = g.names[picked[0]]
        out[key] = block
    return out


def intersect(columns: list[Groups]) -> Groups:
    labels = [
        " & ".join(f"{g.column}={g.names[c]}" for g, c in zip(columns, row, strict=True))
        for row in zip(*(g.codes for g in columns), strict=True)
    ]
    return Groups.of(" x ".join(g.column for g in columns), labels)


def zero_shot_correct(
    ctx: BiasContext, templates: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    ps = ctx.prompt_set("classes")
    label_col = ctx.label_column
    if label_col is None:
        raise ClipauditError("The disparity probe needs a label column; pass --label-column.")
    labels = ctx.groups(label_col)  # checks the column exists
    labels_arr = np.array([labels.names[c] for c in labels.codes])
    names = ps.classnames()
    missing = sorted(set(labels.names) - set(names))
    if missing:
        raise ClipauditError(
            f"The label {missing[0]!r} of column {label_col!r} is not a class of prompt set "
            f"{ps.name!r}; pass a prompt set whose classes are the label values."
        )
    rows = []
    for c in names:
        texts = (
            ps.texts(c)
            if templates is None
            else [x for t in templates for x in ps.template_texts(c, t)]
        )
        rows.append(ctx.head(texts))
    pred = np.asarray(names, dtype=object)[(ctx.emb @ np.stack(rows).T).argmax(axis=1)]
    return pred.astype(str), (pred == labels_arr).astype(np.float64)


@probe("disparity", role="classes")
def disparity_probe(ctx: BiasContext) -> ProbeResult:
    ps = ctx.prompt_set("classes")
    res = ProbeResult()
    pred, correct = zero_shot_correct(ctx)
    res.per_sample["prediction"] = pred
    res.per_sample["correct"] = correct.astype(bool)
    columns = [ctx.groups(c) for c in ctx.group_columns]
    if len(columns) > 1:
        columns.append(intersect(columns))
    detail: dict[str, Any] = {"label_column": ctx.label_column, "metric": "accuracy"}
    detail["overall"] = ci_block(
        correct.mean(),
        distribution(mean_stat(correct), len(correct), ctx.boot),
        ctx.boot.confidence,
    )
    res.metrics["disparity.accuracy.overall"] = detail["overall"]
    for g in columns:
        d = disparity_for(ctx, correct, g)
        d["prompt_sensitivity"] = _sensitivity(ctx, ps.spec.templates, g)
        detail[g.column] = d
        for key in ("difference", "ratio", "difference_to_overall", "ratio_to_overall"):
            res.metrics[f"disparity.accuracy.{g.column}.{key}"] = d[key]
        for name, v in d["by_group"].items():
            res.metrics[f"disparity.accuracy.{g.column}={name}"] = {
                "value": v["value"],
                "ci": v["ci"],
            }
            ci = v["ci"]
            res.rows.append(
                {
                    "probe": "disparity",
                    "prompt": ps.name,
                    "column": g.column,
                    "group": name,
                    "k": None,
                    "variant": "all_templates",
                    "metric": "accuracy",
                    "value": v["value"],
                    "ci_low": ci[0] if ci else None,
                    "ci_high": ci[1] if ci else None,
                }
            )
            if v["small_n"]:
                res.notes.append(
                    f"Group {g.column}={name} has only {v['n']} images (< {ctx.min_group_size}); "
                    "its accuracy is reported but uncertain."
                )
            if v["flag"]:
                res.notes.append(
                    f"Group {g.column}={name}: accuracy ratio to the reference {d['reference']!r} "
                    f"is {v['ratio_to_reference']:.3f}, outside [{ctx.tau}, {1 / ctx.tau:.3f}]."
                )
    res.detail = detail
    return res


def _sensitivity(ctx: BiasContext, templates: list[str], g: Groups) -> dict[str, Any]:
    """Between-group accuracy difference with each template alone."""
    if len(templates) < 2:
        return {}
    values = {}
    for t in templates:
        _, correct = zero_shot_correct(ctx, [t])
        acc = by_group_accuracy(correct, g.codes, len(g.names), np.arange(len(correct))[None, :])[0]
        values[t] = float(np.nanmax(acc) - np.nanmin(acc))
    v = np.array(list(values.values()))
    return {
        "metric": "accuracy difference (max - min)",
        "by_template": values,
        "min": float(v.min()),
        "max": float(v.max()),
        "std": float(v.std(ddof=1)),
    }
