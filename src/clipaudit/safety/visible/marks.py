"""Synthetic visible watermarks: fonts, texts, logo shapes and how a mark is laid over a photo.

Fonts, texts and logo shapes are split into TRAIN and HELD_OUT sets that never overlap, so
the detector is measured on marks it has never seen. Fonts are split by family (every weight
and slant of a held-out family is held out); the fonts are whatever TrueType/OpenType files
matplotlib and the system carry (``fonts()`` lists them, the card records them). Everything
the world (and so the demo pool) draws is held out: Pillow's default font, the world's
``WATERMARK_TEXTS`` and its ring-and-letter logo. Every draw takes an explicit
``random.Random``: a mark is a pure function of its seed and the installed fonts.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from clipaudit.world.vocab import WATERMARK_TEXTS

Split = Literal["train", "heldout"]
FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGBA = tuple[int, int, int, int]
PILLOW_DEFAULT = "pillow-default"

# ---- fonts -------------------------------------------------------------------------------

# Held-out families span the styles a mark is set in: a monospace, two serifs, a geometric
# sans, a rounded hand. Pillow's default is held out because the world draws with it.
HELD_OUT_FAMILIES = frozenset(
    {
        PILLOW_DEFAULT,
        "DejaVuSansMono",
        "STIXGeneral",
        "Lato",
        "ComicNeue",
        "EBGaramond",
        "URWBookman",
        "NotoSerif",
    }
)
SYSTEM_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Symbol, dingbat and maths fonts map ASCII to pictures, not letters.
_NOT_TEXT = re.compile(r"symbol|dingbat|d050000l|math|cmsy|cmex|stixsiz|stixnonuni|emoji", re.I)
# Of the Noto fonts only the Latin families are text fonts for these marks.
_NOTO_LATIN = frozenset({"NotoSans", "NotoSerif", "NotoSansDisplay", "NotoSerifDisplay"})


def family(name: str) -> str:
    """A font's family from its file stem: weight, slant and optical-size suffixes dropped."""
    stem = name.split("-")[0]
    stem = re.sub(r"(Bold|Bol|Italic|Ita|Oblique|Bd)+$", "", stem)
    return re.sub(r"\d+$", "", stem) or stem


def font_dir() -> Path | None:
    """matplotlib's bundled TTF folder, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return d if d.is_dir() else None


# A machine without the fonts (a lent GPU) reads a packed copy of them instead
# (``visible.pack``): these folders, in order, replace matplotlib's and the system's.
FONT_DIRS_ENV = "CLIPAUDIT_FONT_DIRS"


def font_roots() -> list[Path]:
    """Where fonts are looked for: $CLIPAUDIT_FONT_DIRS (colon-separated) when set, else
    matplotlib's bundled folder, then the system's."""
    env = os.environ.get(FONT_DIRS_ENV, "")
    given = [Path(d) for d in env.split(os.pathsep) if d]
    roots = given or [d for d in (font_dir(), *SYSTEM_FONT_DIRS) if d is not None]
    return [d for d in roots if d.is_dir()]


@functools.lru_cache(maxsize=1)
def fonts() -> dict[str, Path]:
    """Every usable text font: file stem → path (the first root's first)."""
    roots = font_roots()
    out: dict[str, Path] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in (".ttf", ".otf") or p.stem in out:
                continue
            fam = family(p.stem)
            if _NOT_TEXT.search(p.stem) or (fam.startswith("Noto") and fam not in _NOTO_LATIN):
                continue
            if _draws_letters(p):
                out[p.stem] = p
    return out


def _draws_letters(path: Path) -> bool:
    """Whether the font draws distinct Latin letters (not empty boxes or pictures)."""
    try:
        font = ImageFont.truetype(str(path), 24)
        masks = [bytes(font.getmask(c)) for c in ("A", "g", "7")]
    except OSError:
        return False
    return all(any(m) for m in masks) and len(set(masks)) == 3


def available_fonts(split: Split) -> tuple[str, ...]:
    held = split == "heldout"
    names = tuple(n for n in fonts() if (family(n) in HELD_OUT_FAMILIES) == held)
    return (PILLOW_DEFAULT, *names) if held else names


@functools.lru_cache(maxsize=1024)
def load_font(name: str, px: int) -> FontT:
    px = max(6, px)
    if name == PILLOW_DEFAULT:
        return ImageFont.load_default(size=px)
    return ImageFont.truetype(str(fonts()[name]), px)


# ---- texts -------------------------------------------------------------------------------

TRAIN_SYLLABLES = (
    "ka", "lo", "mi", "ra", "ven", "tor", "bel", "sun", "dri", "po", "nex", "ul", "mar", "tin",
    "son", "ber", "gal", "hen", "rik", "sta", "fo", "ton", "lin", "dal", "vic", "ar", "el",
    "den", "mor", "sky", "pix", "cam", "ger", "ley", "an", "ow", "ski", "nov", "kin", "rob",
)  # fmt: skip
HELD_OUT_SYLLABLES = ("zu", "qua", "fey", "orm", "wix", "jab", "eth", "gly", "yon", "ib")
TRAIN_TEMPLATES = (
    "{N}", "{U}", "© {N}", "© {Y} {N}", "{n}.com", "{n}.net", "www.{n}.com", "{N} Images",
    "Photo by {N}", "@{n}", "{N} Studio", "ID {D}", "{N} Media", "{N} {M}", "© {N} {M}",
    "{N} Photography", "IMG_{D}", "{U} STOCK", "Photo: {N} {M}", "{N} | {n}.com",
    "© {N} {M}, {Y}", "{N}\n{n}.com", "© {Y}\n{N} {M}", "Licensed to {N}", "{u}",
)  # fmt: skip
TRAIN_FIXED = (
    "PROOF", "COPYRIGHT", "ALL RIGHTS RESERVED", "Stock Photo", "PHOTOGRAPHY", "Licensed",
    "Unlicensed", "Rights Managed", "Editorial Use Only", "Property of",
)  # fmt: skip
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
        if split == "train" and rng.random() < 0.12:
            text = rng.choice(TRAIN_FIXED)
        else:
            n = _name(rng, syl)
            text = rng.choice(templates).format(
                N=n.capitalize(),
                U=n.upper(),
                n=n,
                u="".join(c.upper() if rng.random() < 0.5 else c for c in n),
                M=_name(rng, syl).capitalize(),
                Y=rng.randint(1995, 2026),
                D=rng.randint(10, 99999999),
            )
        if split == "heldout" or not (words(text) & HELD_OUT_WORDS):
            return text


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


@logo("monogram", "train")
def _monogram(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    """Two letters of a training font in a filled or outlined square, circle or none."""
    frame = rng.choice(("square", "circle", "none"))
    filled = frame != "none" and rng.random() < 0.4
    box = (1, 1, d - 2, d - 2)
    if frame == "square":
        dr.rectangle(box, fill=col if filled else None, outline=col, width=_w(d))
    elif frame == "circle":
        dr.ellipse(box, fill=col if filled else None, outline=col, width=_w(d))
    font = load_font(rng.choice(available_fonts("train") or (PILLOW_DEFAULT,)), int(d * 0.45))
    text = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(rng.randint(1, 2)))
    bb = font.getbbox(text)
    xy = ((d - (bb[2] - bb[0])) / 2 - bb[0], (d - (bb[3] - bb[1])) / 2 - bb[1])
    dr.text(xy, text, font=font, fill=(0, 0, 0, 0) if filled else col)


@logo("random_shapes", "train")
def _random_shapes(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    """Two to four random primitives: a stand-in for the logos nobody can list."""
    for _ in range(rng.randint(2, 4)):
        x0, y0 = rng.uniform(0, d * 0.6), rng.uniform(0, d * 0.6)
        x1, y1 = x0 + rng.uniform(d * 0.2, d * 0.4), y0 + rng.uniform(d * 0.2, d * 0.4)
        kind, fill = rng.choice(("ellipse", "rect", "arc", "line", "tri")), rng.random() < 0.5
        if kind == "ellipse":
            dr.ellipse((x0, y0, x1, y1), fill=col if fill else None, outline=col, width=_w(d))
        elif kind == "rect":
            dr.rectangle((x0, y0, x1, y1), fill=col if fill else None, outline=col, width=_w(d))
        elif kind == "arc":
            a = rng.uniform(0, 360)
            dr.arc((x0, y0, x1, y1), a, a + rng.uniform(90, 300), fill=col, width=_w(d) * 2)
        elif kind == "line":
            dr.line((x0, y0, x1, y1), fill=col, width=_w(d) * 2)
        else:
            dr.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=col if fill else None,
                       outline=col, width=_w(d))  # fmt: skip


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


@logo("leaf_swoosh", "heldout")
def _swoosh(dr: ImageDraw.ImageDraw, d: int, col: RGBA, rng: random.Random) -> None:
    dr.chord((d * 0.05, d * 0.2, d * 0.95, d * 0.9), 200, 340, fill=col)
    dr.ellipse((d * 0.6, d * 0.05, d * 0.85, d * 0.3), fill=col)


def logos_of(split: Split) -> tuple[str, ...]:
    return tuple(n for n, (s, _) in LOGOS.items() if s == split)


# ---- overlays ----------------------------------------------------------------------------

COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (245, 245, 245),
    (20, 20, 20),
    (0, 0, 0),
    (128, 128, 128),
    (200, 200, 200),
)
LAYOUTS = ("single", "corner", "center", "tiled", "band")
EFFECTS = ("fill", "outline", "stroke", "shadow", "emboss")
# layout → (mark height range as a share of the shorter side, opacity range)
_SIZE = {
    "single": ((0.05, 0.2), (0.2, 0.95)),
    "corner": ((0.025, 0.07), (0.45, 1.0)),
    "center": ((0.12, 0.4), (0.12, 0.6)),
    "tiled": ((0.04, 0.13), (0.12, 0.6)),
    "band": ((0.03, 0.08), (0.8, 1.0)),
}


@dataclass
class Overlay:
    kind: str  # text / logo / logo_text
    layout: str  # single / corner / center / tiled / band
    effect: str  # fill / outline / stroke / shadow / emboss
    text: str
    font: str
    logo: str
    opacity: float
    height: float  # mark height as a fraction of the image's shorter side
    angle: float
    color: tuple[int, int, int]
    band: tuple[int, int, int, int]  # caption band colour and alpha (band layout only)

    def describe(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


def _colour(rng: random.Random) -> tuple[int, int, int]:
    if rng.random() < 0.7:
        return rng.choice(COLOURS)
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def draw_overlay(rng: random.Random, split: Split, layout: str | None = None) -> Overlay:
    layout = layout or rng.choices(LAYOUTS, weights=(3, 3, 2, 2, 2))[0]
    (h0, h1), (o0, o1) = _SIZE[layout]
    angle = 0.0 if rng.random() < 0.5 else rng.uniform(-45, 45)
    if layout in ("corner", "band"):
        angle = 0.0 if rng.random() < 0.9 else rng.uniform(-8, 8)
    kind = rng.choices(("text", "logo", "logo_text"), weights=(6, 2, 2))[0]
    effect = rng.choices(EFFECTS, weights=(10, 2, 2, 2, 2))[0]
    if layout == "band":
        kind = "text" if rng.random() < 0.8 else "logo_text"
        effect = "fill"
    dark = rng.random() < 0.6
    band = (*((0, 0, 0) if dark else (255, 255, 255)), rng.randint(70, 220))
    if rng.random() < 0.2:
        band = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), band[3])
    color = _colour(rng)
    if layout == "band":
        color = (255, 255, 255) if sum(band[:3]) < 380 else (10, 10, 10)
    return Overlay(
        kind=kind,
        layout=layout,
        effect=effect,
        text=draw_text(rng, split),
        font=rng.choice(available_fonts(split)),
        logo=rng.choice(logos_of(split)),
        opacity=rng.uniform(o0, o1),
        height=rng.uniform(h0, h1),
        angle=angle,
        color=color,
        band=band,
    )


def _text_stamp(ov: Overlay, px: int, col: RGBA) -> Image.Image:
    font = load_font(ov.font, px)
    sw = {"outline": max(1, px // 24), "stroke": max(1, px // 14)}.get(ov.effect, 0)
    lines = ov.text.split("\n")
    boxes = [font.getbbox(t or " ", stroke_width=sw) for t in lines]
    lh = max(int(b[3] - b[1]) for b in boxes) + max(1, px // 6)
    w = max(int(b[2] - b[0]) for b in boxes) + 4
    st = Image.new("RGBA", (max(w, 1), lh * len(lines) + 4), (0, 0, 0, 0))
    dr = ImageDraw.Draw(st)
    contrast: RGBA = (0, 0, 0, 255) if sum(col[:3]) > 380 else (255, 255, 255, 255)
    for k, (t, bb) in enumerate(zip(lines, boxes, strict=True)):
        xy = (2 - bb[0], 2 + k * lh - bb[1])
        if ov.effect == "outline":  # the letters' edges only: the stroke minus the glyphs
            full, glyph = Image.new("L", st.size), Image.new("L", st.size)
            ImageDraw.Draw(full).text(xy, t, font=font, fill=255, stroke_width=sw,
                                      stroke_fill=255)  # fmt: skip
            ImageDraw.Draw(glyph).text(xy, t, font=font, fill=255)
            ring = np.clip(np.asarray(full, np.int16) - np.asarray(glyph, np.int16), 0, 255)
            paint = Image.new("RGBA", st.size, col)
            paint.putalpha(Image.fromarray(ring.astype(np.uint8)))
            st.alpha_composite(paint)
        elif ov.effect == "stroke":
            dr.text(xy, t, font=font, fill=col, stroke_width=sw, stroke_fill=contrast)
        else:
            dr.text(xy, t, font=font, fill=col)
    return st


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
        parts.append(_text_stamp(ov, px, col))
    gap = max(2, px // 4)
    width = sum(p.size[0] for p in parts) + gap * (len(parts) - 1)
    out = Image.new("RGBA", (width, max(p.size[1] for p in parts)), (0, 0, 0, 0))
    x = 0
    for p in parts:
        out.alpha_composite(p, (x, (out.size[1] - p.size[1]) // 2))
        x += p.size[0] + gap
    if ov.effect == "shadow":  # a soft dark copy down and to the right, under the mark
        d = max(1, px // 12)
        alpha = out.getchannel("A").filter(ImageFilter.GaussianBlur(max(0.5, d / 2)))
        shadow = Image.new("RGBA", (out.size[0] + d, out.size[1] + d), (0, 0, 0, 0))
        black = Image.new("RGBA", out.size, (0, 0, 0, 255))
        black.putalpha(alpha.point(lambda v: v * 3 // 4))
        shadow.alpha_composite(black, (d, d))
        shadow.alpha_composite(out, (0, 0))
        out = shadow
    if ov.angle:
        out = out.rotate(ov.angle, expand=True, resample=Image.Resampling.BICUBIC)
    return out


def _spots(
    ov: Overlay, size: tuple[int, int], stamp: tuple[int, int], rng: random.Random
) -> list[tuple[int, int]]:
    (w, h), (sw, sh) = size, stamp
    m = int(0.02 * min(w, h))
    if ov.layout == "tiled":
        sx, sy = sw + rng.randint(sw // 4 + 4, sw + 8), sh + rng.randint(sh // 2 + 4, 2 * sh + 8)
        x0, y0 = -rng.randint(0, sx), -rng.randint(0, sy)
        return [
            (x, y)
            for j, y in enumerate(range(y0, h, sy))
            for x in range(x0 + (sx // 2 if j % 2 else 0), w, sx)
        ]
    if ov.layout == "center":
        x = (w - sw) // 2 + rng.randint(-w // 10, w // 10)
        return [(x, (h - sh) // 2 + rng.randint(-h // 10, h // 10))]
    if ov.layout == "corner":
        x = m if rng.random() < 0.5 else w - sw - m
        return [(x, m if rng.random() < 0.35 else h - sh - m)]
    return [(rng.randint(0, max(0, w - sw)), rng.randint(0, max(0, h - sh)))]


def _emboss(base: np.ndarray, alpha: np.ndarray, px: int, rng: random.Random) -> np.ndarray:
    """A relief: light edge up-left, dark edge down-right, the inside left as it was."""
    d = max(1, px // 16)
    up = np.zeros_like(alpha)
    down = np.zeros_like(alpha)
    up[:-d, :-d] = alpha[d:, d:]
    down[d:, d:] = alpha[:-d, :-d]
    relief = (up - down) * rng.uniform(50, 120)
    return np.clip(base + relief[..., None], 0, 255)


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
    out = im.convert("RGBA")
    if ov.layout == "band":  # a translucent bar across the frame, the credit inside it
        bh = min(h, int(sh * (1.4 + rng.random())) + 2)
        y = h - bh if rng.random() < 0.75 else 0
        bar = Image.new("RGBA", (w, bh), ov.band)
        out.alpha_composite(bar, (0, y))
        x = rng.choice((int(0.02 * w), (w - sw) // 2, w - sw - int(0.02 * w)))
        spots = [(max(0, x), y + (bh - sh) // 2)]
    else:
        spots = _spots(ov, (w, h), (sw, sh), rng)
    # A margin of one stamp on every side lets tiles start off-frame (alpha_composite
    # refuses negative offsets); the layer is cropped back to the frame afterwards.
    layer = Image.new("RGBA", (w + 2 * sw, h + 2 * sh), (0, 0, 0, 0))
    for x, y in spots:
        if -sw <= x and -sh <= y:
            layer.alpha_composite(stamp, (x + sw, y + sh))
    layer = layer.crop((sw, sh, sw + w, sh + h))
    if ov.effect == "emboss":
        alpha = np.asarray(layer.getchannel("A"), np.float32) / 255.0
        base = np.asarray(out.convert("RGB"), np.float32)
        return Image.fromarray(_emboss(base, alpha, px, rng).astype(np.uint8), "RGB")
    out.alpha_composite(layer)
    return out.convert("RGB")
