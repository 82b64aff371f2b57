"""The bundled model knows only the synthetic world: say so when it meets other data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clipaudit.data.formats import Dataset

WORLD_MODELS = ("bundled:world-clip",)
# `clipaudit train` writes this beside the weights; it trains on the synthetic world only.
TRAIN_RECORD = "train.json"


def world_trained(spec: str) -> bool:
    """The bundled model, or a ``local-dir:`` folder that ``clipaudit train`` made (from
    scratch or from the bundled weights): both know only the synthetic world."""
    if spec in WORLD_MODELS:
        return True
    if not spec.startswith("local-dir:"):
        return False
    record = Path(spec[len("local-dir:") :]).expanduser() / TRAIN_RECORD
    try:
        return record.is_file() and "config" in json.loads(record.read_text())
    except (OSError, ValueError):
        return False


def domain_warning(spec: str, dataset: Dataset) -> str | None:
    """One sentence when a world-trained model is pointed at data the world did not make."""
    from clipaudit.world.video import VIDEO_MARKER
    from clipaudit.world.write import WORLD_MARKER

    if not world_trained(spec):
        return None
    for shard in dataset.shards()[:1]:
        for sample in dataset.read_shard(shard):
            # The image world and the video world (`clipaudit demo --video`) alike.
            if sample.meta.get("world") in (WORLD_MARKER, VIDEO_MARKER):
                return None
            break
    return (
        f"warning: {spec} was trained only on clipaudit's synthetic world and "
        f"{dataset.describe()!r} was not made by `clipaudit world`, so its scores there mean "
        "little; pass --model with a CLIP trained on real images for real data."
    )


def model_fit(spec: str, dataset: Dataset) -> dict[str, Any] | None:
    """What run.json records about whether the model knows the data: for a world-trained
    model, whether the data comes from the world (None for any other model: the user's
    choice is trusted)."""
    if not world_trained(spec):
        return None
    note = domain_warning(spec, dataset)
    return {"model": spec, "fits_data": note is None, "note": note}
