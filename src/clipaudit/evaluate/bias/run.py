"""Run bias probes: embed the images once, run each probe, assemble the fixed result shape.

``results.json`` (:mod:`clipaudit.evaluate.results` shape, task ``bias``),
``predictions.parquet`` (per image: id, group columns, concept scores, predicted labels)
and ``bias_table.parquet`` (per probe × prompt × group × k × metric, with intervals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.context import BiasContext
from clipaudit.evaluate.bias.data import BiasData
from clipaudit.evaluate.bias.metrics import check_k
from clipaudit.evaluate.bias.promptsets import PromptSet, load_prompt_set
from clipaudit.evaluate.bias.registry import PROBE_ROLES, PROBES, get_probes
from clipaudit.evaluate.bias.verdicts import BiasThresholds, verdicts
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.evaluate.images import Embedded, embed_images
from clipaudit.evaluate.results import dataset_block, record, write_result
from clipaudit.models.loader import LoadedClip

TABLE_NAME = "bias_table.parquet"
# Default prompt sets per role: for the world, and for real face data.
WORLD_PROMPTS = {
    "concepts": "world-occupations",
    "labels": "world-harmful",
    "classes": "world-occupations",
}
DEFAULT_PROMPTS = {"concepts": "berg2022", "labels": "clip-harmful", "classes": "gender"}


def resolve_prompts(
    probes: list[str], given: dict[str, str | None], world: bool
) -> dict[str, PromptSet]:
    defaults = WORLD_PROMPTS if world else DEFAULT_PROMPTS
    roles = {PROBE_ROLES[p] for p in probes}
    out: dict[str, PromptSet] = {}
    for role in sorted(roles):
        spec = given.get(role) or defaults[role]
        ps = load_prompt_set(spec)
        wanted = {
            "concepts": ("concepts",),
            "labels": ("labels",),
            "classes": ("classes", "groups", "concepts"),
        }
        if ps.spec.kind not in wanted[role]:
            raise ClipauditError(
                f"The prompt set {ps.name!r} is of kind {ps.spec.kind!r}; the {role} role needs "
                f"one of kind {' or '.join(wanted[role])}."
            )
        out[role] = ps
    return out


def run_bias(
    clip: LoadedClip,
    data: BiasData,
    *,
    probes: str = "all",
    prompts: dict[str, str | None] | None = None,
    group_columns: list[str] | None = None,
    label_column: str | None = None,
    boot: BootstrapSpec | None = None,
    k: int = 100,
    ks: tuple[int, ...] | None = None,
    permutations: int = 1000,
    min_group_size: int = 30,
    tau: float = 0.8,
    world: bool = False,
    embedded: Embedded | None = None,
    batch_size: int = 64,
    thresholds: BiasThresholds | None = None,
) -> dict[str, Any]:
    """Every requested probe on ``data``, as one result dict in the fixed shape."""
    names = get_probes(probes)
    boot = boot or BootstrapSpec()
    group_columns = group_columns or (["group"] if world else [])
    if not group_columns:
        raise ClipauditError("No group column was given; pass --group-column (one or more).")
    if "disparity" in names and label_column is None:
        label_column = "occupation" if world else None
        if label_column is None:
            raise ClipauditError("The disparity probe needs --label-column (the zero-shot target).")
    sets = resolve_prompts(names, prompts or {}, world)
    for c in group_columns:
        if c not in data.columns:
            raise ClipauditError(
                f"There is no group column {c!r}; the dataset's columns are "
                f"{', '.join(sorted(data.columns))}."
            )
        if "skew" in names:  # refuse a degenerate k before the images are embedded
            check_k(k, len(data.images.ids), len(set(data.columns[c])))
    emb = embedded or embed_images(clip, data.images, batch_size=batch_size)
    keep = np.flatnonzero(emb.ok)
    if len(keep) == 0:
        raise ClipauditError(f"No image of {data.name!r} could be decoded.")
    columns = {c: [v[i] for i in keep] for c, v in data.columns.items()}
    ctx = BiasContext(
        emb=emb.emb[keep],
        ids=[data.images.ids[i] for i in keep],
        columns=columns,
        group_columns=group_columns,
        encode_texts=clip.encode_texts,
        prompts=sets,
        boot=boot,
        k=k,
        ks=ks,
        permutations=permutations,
        min_group_size=min_group_size,
        tau=tau,
        label_column=label_column,
    )
    metrics: dict[str, Any] = {}
    body: dict[str, Any] = {"probes": names}
    per_sample: dict[str, Any] = {"id": ctx.ids, **{c: columns[c] for c in group_columns}}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in names:
        r = PROBES[name](ctx)
        metrics.update(r.metrics)
        body[name] = r.detail
        per_sample.update(r.per_sample)
        rows.extend(r.rows)
        notes.extend(r.notes)
    body["verdicts"] = verdicts(body, thresholds or BiasThresholds())
    body.update(metrics=metrics, per_sample=per_sample, notes=notes, table=rows)
    info = {**data.info, "group_columns": group_columns, "label_column": label_column}
    return record(
        task="bias",
        dataset=dataset_block(data.name, info, len(keep), emb.errors),
        clip=clip,
        prompts={role: ps.describe() for role, ps in sets.items()},
        boot=boot,
        unit="image",
        body=body,
    )


def write_bias_result(result: dict[str, Any], folder: str | Path) -> Path:
    """results.json + predictions.parquet, and the long table beside them."""
    folder = Path(folder)
    shown = {key: v for key, v in result.items() if key != "table"}
    shown["table"] = TABLE_NAME
    path = write_result(shown, folder)
    rows = result.get("table", [])
    cols = [
        "probe",
        "prompt",
        "column",
        "group",
        "k",
        "variant",
        "metric",
        "value",
        "ci_low",
        "ci_high",
    ]
    table = pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in cols})
    pq.write_table(table, folder / TABLE_NAME)
    return path
