"""Images with demographic label columns, from a registry of layouts.

* ``world``: the synthetic world's balanced ``eval-people`` split (columns ``group``,
  ``occupation``);
* ``fairface``: a FairFace label CSV (``file,age,gender,race[,service_test]``), image paths
  relative to the CSV's folder;
* ``utkface``: a folder of ``age_gender_race_date.jpg`` files (gender 0 male / 1 female;
  race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others); age also binned as FairFace does;
* ``dataset``: any format :func:`clipaudit.data.open_dataset` reads, columns from
  ``Sample.meta``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.images import ImageSet

FAIRFACE_AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69")
UTK_GENDER = {"0": "Male", "1": "Female"}
UTK_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


@dataclass
class BiasData:
    """Ordered images and, per column, one label string per image."""

    name: str
    images: ImageSet
    columns: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> list[str]:
        try:
            return self.columns[name]
        except KeyError:
            raise ClipauditError(
                f"The dataset {self.name!r} has no column {name!r}; its columns are "
                f"{', '.join(sorted(self.columns))}."
            ) from None


Layout = Callable[..., BiasData]
LAYOUTS: dict[str, Layout] = {}


def layout(name: str) -> Callable[[Layout], Layout]:
    def deco(fn: Layout) -> Layout:
        LAYOUTS[name] = fn
        return fn

    return deco


def _files(paths: list[Path]) -> Callable[[], Iterator[tuple[Image.Image | None, str | None]]]:
    def read() -> Iterator[tuple[Image.Image | None, str | None]]:
        for p in paths:
            try:
                with Image.open(p) as im:
                    yield im.convert("RGB"), None
            except FileNotFoundError:
                yield None, "missing_image"
            except OSError:
                yield None, "decode_error"

    return read


@layout("world")
def world_people(n: int = 2000, seed: int = 1, size: int = 256, **_: Any) -> BiasData:
    from clipaudit.evaluate.world import world_images
    from clipaudit.world.splits import scenes

    truths = [s.truth() for s in scenes("eval-people", n, seed=seed)]
    cols = {
        "group": [t["group"] for t in truths],
        "occupation": [t["occupation"] for t in truths],
    }
    info = {"source": "world split 'eval-people'", "format": "world", "seed": seed, "size": size}
    return BiasData("world:eval-people", world_images("eval-people", n, seed, size), cols, info)


def fairface_age_bin(age: int) -> str:
    for b in FAIRFACE_AGE_BINS:
        lo, hi = (int(x) for x in b.split("-"))
        if lo <= age <= hi:
            return b
    return "more than 70"


@layout("fairface")
def fairface(path: str | Path, **_: Any) -> BiasData:
    csv_path = Path(path)
    if not csv_path.is_file():
        raise ClipauditError(f"The FairFace label file {str(csv_path)!r} does not exist.")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"file", "age", "gender", "race"}
    if not rows or not need <= set(rows[0]):
        raise ClipauditError(
            f"The FairFace label file {str(csv_path)!r} needs the columns file, age, gender and "
            "race; check its header."
        )
    extra = [c for c in rows[0] if c != "file"]
    cols = {c: [str(r[c]) for r in rows] for c in extra}
    paths = [csv_path.parent / r["file"] for r in rows]
    images = ImageSet([r["file"] for r in rows], _files(paths))
    return BiasData(str(csv_path), images, cols, {"source": str(csv_path), "format": "fairface"})


@layout("utkface")
def utkface(path: str | Path, **_: Any) -> BiasData:
    root = Path(path)
    if not root.is_dir():
        raise ClipauditError(f"The UTKFace folder {str(root)!r} does not exist.")
    paths: list[Path] = []
    cols: dict[str, list[str]] = {"age": [], "age_bin": [], "gender": [], "race": []}
    skipped = 0
    for p in sorted(root.rglob("*.jpg")):
        parts = p.name.split("_")
        ok = len(parts) >= 4 and parts[0].isdigit() and parts[1] in UTK_GENDER
        if not ok or parts[2] not in UTK_RACE:
            skipped += 1  # UTKFace has a few files with missing fields in their names
            continue
        paths.append(p)
        cols["age"].append(parts[0])
        cols["age_bin"].append(fairface_age_bin(int(parts[0])))
        cols["gender"].append(UTK_GENDER[parts[1]])
        cols["race"].append(UTK_RACE[parts[2]])
    if not paths:
        raise ClipauditError(
            f"No UTKFace-named images (age_gender_race_date.jpg) were found in {str(root)!r}."
        )
    ids = [str(p.relative_to(root)) for p in paths]
    info = {"source": str(root), "format": "utkface", "unparsed_names": skipped}
    return BiasData(str(root), ImageSet(ids, _files(paths)), cols, info)


@layout("dataset")
def any_dataset(path: str | Path, columns: list[str], **_: Any) -> BiasData:
    from clipaudit.data import open_dataset
    from clipaudit.evaluate.classdata import dataset_images

    ds = open_dataset(path)
    ids: list[str] = []
    cols: dict[str, list[str]] = {c: [] for c in columns}
    for s in ds:
        for c in columns:
            if c not in s.meta:
                raise ClipauditError(
                    f"The sample {s.id!r} has no column {c!r}; its fields are "
                    f"{', '.join(sorted(s.meta)) or 'none'}."
                )
            cols[c].append(str(s.meta[c]))
        ids.append(s.id)
    info = {"source": ds.describe(), "format": ds.format}
    return BiasData(ds.describe(), dataset_images(ds, set(ids), ids), cols, info)


def load_bias_data(name: str, path: str | Path | None = None, **kwargs: Any) -> BiasData:
    try:
        fn = LAYOUTS[name]
    except KeyError:
        raise ClipauditError(
            f"Unknown dataset layout {name!r}; use one of: {', '.join(sorted(LAYOUTS))}."
        ) from None
    return fn(path=path, **kwargs) if path is not None else fn(**kwargs)


def detect_layout(path: str | Path) -> str:
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        with p.open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        if {"file", "age", "gender", "race"} <= set(header):
            return "fairface"
    if p.is_dir() and any(
        len(f.name.split("_")) >= 4 and f.name.split("_")[0].isdigit()
        for f in list(p.glob("*.jpg"))[:20]
    ):
        return "utkface"
    return "dataset"
