"""Zero-shot classification as a pure function: (model, data, prompts) → result dict.

Logits are 100 · cos(image, class head), CLIP_benchmark's fixed scale (the model's own
logit scale changes no ranking). acc5 exists only with 5 or more classes. Unreadable images
are left out with a note; a class all of whose images are unreadable stays a candidate but
has no recall (null) and is left out of mean per-class recall, with a note naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import (
    BootstrapSpec,
    Stat,
    balanced_recall_stat,
    mean_stat,
    summarise,
)
from clipaudit.evaluate.classdata import ClassificationData
from clipaudit.evaluate.heads import DEFAULT_HEADS, HeadCache
from clipaudit.evaluate.images import Embedded, embed_images
from clipaudit.evaluate.prompts import Prompts
from clipaudit.evaluate.ranking import rank_of, top_k
from clipaudit.evaluate.results import dataset_block, record, skipped_note
from clipaudit.evaluate.tasks import register_task
from clipaudit.models.loader import LoadedClip

LOGIT_SCALE = 100.0


def class_logits(emb: np.ndarray, head: np.ndarray) -> np.ndarray:
    """(N, C) float32 logits, computed in torch like clip-benchmark's ``run_classification``."""
    with torch.inference_mode():
        return (LOGIT_SCALE * torch.from_numpy(emb) @ torch.from_numpy(head).T).numpy()


def classification_stats(per_sample: dict[str, Any], n_classes: int) -> dict[str, Stat]:
    """The headline metrics as bootstrap statistics over samples."""
    stats: dict[str, Stat] = {"acc1": mean_stat(per_sample["correct1"])}
    if n_classes >= 5:
        stats["acc5"] = mean_stat(per_sample["correct5"])
    stats["mean_per_class_recall"] = balanced_recall_stat(
        per_sample["label_index"], per_sample["correct1"], n_classes
    )
    return stats


def classification_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    classnames: list[str],
    ids: list[str],
    boot: BootstrapSpec,
) -> dict[str, Any]:
    """Metrics, per-class recall, confusion matrix and per-sample rows from logits."""
    n_classes = len(classnames)
    ranks = rank_of(logits, labels)
    top = top_k(logits, 5)
    pred = top[:, 0]
    per_sample: dict[str, Any] = {
        "id": list(ids),
        "label": [classnames[i] for i in labels],
        "label_index": labels.astype(np.int64),
        "pred": [classnames[i] for i in pred],
        "rank": ranks.astype(np.int64),
        "correct1": ranks < 1,
        "top5": [[classnames[j] for j in row] for row in top],
        "top5_scores": [
            [float(logits[i, j]) / LOGIT_SCALE for j in row] for i, row in enumerate(top)
        ],
        "score_label": logits[np.arange(len(labels)), labels] / LOGIT_SCALE,
    }
    notes = []
    if n_classes >= 5:
        per_sample["correct5"] = ranks < 5
    else:
        notes.append(f"acc5 is not reported: the dataset has {n_classes} classes (fewer than 5).")
    # Reported as CLIP_benchmark reports them, but a reader should not take them for skill.
    if n_classes == 5:
        notes.append("acc5 is 1.0 by construction: the dataset has exactly 5 classes.")
    if n_classes == 1:
        notes.append("acc1 is 1.0 by construction: the dataset has one class.")
    stats = classification_stats(per_sample, n_classes)
    metrics = {name: summarise(stat, len(labels), boot) for name, stat in stats.items()}
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    recall = {
        c: float(confusion[i, i] / support[i]) if support[i] else None
        for i, c in enumerate(classnames)
    }
    return {
        "metrics": metrics,
        "per_class": {
            "recall": recall,
            "support": dict(zip(classnames, support.tolist(), strict=True)),
        },
        "confusion_matrix": {
            "labels": list(classnames),
            "rows": "true",
            "cols": "predicted",
            "counts": confusion.tolist(),
        },
        "notes": notes,
        "per_sample": per_sample,
    }


def _stats_of(result: dict[str, Any]) -> tuple[dict[str, Stat], int]:
    per_sample = result["per_sample"]
    return classification_stats(per_sample, result["prompts"]["n_classes"]), len(per_sample["id"])


def _unreadable_notes(
    data: ClassificationData, keep: np.ndarray, errors: dict[str, str]
) -> list[str]:
    """How many images were left out and which classes lost every image."""
    notes = []
    note = skipped_note(errors, "image", len(keep))
    if note:
        notes.append(note)
    n = len(data.classnames)
    had = np.bincount(data.labels, minlength=n) > 0
    has = np.bincount(data.labels[keep], minlength=n) > 0
    gone = [data.classnames[i] for i in np.flatnonzero(had & ~has)]
    if gone:
        shown = ", ".join(repr(c) for c in gone[:10]) + (", …" if len(gone) > 10 else "")
        notes.append(
            f"{len(gone)} class{'es' * (len(gone) != 1)} ({shown}) had no readable image: "
            f"{'its' if len(gone) == 1 else 'their'} recall is null and mean_per_class_recall "
            f"averages the other {int(has.sum())} classes; "
            f"{'it stays a candidate' if len(gone) == 1 else 'they stay candidates'} for every "
            "prediction."
        )
    return notes


@register_task("zeroshot_classification", stats=_stats_of)
def zeroshot_classification(
    clip: LoadedClip,
    data: ClassificationData,
    prompts: Prompts,
    *,
    boot: BootstrapSpec | None = None,
    heads: HeadCache | None = None,
    embedded: Embedded | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Zero-shot classification of ``data`` with ``prompts``' heads; no I/O of its own."""
    boot = boot or BootstrapSpec()
    if list(prompts.classnames) != list(data.classnames):
        raise ClipauditError(
            f"The prompts cover classes {list(prompts.classnames)[:5]} but the dataset's classes "
            f"are {data.classnames[:5]}; build the prompts from the dataset's class list."
        )
    head = (heads or DEFAULT_HEADS).get(clip, prompts)
    emb = embedded or embed_images(clip, data.images, batch_size=batch_size)
    keep = np.flatnonzero(emb.ok)
    if keep.size == 0:
        raise ClipauditError(f"No image of {data.name!r} could be decoded; nothing to evaluate.")
    logits = class_logits(emb.emb[keep], head)
    ids = [data.images.ids[i] for i in keep]
    out = classification_metrics(logits, data.labels[keep], data.classnames, ids, boot)
    lost = _unreadable_notes(data, keep, emb.errors)
    out["notes"] = lost + out["notes"]
    return record(
        task="zeroshot_classification",
        dataset=dataset_block(
            data.name, data.info, len(keep), emb.errors, n_classes=len(data.classnames)
        ),
        clip=clip,
        prompts=prompts.describe(),
        boot=boot,
        unit="image",
        body=out,
    )
