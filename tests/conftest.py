"""Shared fixtures: a zoo of real image encodings made with Pillow, and sample sets."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from clipaudit.data import Sample

# Tests never touch the network: the loader must refuse at once instead of probing.
os.environ.setdefault("CLIPAUDIT_OFFLINE", "1")


def photo_like(w: int = 120, h: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photograph, not like flat colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    r = xx * 255 / max(w - 1, 1)
    g = yy * 255 / max(h - 1, 1)
    b = 128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    arr = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return arr.clip(0, 255).astype(np.uint8)


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def image_zoo() -> dict[str, tuple[bytes, str]]:
    """name → (encoded bytes, extension) for the kinds of file web data holds."""
    rgb = Image.fromarray(photo_like())
    rgba = rgb.copy()
    alpha = Image.new("L", rgb.size, 255)
    alpha.paste(0, (0, 0, 40, 40))  # a fully transparent corner
    rgba.putalpha(alpha)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    arr16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    im16 = Image.fromarray(arr16)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    zoo = {
        "jpeg": (_save(rgb, "JPEG", quality=90), "jpg"),
        "progressive": (_save(rgb, "JPEG", quality=85, progressive=True), "jpg"),
        "cmyk": (_save(rgb.convert("CMYK"), "JPEG"), "jpg"),
        "png_alpha": (_save(rgba, "PNG"), "png"),
        "palette": (_save(pal, "PNG", transparency=0), "png"),
        "png16": (_save(im16, "PNG"), "png"),
        "gray": (_save(rgb.convert("L"), "PNG"), "png"),
        "webp": (_save(rgb, "WEBP", quality=80), "webp"),
        "exif_rotated": (_save(rgb, "JPEG", exif=exif.tobytes()), "jpg"),
    }
    good = zoo["jpeg"][0]
    zoo["truncated"] = (good[: len(good) // 2], "jpg")
    zoo["corrupt"] = (good[:200] + bytes(range(256)) * 8, "jpg")
    return zoo


@pytest.fixture(scope="session")
def zoo() -> dict[str, tuple[bytes, str]]:
    return image_zoo()


@pytest.fixture()
def zoo_samples(zoo: dict[str, tuple[bytes, str]]) -> list[Sample]:
    out = []
    for i, (name, (data, ext)) in enumerate(sorted(zoo.items())):
        out.append(
            Sample(
                id=f"s{i:03d}_{name}",
                image=data,
                caption=f"caption for {name} – ünïcode ✓",
                url=f"https://example.org/{name}.{ext}",
                meta={
                    "kind": name,
                    "headers": {"x-robots-tag": "noai"} if i % 2 else {},
                    "width": 120,
                    "n": i,
                },
                image_ext=ext,
            )
        )
    # A sample without a caption and one without a url must survive every format too.
    out[0].caption = None
    out[1].url = None
    return out
