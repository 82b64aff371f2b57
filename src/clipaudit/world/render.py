"""Pillow renderers for the world: backgrounds, shapes, stylised people and watermarks.

Everything takes an explicit ``random.Random`` so a scene is a pure function of its seed.
Sizes are fractions of the image side, so any output size gives the same picture.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clipaudit.world.vocab import CLOTHING, COLORS, GROUP_COLLARS, GROUPS, SIZES

RGB = tuple[int, int, int]


@dataclass
class ObjectSpec:
    shape: str
    color: str
    size: str
    cx: float
    cy: float
    r: float
    angle: float


@dataclass
class PersonSpec:
    group: str
    occupation: str
    cx: float
    cy: float
    scale: float
    clothing: RGB


@dataclass
class WatermarkSpec:
    kind: str  # "text" or "logo"
    text: str
    opacity: float
    scale: float
    angle: float
    x: float
    y: float
    tiled: bool
    color: RGB
    font_size: float = 0.12
    extra: dict[str, Any] = field(default_factory=dict)


def background(rng: random.Random, size: int) -> Image.Image:
    """A muted background: flat, gradient or striped, so objects always stand out."""
    base = tuple(rng.randint(150, 235) for _ in range(3))
    kind = rng.choice(("flat", "gradient", "stripes"))
    if kind == "flat":
        return Image.new("RGB", (size, size), base)
    other = np.array([rng.randint(150, 235) for _ in range(3)], np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)
    if kind == "gradient":
        ramp = t[:, None] if rng.random() < 0.5 else t[None, :]
        ramp = np.broadcast_to(ramp, (size, size))
    else:
        period = rng.randint(6, 16) / 128
        ramp = np.broadcast_to(((t / period) % 2 < 1).astype(np.float32)[None, :], (size, size))
        ramp = ramp * 0.35
    arr = (
        np.array(base, np.float32)[None, None, :] * (1 - ramp[..., None]) + other * ramp[..., None]
    )
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def _poly(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]]
    if shape == "square":
        pts = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rad = 1.0 if k % 2 == 0 else 0.42
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "hexagon":
        pts = [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]
    elif shape == "diamond":
        pts = [(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)]
    else:
        raise ValueError(shape)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def draw_object(draw: ImageDraw.ImageDraw, obj: ObjectSpec, size: int) -> None:
    fill = COLORS[obj.color]
    cx, cy, r = obj.cx * size, obj.cy * size, obj.r * size
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_poly(obj.shape, cx, cy, r, obj.angle), fill=fill)


# Rotation limits keep shapes apart: a square turned 45° would be a diamond.
MAX_ANGLE = {
    "circle": 0.0,
    "square": 0.3,
    "triangle": 0.4,
    "star": 0.6,
    "hexagon": 0.5,
    "diamond": 0.25,
}


def place_objects(rng: random.Random, wanted: list[tuple[str, str, str]]) -> list[ObjectSpec]:
    """Positions that do not overlap much; tries a few times per object, then shrinks it."""
    placed: list[ObjectSpec] = []
    for shape, color, size_word in wanted:
        lo, hi = SIZES[size_word]
        r = rng.uniform(lo, hi) / 2
        for attempt in range(30):
            rr = r * (0.85 if attempt > 20 else 1.0)
            cx, cy = rng.uniform(rr + 0.02, 0.98 - rr), rng.uniform(rr + 0.02, 0.98 - rr)
            if all(math.hypot(cx - o.cx, cy - o.cy) > (rr + o.r) * 0.95 for o in placed):
                break
        angle = rng.uniform(-MAX_ANGLE[shape], MAX_ANGLE[shape])
        placed.append(ObjectSpec(shape, color, size_word, cx, cy, rr, angle))
    return placed


def add_noise(im: Image.Image, rng: random.Random, sigma: float) -> Image.Image:
    nrng = np.random.default_rng(rng.getrandbits(32))
    arr = np.asarray(im, np.float32) + nrng.normal(0, sigma, (im.size[1], im.size[0], 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def render_objects(objs: list[ObjectSpec], rng: random.Random, size: int) -> Image.Image:
    im = background(rng, size)
    d = ImageDraw.Draw(im)
    for obj in objs:
        draw_object(d, obj, size)
    return add_noise(im, rng, rng.uniform(2, 8))


def render_person(p: PersonSpec, rng: random.Random, size: int) -> Image.Image:
    """A stick-and-block figure; head shape carries the group, props the occupation."""
    im = background(rng, size)
    d = ImageDraw.Draw(im)
    u = p.scale * size  # figure height unit
    cx, top = p.cx * size, p.cy * size - 0.5 * u
    head_r = 0.11 * u
    hy = top + head_r
    skin = (235, 195, 160) if rng.random() < 0.5 else (150, 105, 75)
    body_top, body_bot = hy + head_r, hy + head_r + 0.42 * u
    bw = 0.17 * u
    coat = (250, 250, 250) if p.occupation == "doctor" else p.clothing
    # legs and arms
    for dx in (-0.07 * u, 0.07 * u):
        d.line(
            (cx + dx, body_bot, cx + dx * 1.5, body_bot + 0.33 * u),
            fill=(40, 40, 60),
            width=max(2, int(0.05 * u)),
        )
    d.line(
        (cx - bw, body_top + 0.05 * u, cx - bw - 0.12 * u, body_top + 0.3 * u),
        fill=coat,
        width=max(2, int(0.05 * u)),
    )
    d.line(
        (cx + bw, body_top + 0.05 * u, cx + bw + 0.12 * u, body_top + 0.3 * u),
        fill=coat,
        width=max(2, int(0.05 * u)),
    )
    d.rectangle((cx - bw, body_top, cx + bw, body_bot), fill=coat)
    # group traits: a collar of the group's colour and the head shape
    d.rectangle((cx - bw, body_top, cx + bw, body_top + 0.07 * u), fill=GROUP_COLLARS[p.group])
    box = (cx - head_r, hy - head_r, cx + head_r, hy + head_r)
    if GROUPS[p.group] == "round":
        d.ellipse(box, fill=skin)
    else:
        d.rectangle(box, fill=skin)
    hand = (cx + bw + 0.12 * u, body_top + 0.3 * u)
    _draw_prop(d, p.occupation, cx, hy, head_r, body_top, bw, hand, u)
    return add_noise(im, rng, rng.uniform(2, 6))


def _draw_prop(
    d: ImageDraw.ImageDraw,
    occ: str,
    cx: float,
    hy: float,
    hr: float,
    body_top: float,
    bw: float,
    hand: tuple[float, float],
    u: float,
) -> None:
    if occ == "doctor":
        c, s, t = (cx, body_top + 0.16 * u), 0.09 * u, 0.035 * u
        d.rectangle((c[0] - s, c[1] - t, c[0] + s, c[1] + t), fill=(220, 20, 30))
        d.rectangle((c[0] - t, c[1] - s, c[0] + t, c[1] + s), fill=(220, 20, 30))
    elif occ == "chef":
        d.rectangle(
            (cx - hr * 0.8, hy - hr - 0.2 * u, cx + hr * 0.8, hy - hr * 0.7), fill=(252, 252, 252)
        )
        d.ellipse(
            (cx - hr * 1.1, hy - hr - 0.28 * u, cx + hr * 1.1, hy - hr - 0.1 * u),
            fill=(252, 252, 252),
        )
    elif occ == "builder":
        d.pieslice(
            (cx - hr * 1.25, hy - hr * 1.6, cx + hr * 1.25, hy + hr * 0.6),
            180,
            360,
            fill=(250, 205, 0),
        )
        d.rectangle(
            (cx - bw, body_top + 0.12 * u, cx + bw, body_top + 0.18 * u), fill=(255, 120, 0)
        )
        d.rectangle(
            (cx - bw, body_top + 0.26 * u, cx + bw, body_top + 0.32 * u), fill=(255, 120, 0)
        )
    elif occ == "painter":
        px, py = hand
        d.ellipse((px - 0.11 * u, py - 0.08 * u, px + 0.11 * u, py + 0.08 * u), fill=(160, 110, 60))
        for k, col in enumerate(((230, 30, 30), (30, 80, 230), (240, 220, 20), (30, 170, 60))):
            a = k * math.pi / 2 + 0.5
            qx, qy = px + 0.06 * u * math.cos(a), py + 0.045 * u * math.sin(a)
            d.ellipse((qx - 0.02 * u, qy - 0.02 * u, qx + 0.02 * u, qy + 0.02 * u), fill=col)
        d.ellipse((cx - hr * 1.2, hy - hr * 1.3, cx + hr * 1.0, hy - hr * 0.5), fill=(120, 20, 60))
    elif occ == "farmer":
        px, py = hand
        d.line(
            (px, py - 0.35 * u, px, py + 0.25 * u), fill=(120, 80, 30), width=max(2, int(0.03 * u))
        )
        for dx in (-0.05 * u, 0, 0.05 * u):
            d.line(
                (px + dx, py - 0.45 * u, px + dx, py - 0.33 * u),
                fill=(110, 110, 120),
                width=max(1, int(0.02 * u)),
            )
        d.line(
            (px - 0.05 * u, py - 0.33 * u, px + 0.05 * u, py - 0.33 * u),
            fill=(110, 110, 120),
            width=max(1, int(0.02 * u)),
        )
        d.ellipse(
            (cx - hr * 2.0, hy - hr * 1.0, cx + hr * 2.0, hy - hr * 0.55), fill=(205, 170, 90)
        )
        d.rectangle(
            (cx - hr * 0.9, hy - hr * 1.5, cx + hr * 0.9, hy - hr * 0.8), fill=(205, 170, 90)
        )
    else:
        raise ValueError(occ)


def person_spec(rng: random.Random, group: str, occupation: str) -> PersonSpec:
    scale = rng.uniform(0.62, 0.9)
    return PersonSpec(
        group,
        occupation,
        rng.uniform(0.3, 0.7),
        rng.uniform(0.48, 0.56),
        scale,
        rng.choice(CLOTHING),
    )


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, px))


def watermark_spec(rng: random.Random, texts: tuple[str, ...]) -> WatermarkSpec:
    tiled = rng.random() < 0.3
    return WatermarkSpec(
        kind="logo" if rng.random() < 0.25 else "text",
        text=rng.choice(texts),
        opacity=rng.uniform(0.35, 0.85),
        scale=rng.uniform(0.6, 1.4),
        angle=rng.choice((0.0, 0.0, rng.uniform(-40, 40))),
        x=rng.uniform(0.05, 0.6),
        y=rng.uniform(0.05, 0.85),
        tiled=tiled,
        color=rng.choice(((255, 255, 255), (240, 240, 240), (30, 30, 30), (128, 128, 128))),
        font_size=rng.uniform(0.1, 0.18),
    )


def overlay_watermark(im: Image.Image, wm: WatermarkSpec) -> Image.Image:
    """Blend a text or logo mark over ``im`` at the spec's opacity, angle and position."""
    size = im.size[0]
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    alpha = int(255 * wm.opacity)
    stamp = _stamp(wm, size, alpha)
    positions = [(wm.x, wm.y)]
    if wm.tiled:
        step_x, step_y = (
            max(0.25, stamp.size[0] / size + 0.08),
            max(0.2, stamp.size[1] / size + 0.12),
        )
        positions = [
            (x * step_x, y * step_y)
            for x in range(int(1 / step_x) + 1)
            for y in range(int(1 / step_y) + 1)
        ]
    for x, y in positions:
        px = int(x * size) % size
        if not wm.tiled:  # a single mark stays (mostly) inside the frame
            px = min(px, max(0, size - stamp.size[0]))
        layer.alpha_composite(stamp, (px, int(y * size) % size))
    out = im.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def _stamp(wm: WatermarkSpec, size: int, alpha: int) -> Image.Image:
    fpx = int(wm.font_size * size * wm.scale)
    font = _font(fpx)
    if wm.kind == "text":
        bbox = font.getbbox(wm.text)
        w, h = int(bbox[2] - bbox[0]) + 4, int(bbox[3] - bbox[1]) + 6
        st = Image.new("RGBA", (max(w, 1), max(h, 1)), (0, 0, 0, 0))
        ImageDraw.Draw(st).text(
            (2 - bbox[0], 2 - bbox[1]), wm.text, font=font, fill=(*wm.color, alpha)
        )
    else:
        d0 = int(fpx * 2.2)
        st = Image.new("RGBA", (d0, d0), (0, 0, 0, 0))
        dd = ImageDraw.Draw(st)
        dd.ellipse((1, 1, d0 - 2, d0 - 2), outline=(*wm.color, alpha), width=max(2, d0 // 12))
        letter = wm.text.strip("© ")[:1].upper() or "W"
        lf = _font(int(d0 * 0.55))
        bb = lf.getbbox(letter)
        dd.text(
            ((d0 - (bb[2] - bb[0])) / 2 - bb[0], (d0 - (bb[3] - bb[1])) / 2 - bb[1]),
            letter,
            font=lf,
            fill=(*wm.color, alpha),
        )
    if wm.angle:
        st = st.rotate(wm.angle, expand=True, resample=Image.Resampling.BICUBIC)
    return st
