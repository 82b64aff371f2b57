"""Performance disparity: zero-shot accuracy on a label column, by group and by the
intersection of all group columns, with fairlearn's ``MetricFrame`` conventions
(difference and ratio between groups and to overall), an Aequitas-style flag when a
group's ratio to the reference group (the largest) leaves [τ, 1/τ], and a warning for
groups under the minimum size (reported, never dropped). Intervals: percentile bootstrap
over images. Prompt sensitivity: the between-group difference with each template alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.context import BiasContext, Groups, ci_block
from clipaudit.evaluate.bias.metrics import disparity
from clipaudit.evaluate.bias.registry import ProbeResult, probe
from clipaudit.evaluate.bootstrap import distribution, mean_stat


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


def _stats(acc: np.ndarray, overall: np.ndarray) -> dict[str, np.ndarray]:
    hi, lo = np.nanmax(acc, axis=1), np.nanmin(acc, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        to = np.minimum(acc / overall[:, None], overall[:, None] / acc)
        return {
            "difference": hi - lo,
            "ratio": lo / hi,
            "difference_to_overall": np.nanmax(np.abs(acc - overall[:, None]), axis=1),
            "ratio_to_overall": np.nanmin(to, axis=1),
        }


def disparity_for(ctx: BiasContext, correct: np.ndarray, g: Groups) -> dict[str, Any]:
    n_groups, n = len(g.names), len(correct)
    full = np.arange(n)[None, :]
    acc = by_group_accuracy(correct, g.codes, n_groups, full)[0]
    overall = float(correct.mean())
    point = disparity(dict(zip(g.names, acc.tolist(), strict=True)), overall)

    def stat_of(key: str) -> Any:
        return lambda idx: _stats(
            by_group_accuracy(correct, g.codes, n_groups, idx), correct[idx].mean(axis=1)
        )[key]

    conf = ctx.boot.confidence
    sizes = np.bincount(g.codes, minlength=n_groups)
    ref = int(sizes.argmax())
    groups: dict[str, Any] = {}
    for a, name in enumerate(g.names):
        mask = g.codes == a
        sub = correct[mask]
        dist = distribution(mean_stat(sub), len(sub), ctx.boot)
        ratio_ref = float(acc[a] / acc[ref]) if acc[ref] else float("nan")
        groups[name] = {
            **ci_block(acc[a], dist, conf),
            "n": int(sizes[a]),
            "small_n": bool(sizes[a] < ctx.min_group_size),
            "ratio_to_reference": ratio_ref,
            "flag": bool(not ctx.tau <= ratio_ref <= 1 / ctx.tau),
        }
    out: dict[str, Any] = {
        "overall": overall,
        "reference": g.names[ref],
        "tau": ctx.tau,
        "by_group": groups,
    }
    for key, value in point.items():
        out[key] = ci_block(value, distribution(stat_of(key), n, ctx.boot), conf)
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
