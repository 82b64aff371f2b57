"""Helpers shared by the NSFW and watermark tests (no tests here): real safe photos, stubs."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from clipaudit.curate.stages import Batch, StageContext
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample


def safe_photo_paths() -> dict[str, Path]:
    """Real photographs that installed packages ship (none of them NSFW)."""
    import sklearn

    found = {
        f"sklearn:{n}": Path(sklearn.__file__).parent / "datasets" / "images" / n
        for n in ("china.jpg", "flower.jpg")
    }
    try:  # matplotlib is installed here but not a clipaudit dependency
        import matplotlib

        found["matplotlib:grace_hopper.jpg"] = (
            Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        )
    except ImportError:
        pass
    return {k: p for k, p in found.items() if p.is_file()}


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def batch_of(samples: list[Sample]) -> Batch:
    return Batch(samples, [decode_image(s.image) for s in samples])


def solid(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    return png_bytes(Image.new("RGB", (size, size), rgb))


@dataclass
class StubProvenance:
    embed_dim: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"spec": "stub"}


class StubClip:
    """Images embed as their normalised mean colour; texts as the colour they name."""

    provenance = StubProvenance()
    TEXTS: ClassVar[dict[str, tuple[float, float, float]]] = {
        "red thing": (1.0, 0.0, 0.0),
        "green thing": (0.0, 1.0, 0.0),
        "blue thing": (0.0, 0.0, 1.0),
        "a photo with a watermark": (1.0, 0.0, 0.0),
        "a photo": (0.0, 1.0, 0.0),
    }

    def __init__(self) -> None:
        self.image_calls = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.array([self.TEXTS[t] for t in texts], np.float32)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        self.image_calls += 1
        m = np.array([np.asarray(im, np.float32).reshape(-1, 3).mean(0) for im in images])
        return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-6)).astype(np.float32)


class StubDetector:
    """nudenet's output injected per mean colour of the image; counts its calls."""

    def __init__(self, by_color: dict[tuple[int, int, int], dict[str, float]]) -> None:
        self.by_color = by_color
        self.calls = 0

    def scores(self, image: Image.Image) -> dict[str, float]:
        self.calls += 1
        r, g, b = (int(v) for v in np.asarray(image)[0, 0])
        return dict(self.by_color.get((r, g, b), {}))


def ctx_for(tmp: Path, yaml_text: str, clip: Any = None) -> StageContext:
    pack = tmp / "pack.yaml"
    pack.write_text(yaml_text)
    return StageContext(options={"rules": str(pack)}, _clip=clip)


def signals(ids: list[str], cols: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    sig = {"id": np.array(ids, dtype=object)}
    for k, v in cols.items():
        arr = np.empty(len(v), dtype=object)
        arr[:] = v
        sig[k] = arr
    return sig


os.environ.setdefault("CLIPAUDIT_OFFLINE", "1")
