"""Synthetic visible-watermark pairs: a clean crop and the same crop under a text/logo overlay.

Fonts, texts and logo shapes are split into TRAIN and HELD_OUT sets that never overlap, so
the detector is measured on marks it has never seen. Everything the world (and so the demo
pool) draws is held out: Pillow's default font, the world's ``WATERMARK_TEXTS`` and its
ring-and-letter logo. Every draw takes an explicit ``random.Random``: a pair is a pure
function of its seed.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from clipaudit.world.vocab import WATERMARK_TEXTS

Split = Literal["train", "heldout"]
FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGBA = tuple[int, int, int, int]
INPUT_SIZE = 128
PILLOW_DEFAULT = "pillow-default"

# Font families (matplotlib's bundled TTFs), split by family so that no held-out glyph style
# is a weight or slant of a trained one. Pillow's default font is held out: the world uses it.
TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
)
HELD_OUT_FONTS = (
    PILLOW_DEFAULT,
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)

# Name syllables and templates; the held-out ones share no word with the trained ones.
TRAIN_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "bel", "sun", "dri", "po", "nex", "ul")
HELD_OUT_SYLLABLES = ("zu", "qua", "fey", "orm", "wix", "jab", "eth", "gly", "yon", "ib")
TRAIN_TEMPLATES = (
    "{N}",
    "{U}",
    "© {N}",
    "© {Y} {N}",
    "{n}.com",
    "{n}.net",
    "{N} Images",
    "Photo by {N}",
    "@{n}",
    "{N} Studio",
    "ID {D}",
    "{N} Media",
)
HELD_OUT_TEMPLATES = ("{N} Archive", "copy © {N}", "{n}.org", "{U} PICTURES", "ref {D} {n}")
HELD_OUT_FIXED = (
    *WATERMARK_TEXTS,
    "DRAFT",
    "CONFIDENTIAL",
    "not for resale",
    "LumaVault",
    "© PixHarbor 2019",
    "www.snapquarry.org",
    "FOTOBANK",
    "Stockmere Pictures",
)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# Held-out words never appear in a training text (checked as texts are drawn).
HELD_OUT_WORDS = (
    set().union(*(words(t) for t in HELD_OUT_FIXED))
    | words(" ".join(HELD_OUT_TEMPLATES).replace("{", " ").replace("}", " "))
) - {"n", "u", "d", "y"}


def _name(rng: random.Random, syllables: tuple[str, ...]) -> str:
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3)))


def draw_text(rng: random.Random, split: Split) -> str:
    """A watermark string of ``split``; training texts never contain a held-out word."""
    syl: tuple[str, ...]
    templates: tuple[str, ...]
    if split == "heldout":
        if rng.random() < 0.5:
            return rng.choice(HELD_OUT_FIXED)
        syl, templates = HELD_OUT_SYLLABLES, HELD_OUT_TEMPLATES
    else:
        syl, templates = TRAIN_SYLLABLES, TRAIN_TEMPLATES
    while True:
        n = _name(rng, syl)
        text = rng.choice(templates).format(
            N=n.capitalize(),
            U=n.upper(),
            n=n,
            Y=rng.randint(1995, 2024),
            D=rng.randint(10000, 99999999),
        )
        if split == "heldout" or not (words(text) & HELD_OUT_WORDS):
            return text


# ---- fonts -------------------------------------------------------------------------------


def font_dir() -> Path | None:
    """matplotlib's bundled TTF folder, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return d if d.is_dir() else None


def available_fonts(split: Split) -> tuple[str, ...]:
    names = TRAIN_FONTS if split == "train" else HELD_OUT_FONTS
    d = font_dir()
    return tuple(n for n in names if n == PILLOW_DEFAULT or (d is not None and (d / n).is_file()))


@functools.lru_cache(maxsize=512)
def load_font(name: str, px: int) -> FontT:
    px = max(6, px)
    if name == PILLOW_DEFAULT:
        return ImageFont.load_default(size=px)
    d = font_dir()
    assert d is not None, "matplotlib's fonts are needed for this font set"
    return ImageFont.truetype(str(d / name), px)


# ---- logos -------------------------------------------------------------------------------

LogoFn = Callable[[ImageDraw.ImageDraw, int, RGBA, random.Random], None]
LOGOS: dict[str, tuple[Split, LogoFn]] = {}


def logo(name: str, split: Split) -> Callable[[LogoFn], LogoFn]:
    def deco(fn: LogoFn) -> LogoFn:
        LOGOS[name] = (split, fn)
        return fn

    return deco


def _ngon(n: int, c: float, r: float, rot: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (c + r * math.cos(rot + 2 * math.pi * k / n), c + r * math.sin(rot + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _w(d: int) -> int:
    return max(1, d // 12)


@logo("polygon_outline", "train")
def _polygon(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    dr.polygon(_ngon(rng.choice((3, 4, 5)), d / 2, d * 0.46), outline=col, width=_w(d))


@logo("star", "train")
def _star(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rad = d * (0.47 if k % 2 == 0 else 0.2)
        pts.append((d / 2 + rad * math.cos(a), d / 2 + rad * math.sin(a)))
    dr.polygon(pts, fill=col)


@logo("shield", "train")
def _shield(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    pts = [(0.1, 0.05), (0.9, 0.05), (0.9, 0.5), (0.5, 0.95), (0.1, 0.5)]
    dr.polygon([(x * d, y * d) for x, y in pts], outline=col, width=_w(d))
    dr.line((d * 0.5, d * 0.15, d * 0.5, d * 0.8), fill=col, width=_w(d))


@logo("camera", "train")
def _camera(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    dr.rounded_rectangle(
        (d * 0.05, d * 0.25, d * 0.95, d * 0.85), d // 10, outline=col, width=_w(d)
    )
    dr.rectangle((d * 0.3, d * 0.12, d * 0.55, d * 0.25), fill=col)
    dr.ellipse((d * 0.33, d * 0.36, d * 0.67, d * 0.74), outline=col, width=_w(d))


@logo("bars", "train")
def _bars(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    for k in range(3):
        h = d * (0.3 + 0.3 * k)
        dr.rectangle((d * (0.1 + 0.3 * k), d * 0.95 - h, d * (0.3 + 0.3 * k), d * 0.95), fill=col)


@logo("chevrons", "train")
def _chevrons(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    for off in (0.0, 0.3):
        x = d * (0.15 + off)
        dr.line([(x, d * 0.15), (x + d * 0.3, d * 0.5), (x, d * 0.85)], fill=col, width=_w(d) * 2)


@logo("ring_letter", "heldout")  # the world's logo style
def _ring(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    dr.ellipse((1, 1, d - 2, d - 2), outline=col, width=max(2, d // 12))
    font = load_font(rng.choice(available_fonts("heldout")), int(d * 0.55))
    letter = rng.choice("ABCDEFGHKMPRSTW")
    bb = font.getbbox(letter)
    xy = ((d - (bb[2] - bb[0])) / 2 - bb[0], (d - (bb[3] - bb[1])) / 2 - bb[1])
    dr.text(xy, letter, font=font, fill=col)


@logo("hexagon_badge", "heldout")
def _hexagon(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    dr.polygon(_ngon(6, d / 2, d * 0.46, 0.0), outline=col, width=_w(d))
    dr.rectangle((d * 0.2, d * 0.45, d * 0.8, d * 0.55), fill=col)


@logo("target", "heldout")
def _target(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    for f in (0.45, 0.28):
        dr.ellipse(
            (d * (0.5 - f), d * (0.5 - f), d * (0.5 + f), d * (0.5 + f)), outline=col, width=_w(d)
        )
    dr.line((d * 0.5, 0, d * 0.5, d), fill=col, width=_w(d))
    dr.line((0, d * 0.5, d, d * 0.5), fill=col, width=_w(d))


def logos_of(split: Split) -> tuple[str, ...]:
    return tuple(n for n, (s, _) in LOGOS.items() if s == split)


# ---- overlays ----------------------------------------------------------------------------

COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (245, 245, 245),
    (20, 20, 20),
    (128, 128, 128),
    (200, 200, 200),
)


@dataclass
class Overlay:
    kind: str  # text / logo / logo_text
    layout: str  # single / corner / center / tiled
    text: str
    font: str
    logo: str
    opacity: float
    height: float  # mark height as a fraction of the image's shorter side
    angle: float
    color: tuple[int, int, int]
    stroke: bool

    def describe(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


def draw_overlay(rng: random.Random, split: Split) -> Overlay:
    layout = rng.choices(("single", "corner", "center", "tiled"), weights=(4, 2, 2, 2))[0]
    height = {
        "single": (0.06, 0.22),
        "corner": (0.035, 0.08),
        "center": (0.12, 0.3),
        "tiled": (0.05, 0.14),
    }[layout]
    angle = 0.0 if rng.random() < 0.5 else rng.uniform(-45, 45)
    if layout == "corner":
        angle = 0.0 if rng.random() < 0.85 else rng.uniform(-10, 10)
    color = (
        rng.choice(COLOURS)
        if rng.random() < 0.7
        else (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
    )
    return Overlay(
        kind=rng.choices(("text", "logo", "logo_text"), weights=(6, 2, 2))[0],
        layout=layout,
        text=draw_text(rng, split),
        font=rng.choice(available_fonts(split)),
        logo=rng.choice(logos_of(split)),
        opacity=rng.uniform(0.15, 0.9),
        height=rng.uniform(*height),
        angle=angle,
        color=color,
        stroke=rng.random() < 0.2,
    )


def _stamp(ov: Overlay, px: int, rng: random.Random) -> Image.Image:
    """The mark at full alpha (opacity is applied when compositing)."""
    col: RGBA = (*ov.color, 255)
    parts: list[Image.Image] = []
    if ov.kind in ("logo", "logo_text"):
        d = max(8, int(px * (1.0 if ov.kind == "logo" else 1.3)))
        st = Image.new("RGBA", (d, d), (0, 0, 0, 0))
        LOGOS[ov.logo][1](ImageDraw.Draw(st), d, col, rng)
        parts.append(st)
    if ov.kind in ("text", "logo_text"):
        font = load_font(ov.font, px)
        sw = max(1, px // 16) if ov.stroke else 0
        bb = font.getbbox(ov.text, stroke_width=sw)
        w, h = int(bb[2] - bb[0]) + 4, int(bb[3] - bb[1]) + 4
        st = Image.new("RGBA", (max(w, 1), max(h, 1)), (0, 0, 0, 0))
        dark = sum(ov.color) > 380
        ImageDraw.Draw(st).text(
            (2 - bb[0], 2 - bb[1]),
            ov.text,
            font=font,
            fill=col,
            stroke_width=sw,
            stroke_fill=((0, 0, 0, 255) if dark else (255, 255, 255, 255)),
        )
        parts.append(st)
    gap = max(2, px // 4)
    width = sum(p.size[0] for p in parts) + gap * (len(parts) - 1)
    out = Image.new("RGBA", (width, max(p.size[1] for p in parts)), (0, 0, 0, 0))
    x = 0
    for p in parts:
        out.alpha_composite(p, (x, (out.size[1] - p.size[1]) // 2))
        x += p.size[0] + gap
    if ov.angle:
        out = out.rotate(ov.angle, expand=True, resample=Image.Resampling.BICUBIC)
    return out


def apply_overlay(im: Image.Image, ov: Overlay, rng: random.Random) -> Image.Image:
    """Blend ``ov`` over ``im`` (RGB) at its opacity; the stamp scales with the image."""
    w, h = im.size
    px = max(6, int(ov.height * min(w, h)))
    stamp = _stamp(ov, px, rng)
    sw, sh = stamp.size
    if sw > w * 0.95:  # a long text is shrunk to fit rather than cut off
        scale = w * 0.95 / sw
        stamp = stamp.resize((max(1, int(sw * scale)), max(1, int(sh * scale))))
        sw, sh = stamp.size
    a = np.asarray(stamp.getchannel("A"), np.float32) * ov.opacity
    stamp.putalpha(Image.fromarray(a.clip(0, 255).astype(np.uint8)))
    # A margin of one stamp on every side lets tiles start off-frame (alpha_composite
    # refuses negative offsets); the layer is cropped back to the frame afterwards.
    layer = Image.new("RGBA", (w + 2 * sw, h + 2 * sh), (0, 0, 0, 0))
    m = int(0.02 * min(w, h))
    spots: list[tuple[int, int]]
    if ov.layout == "tiled":
        sx, sy = sw + rng.randint(sw // 4 + 4, sw + 8), sh + rng.randint(sh // 2 + 4, 2 * sh + 8)
        x0, y0 = -rng.randint(0, sx), -rng.randint(0, sy)
        spots = [
            (x, y)
            for j, y in enumerate(range(y0, h, sy))
            for x in range(x0 + (sx // 2 if j % 2 else 0), w, sx)
        ]
    elif ov.layout == "center":
        x = (w - sw) // 2 + rng.randint(-w // 10, w // 10)
        spots = [(x, (h - sh) // 2 + rng.randint(-h // 10, h // 10))]
    elif ov.layout == "corner":
        x = m if rng.random() < 0.5 else w - sw - m
        spots = [(x, m if rng.random() < 0.4 else h - sh - m)]
    else:
        spots = [(rng.randint(0, max(0, w - sw)), rng.randint(0, max(0, h - sh)))]
    for x, y in spots:
        if -sw <= x and -sh <= y:
            layer.alpha_composite(stamp, (x + sw, y + sh))
    layer = layer.crop((sw, sh, sw + w, sh + h))
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


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


def random_crop(rng: random.Random, im: Image.Image, min_frac: float) -> Image.Image:
    w, h = im.size
    frac = rng.uniform(min_frac, 1.0)
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    cw = min(w, int(min(w, h) * frac * math.sqrt(aspect)))
    ch = min(h, int(min(w, h) * frac / math.sqrt(aspect)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = rng.randint(INPUT_SIZE, 320)
    scale = side / min(cw, ch)
    return out.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BILINEAR)


def colour_jitter(rng: random.Random, im: Image.Image) -> Image.Image:
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.4, 1.5))
    if rng.random() < 0.15:
        im = im.convert("L").convert("RGB")
    elif rng.random() < 0.2:
        order = rng.sample((0, 1, 2), 3)
        im = Image.merge("RGB", [im.getchannel(k) for k in order])
    return im


def degrade(rng: random.Random, im: Image.Image) -> Image.Image:
    """What a crawl does after the mark is drawn: blur, noise, JPEG."""
    if rng.random() < 0.15:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.2:
        nrng = np.random.default_rng(rng.getrandbits(32))
        arr = np.asarray(im, np.float32) + nrng.normal(0, rng.uniform(2, 8), (*im.size[::-1], 3))
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=rng.randint(50, 95))
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    return im


def to_input(im: Image.Image) -> np.ndarray:
    """The detector's input: the whole frame squashed to INPUT_SIZE², RGB uint8 (HWC)."""
    im = im.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(im, np.uint8)


def make_pair(
    rng: random.Random, base: Image.Image, split: Split, world: bool
) -> tuple[np.ndarray, np.ndarray, Overlay]:
    """(clean input, marked input, overlay) from one random view of ``base``."""
    view = colour_jitter(rng, random_crop(rng, base, 0.6 if world else 0.25))
    ov = draw_overlay(rng, split)
    marked = apply_overlay(view, ov, rng)
    post = rng.getrandbits(32)  # the same degradation for both halves of the pair
    clean = degrade(random.Random(post), view)
    marked = degrade(random.Random(post), marked)
    return to_input(clean), to_input(marked), ov


@dataclass
class Bank:
    """Clean base images of one split: world scenes and photo regions."""

    world: list[Image.Image]
    photos: list[Image.Image]

    @classmethod
    def build(cls, split: Split, n_world: int) -> Bank:
        return cls(
            world_images(n_world, WORLD_SEED[split]),
            [photo_region(im, split) for im in real_photos().values()],
        )

    def pairs(
        self, rng: random.Random, n: int, split: Split, source: str
    ) -> tuple[np.ndarray, np.ndarray, list[Overlay]]:
        """``n`` pairs from ``source`` ("world" or "photo"): (clean[n], marked[n], overlays)."""
        pool = self.world if source == "world" else self.photos
        clean, marked, ovs = [], [], []
        for _ in range(n):
            c, m, ov = make_pair(rng, rng.choice(pool), split, source == "world")
            clean.append(c)
            marked.append(m)
            ovs.append(ov)
        return np.stack(clean), np.stack(marked), ovs
