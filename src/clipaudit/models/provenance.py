"""The provenance record that travels with every score and embedding a model produces."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from clipaudit.data.decode import DECODE_CHAIN


def library_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("clipaudit", "torch", "open_clip_torch", "pillow", "numpy", "torchvision"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelProvenance:
    """Everything needed to reproduce a score: which weights, which preprocessing, which code."""

    spec: str
    source: str
    arch: str
    pretrained: str | None
    weights_sha256: str
    embed_dim: int
    image_size: list[int]
    mean: list[float]
    std: list[float]
    interpolation: str
    resize_mode: str
    quick_gelu: bool
    logit_scale: float
    context_length: int
    device: str
    precision: str
    preprocess: str
    decode: str = DECODE_CHAIN
    versions: dict[str, str] = field(default_factory=library_versions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
