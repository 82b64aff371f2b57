"""Comparing models on one task and dataset: a table and paired bootstrap differences."""

from __future__ import annotations

from typing import Any

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import BootstrapSpec, paired_difference
from clipaudit.evaluate.tasks import get_task


def _units_key(result: dict[str, Any]) -> tuple[str, ...]:
    return tuple(result["per_sample"]["id"])


def compare_results(results: list[dict[str, Any]], boot: BootstrapSpec) -> dict[str, Any]:
    """Metrics of every model, and each model minus the first on the same resamples."""
    if not results:
        raise ClipauditError("There are no results to compare; pass at least one --model.")
    task = get_task(results[0]["task"])
    base = results[0]
    for r in results[1:]:
        if r["task"] != base["task"] or _units_key(r) != _units_key(base):
            raise ClipauditError(
                f"The results of {r['model']['spec']!r} cover other samples than those of "
                f"{base['model']['spec']!r}; compare models only on the same task and data."
            )
    base_stats, n_units = task.stats(base)
    table = [
        {
            "model": r["model"]["spec"],
            "weights_sha256": r["model"]["weights_sha256"],
            "metrics": r["metrics"],
        }
        for r in results
    ]
    differences = []
    for r in results[1:]:
        stats, _ = task.stats(r)
        differences.append(
            {
                "model": r["model"]["spec"],
                "minus": base["model"]["spec"],
                "metrics": {
                    name: paired_difference(base_stats[name], stats[name], n_units, boot)
                    for name in base_stats
                },
            }
        )
    return {
        "task": base["task"],
        "dataset": base["dataset"]["name"],
        "seed": boot.seed,
        "bootstrap": boot.describe(base["bootstrap"]["unit"] + ", paired"),
        "table": table,
        "differences": differences,
    }
