"""The bundled model knows only the synthetic world: say so when it meets other data."""

from __future__ import annotations

from clipaudit.data.formats import Dataset

WORLD_MODELS = ("bundled:world-clip",)


def domain_warning(spec: str, dataset: Dataset) -> str | None:
    """One sentence when a world-trained model is pointed at data the world did not make."""
    from clipaudit.world.write import WORLD_MARKER

    if spec not in WORLD_MODELS:
        return None
    for shard in dataset.shards()[:1]:
        for sample in dataset.read_shard(shard):
            if sample.meta.get("world") == WORLD_MARKER:
                return None
            break
    return (
        f"warning: {spec} was trained only on clipaudit's synthetic world and "
        f"{dataset.describe()!r} was not made by `clipaudit world`, so its scores there mean "
        "little; pass --model with a CLIP trained on real images for real data."
    )
