"""The fixed results shape, and writing it: results.json with predictions.parquet beside it.

Every result dict, whatever the task, has these keys in this order: ``schema``, ``task``,
``dataset``, ``model`` (provenance), ``prompts`` (with fingerprint), ``seed``,
``bootstrap``, ``metrics`` (each ``{"value", "ci": [low, high]}``), then task-specific
blocks, ``notes`` and ``per_sample`` (columns; written to parquet, never to JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.data.formats import atomic_write_bytes
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.models.loader import LoadedClip

SCHEMA = "clipaudit.eval/1"
RESULTS_NAME = "results.json"
PREDICTIONS_NAME = "predictions.parquet"
# Keys a result carries for comparison in memory but never writes to JSON.
IN_MEMORY = ("per_sample", "units")


def dataset_block(
    name: str, info: dict[str, Any], n: int, errors: dict[str, str], **extra: Any
) -> dict[str, Any]:
    skipped: dict[str, int] = {}
    for code in errors.values():
        skipped[code] = skipped.get(code, 0) + 1
    return {"name": name, **info, "n": n, **extra, "skipped": skipped}


def skipped_note(errors: dict[str, str], unit: str, n_kept: int, n_captions: int = 0) -> str | None:
    """The console- and notes-line for unreadable samples left out, or None when none were."""
    if not errors:
        return None
    counts: dict[str, int] = {}
    for code in errors.values():
        counts[code] = counts.get(code, 0) + 1
    why = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
    n = len(errors)
    captions = f" with their {n_captions} caption{'s' * (n_captions != 1)}" if n_captions else ""
    return (
        f"{n} {unit}{'s' * (n != 1)} could not be read ({why}) and {'were' if n != 1 else 'was'} "
        f"left out{captions}; the metrics cover the other {n_kept}."
    )


def record(
    *,
    task: str,
    dataset: dict[str, Any],
    clip: LoadedClip,
    prompts: dict[str, Any] | None,
    boot: BootstrapSpec,
    unit: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "dataset": dataset,
        "model": clip.provenance.to_dict(),
        "prompts": prompts,
        "seed": boot.seed,
        "bootstrap": boot.describe(unit),
        "metrics": body["metrics"],
    }
    for key, value in body.items():
        if key not in out and key not in ("notes", "per_sample"):
            out[key] = value
    out["notes"] = body.get("notes", [])
    out["predictions"] = PREDICTIONS_NAME
    out["per_sample"] = body["per_sample"]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if k not in IN_MEMORY}
    return json.dumps(shown, indent=2, ensure_ascii=False, default=_plain)


def predictions_table(result: dict[str, Any]) -> pa.Table:
    cols = {k: _plain(v) for k, v in result["per_sample"].items()}
    return pa.Table.from_pydict(cols)


def write_result(result: dict[str, Any], folder: str | Path) -> Path:
    """Write ``results.json`` and ``predictions.parquet`` into ``folder``; return the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(predictions_table(result), folder / PREDICTIONS_NAME)
    target = folder / RESULTS_NAME
    atomic_write_bytes(target, (to_json(result) + "\n").encode("utf-8"))
    return target
