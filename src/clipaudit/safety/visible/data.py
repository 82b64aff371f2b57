"""Pairs for the visible-watermark detector: one view of a clean image, and the same view
under a synthetic mark (``visible.marks``), degraded the same way after the mark.

Clean images come from real photographs (a folder such as ``../shared/photos``, split by
``calibrate.photo_split`` into fit / tune / held-out parts), world scenes, and, when no
folder is given, the three photographs installed packages ship (tests, smoke runs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from clipaudit.safety.visible.marks import (  # noqa: F401  (re-exported for callers)
    HELD_OUT_WORDS,
    LOGOS,
    PILLOW_DEFAULT,
    WATERMARK_TEXTS,
    Overlay,
    Split,
    apply_overlay,
    available_fonts,
    draw_overlay,
    draw_text,
    load_font,
    logos_of,
    words,
)

INPUT_SIZE = 160
PhotoPart = Literal["fit", "tune", "held_out"]


# ---- clean images ------------------------------------------------------------------------


def _mpl_sample(name: str) -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "mpl-data" / "sample_data" / name
    return p if p.is_file() else None


def real_photos() -> dict[str, Image.Image]:
    """The photographs installed packages ship: scikit-learn's two, matplotlib's one."""
    out: dict[str, Image.Image] = {}
    from sklearn.datasets import load_sample_images

    ds = load_sample_images()
    for arr, fname in zip(ds.images, ds.filenames, strict=True):
        out[f"sklearn:{Path(fname).name}"] = Image.fromarray(np.asarray(arr, np.uint8), "RGB")
    p = _mpl_sample("grace_hopper.jpg")
    if p is not None:
        with Image.open(p) as im:
            out["matplotlib:grace_hopper.jpg"] = im.convert("RGB")
    return out


# Each photo is cut along its longer side: the first 60% feeds training, the rest is held out.
TRAIN_SHARE = 0.6


def photo_region(im: Image.Image, split: Split) -> Image.Image:
    w, h = im.size
    if w >= h:
        cut = int(w * TRAIN_SHARE)
        return im.crop((0, 0, cut, h) if split == "train" else (cut, 0, w, h))
    cut = int(h * TRAIN_SHARE)
    return im.crop((0, 0, w, cut) if split == "train" else (0, cut, w, h))


def world_images(n: int, seed: int, size: int = 256) -> list[Image.Image]:
    """Clean world scenes (``eval-retrieval`` has no watermarks) rendered at ``size``."""
    from clipaudit.world.splits import scenes

    return [s.render(size) for s in scenes("eval-retrieval", n, seed=seed)]


# World seeds: the training bank and the held-out bank draw from different streams.
WORLD_SEED = {"train": 9101, "heldout": 9202}


def load_photos(
    folder: Path, part: PhotoPart, max_side: int = 480, skip: frozenset[str] = frozenset()
) -> dict[str, Image.Image]:
    """The photos of one part of ``folder`` (relative path → RGB image, longer side capped at
    ``max_side``); ``skip`` names photos to leave out (ones that already carry a mark)."""
    from clipaudit.calibrate.photo_split import is_tune, photos
    from clipaudit.data.decode import decode_image

    out: dict[str, Image.Image] = {}
    for p in photos(folder, "held_out" if part == "held_out" else "calibration"):
        rel = p.relative_to(folder).as_posix()
        if rel in skip or (part != "held_out" and is_tune(rel) != (part == "tune")):
            continue
        im = decode_image(p.read_bytes()).image
        if im is None:
            continue
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        out[rel] = im
    return out


def load_photos_named(folder: Path, names: list[str]) -> list[Image.Image]:
    """Named photos of ``folder`` as RGB images (those that decode)."""
    from clipaudit.data.decode import decode_image

    ims = [decode_image((folder / n).read_bytes()).image for n in names]
    return [im.convert("RGB") for im in ims if im is not None]


def random_crop(rng: random.Random, im: Image.Image, min_frac: float) -> Image.Image:
    """A view of ``im``: half the time the whole frame, else a crop keeping ``min_frac``-1 of
    the shorter side; flipped half the time; rescaled by 0.6-1.6 within 96-480 px."""
    w, h = im.size
    if rng.random() < 0.5:
        out = im
    else:
        frac = rng.uniform(min_frac, 1.0)
        aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
        cw = min(w, int(min(w, h) * frac * math.sqrt(aspect)))
        ch = min(h, int(min(w, h) * frac / math.sqrt(aspect)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cw, ch = out.size
    scale = rng.uniform(0.6, 1.6)
    scale = min(max(scale, 96 / min(cw, ch)), 480 / max(cw, ch))
    return out.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BILINEAR)


def colour_jitter(rng: random.Random, im: Image.Image) -> Image.Image:
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.75, 1.25))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.75, 1.25))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.4))
    if rng.random() < 0.1:
        im = im.convert("L").convert("RGB")
    return im


def degrade(rng: random.Random, im: Image.Image) -> Image.Image:
    """What a crawl does after the mark is drawn: blur, noise, resizing, JPEG."""
    if rng.random() < 0.1:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    if rng.random() < 0.15:
        nrng = np.random.default_rng(rng.getrandbits(32))
        arr = np.asarray(im, np.float32) + nrng.normal(0, rng.uniform(2, 6), (*im.size[::-1], 3))
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.6:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=rng.randint(40, 95))
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    return im


def to_input(im: Image.Image, size: int | None = None) -> np.ndarray:
    """The detector's input: the whole frame squashed to size² (INPUT_SIZE, read at call
    time, where none is given), RGB uint8 (HWC)."""
    size = size or INPUT_SIZE
    im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, np.uint8)


def make_pair(
    rng: random.Random, base: Image.Image, split: Split, world: bool, view: bool = True
) -> tuple[np.ndarray, np.ndarray, Overlay]:
    """(clean input, marked input, overlay): one random view of ``base`` (or ``base`` itself
    when ``view`` is false), with and without a mark, degraded alike afterwards."""
    im = colour_jitter(rng, random_crop(rng, base, 0.6 if world else 0.4)) if view else base
    ov = draw_overlay(rng, split)
    marked = apply_overlay(im, ov, rng)
    post = rng.getrandbits(32)  # the same degradation for both halves of the pair
    clean = degrade(random.Random(post), im)
    marked = degrade(random.Random(post), marked)
    return to_input(clean), to_input(marked), ov


@dataclass
class Bank:
    """Clean base images of one split: world scenes and photographs."""

    world: list[Image.Image]
    photos: list[Image.Image]
    photo_names: list[str]

    @classmethod
    def build(
        cls,
        split: Split,
        n_world: int,
        folder: Path | None = None,
        part: PhotoPart | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> Bank:
        """World scenes of ``split``; the photos of ``part`` of ``folder``, or without a
        folder the shipped photographs' regions of ``split``."""
        if folder is not None:
            named = load_photos(folder, part or ("fit" if split == "train" else "held_out"),
                                skip=skip)  # fmt: skip
        else:
            named = {k: photo_region(im, split) for k, im in real_photos().items()}
        return cls(world_images(n_world, WORLD_SEED[split]), list(named.values()), list(named))

    def pairs(
        self, rng: random.Random, n: int, split: Split, source: str
    ) -> tuple[np.ndarray, np.ndarray, list[Overlay]]:
        """``n`` pairs from ``source`` ("world" or "photo"): (clean[n], marked[n], overlays)."""
        pool = self.world if source == "world" else self.photos
        world = source == "world"
        return _stacked(make_pair(rng, rng.choice(pool), split, world) for _ in range(n))

    def whole(
        self, rng: random.Random, split: Split
    ) -> tuple[np.ndarray, np.ndarray, list[Overlay]]:
        """Every photo once as it is (clean) and once under a mark of ``split``, each then
        JPEG-saved alike: the measurement the card reports."""
        return _stacked(make_pair(rng, im, split, False, view=False) for im in self.photos)


def _stacked(
    triples: Iterable[tuple[np.ndarray, np.ndarray, Overlay]],
) -> tuple[np.ndarray, np.ndarray, list[Overlay]]:
    clean, marked, ovs = zip(*triples, strict=True)
    return np.stack(clean), np.stack(marked), list(ovs)


@contextlib.contextmanager
def input_size(size: int) -> Iterator[None]:
    """Draw pairs and inputs at ``size`` (a detector kind's own input) inside the block."""
    global INPUT_SIZE
    before, INPUT_SIZE = INPUT_SIZE, size
    try:
        yield
    finally:
        INPUT_SIZE = before
