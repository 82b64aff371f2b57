"""Classification datasets: class folders, a label column, or a Hugging Face ClassLabel.

* Class folders (torchvision ``ImageFolder``): ``ROOT/<class>/<image>``, classes in sorted
  folder order; ``--classes`` may rename them (same count, same order, as CLIP_benchmark
  does for ImageNet's wnid folders).
* Any reader format with a label column (``--label-column``; guessed from ``label``,
  ``labels``, ``class``, ``cls``, ``target``): string labels are class names, integer
  labels index ``--classes``.
* A Hugging Face dataset with a ``ClassLabel``: its names are the classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.data import Dataset, ReadOptions, decode_image, open_dataset
from clipaudit.data.imagefolder import METADATA_NAMES
from clipaudit.data.sample import IMAGE_EXTS
from clipaudit.errors import ClipauditError
from clipaudit.evaluate.images import ImageSet

LABEL_CANDIDATES = ("label", "labels", "class", "cls", "target")


@dataclass
class ClassificationData:
    """Images with one label each (an index into ``classnames``)."""

    name: str
    images: ImageSet
    labels: np.ndarray
    classnames: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def dataset_images(ds: Dataset, keep: set[str], ids: list[str]) -> ImageSet:
    """Re-read ``ds`` and decode the samples whose id is in ``keep``, in ``ids`` order."""

    def read() -> Iterator[tuple[Image.Image | None, str | None]]:
        for s in ds:
            if s.id in keep:
                dec = decode_image(s.image) if s.error is None else None
                if dec is None:
                    yield None, s.error
                else:
                    yield dec.image, dec.error

    return ImageSet(ids, read)


def is_class_folders(path: Path) -> bool:
    if not path.is_dir() or any((path / n).is_file() for n in METADATA_NAMES):
        return False
    if any(path.rglob("metadata.jsonl")) or any(path.rglob("metadata.csv")):
        return False
    return any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTS


def _class_folders(path: Path, classnames: list[str] | None) -> ClassificationData:
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in path.iterdir() if _is_image(p))
    if loose:
        raise ClipauditError(
            f"The image {loose[0]!r} in {str(path)!r} is outside every class folder; move it "
            "into the folder of its class."
        )
    for name in folders:
        if not any(_is_image(p) for p in (path / name).rglob("*")):
            raise ClipauditError(
                f"The class folder {name!r} in {str(path)!r} has no images; add images or "
                "remove the folder."
            )
    names = list(folders)
    index = {f: i for i, f in enumerate(folders)}
    if classnames is not None:
        names = list(classnames)
        if set(folders) <= set(classnames):
            index = {f: classnames.index(f) for f in folders}
        elif len(classnames) != len(folders):
            raise ClipauditError(
                f"{len(classnames)} class names were given for {len(folders)} class folders in "
                f"{str(path)!r}; give one name per folder, in sorted folder order."
            )
        # Otherwise folder i (sorted) is classnames[i], as CLIP_benchmark maps ImageNet wnids.
    ds = open_dataset(path, format="imagefolder")
    ids, labels = [], []
    for s in ds:
        top = s.id.split("/", 1)[0]
        # Hidden folders (.ipynb_checkpoints, .thumbnails) are not classes, as above: their
        # images were read anyway and their folder name had no class (a KeyError).
        if top in index:
            ids.append(s.id)
            labels.append(index[top])
    return _finish(str(path), ds, ids, labels, names, "class folders")


def _labels_from_column(
    ds: Dataset, column: str, classnames: list[str] | None
) -> tuple[list[str], list[int], list[str]]:
    feature = getattr(ds, "_labels", {}).get(column)
    if classnames is None and feature is not None:
        classnames = list(feature.names)
    ids: list[str] = []
    raw: list[Any] = []
    for s in ds:
        if column not in s.meta:
            if column in ds.columns() and not ids:
                raise ClipauditError(
                    f"The column {column!r} of {ds.describe()!r} is read as each sample's "
                    "image, caption or id, not as a label; " + _label_fields_hint(list(s.meta))
                )
            fields = ", ".join(sorted(s.meta))
            raise ClipauditError(
                f"The sample {s.id!r} has no label field {column!r}; "
                + (
                    f"its fields are {fields}: give every sample a {column!r} field or pass "
                    "--label-column with the field that holds its class."
                    if fields
                    else f"it has no field besides image, caption and id: add {column!r} to it."
                )
            )
        ids.append(s.id)
        raw.append(s.meta[column])
    if classnames is None:
        if any(not isinstance(v, str) for v in raw):
            raise ClipauditError(
                f"The labels in {column!r} are not class names; pass --classes with the class "
                "list they index."
            )
        classnames = sorted(set(raw))
    index = {c: i for i, c in enumerate(classnames)}
    labels = []
    for sid, v in zip(ids, raw, strict=True):
        if isinstance(v, bool) or v is None:
            i = None
        elif isinstance(v, (int, np.integer)):
            i = int(v) if 0 <= int(v) < len(classnames) else None
        else:
            i = index.get(str(v))
        if i is None:
            raise ClipauditError(
                f"The label {v!r} of sample {sid!r} is not in the class list ({len(classnames)} "
                f"classes: {', '.join(classnames[:5])}{', …' if len(classnames) > 5 else ''}); "
                "fix the label or add the class to --classes."
            )
        labels.append(i)
    return ids, labels, classnames


def _finish(
    name: str, ds: Dataset, ids: list[str], labels: list[int], classnames: list[str], how: str
) -> ClassificationData:
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classnames))
    empty = [classnames[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ClipauditError(
            f"The class {empty[0]!r} has no images in {name!r}; remove it from the class list "
            "or add images of it."
        )
    images = dataset_images(ds, set(ids), ids)
    info = {"source": name, "format": ds.format, "labels_from": how}
    return ClassificationData(name, images, np.asarray(labels, np.int64), classnames, info)


def load_classification(
    source: Any,
    format: str | None = None,
    options: ReadOptions | None = None,
    label_column: str | None = None,
    classnames: list[str] | None = None,
) -> ClassificationData:
    """Open a classification dataset in any of the layouts in the module docstring."""
    if (
        isinstance(source, (str, Path))
        and label_column is None
        and format in (None, "imagefolder")
        and is_class_folders(Path(source))
    ):
        return _class_folders(Path(source), classnames)
    ds = open_dataset(source, format=format, options=options)
    column = label_column or _guess_label_column(ds)
    ids, labels, names = _labels_from_column(ds, column, classnames)
    if not ids:
        raise ClipauditError(f"The dataset {ds.describe()!r} has no samples.")
    return _finish(ds.describe(), ds, ids, labels, names, f"column {column!r}")


def _label_fields_hint(fields: list[str]) -> str:
    """What to pass instead: the fields that can hold a label, or how to add one."""
    if fields:
        return f"pass --label-column with one of {', '.join(fields)}."
    return (
        "its samples have no field besides image, caption and id: add a label field to each "
        "(then --label-column FIELD), or lay the images out as class folders "
        "ROOT/<class>/<image>."
    )


def _guess_label_column(ds: Dataset) -> str:
    class_labels = list(getattr(ds, "_labels", {}))
    if len(class_labels) == 1:
        return class_labels[0]
    # Labels are fields of a sample's meta: the image, caption and id columns never are.
    first = next(iter(ds), None)
    fields = sorted(first.meta) if first is not None else []
    found = next((c for c in LABEL_CANDIDATES if c in fields), None)
    if found is None:
        raise ClipauditError(
            f"Cannot tell which field of {ds.describe()!r} holds the label; "
            + _label_fields_hint(fields)
        )
    return found
