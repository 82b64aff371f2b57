"""A small seeded image-caption set for the README's first command and for tests.

Coloured shapes on noisy backgrounds, captioned by what they show. The synthetic world
(`clipaudit.world`) is the full generator; this is the minimal one the foundation needs.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

from PIL import Image, ImageDraw

from clipaudit.data.sample import Sample
from clipaudit.world.vocab import COLORS as WORLD_COLORS

# Six of the world's colours and its three simplest shapes, so example data speaks the
# bundled model's vocabulary.
COLORS = {c: WORLD_COLORS[c] for c in ("red", "green", "blue", "yellow", "purple", "orange")}
SHAPES = ("circle", "square", "triangle")


def _draw(rng: random.Random, size: int, color: tuple[int, int, int], shape: str) -> Image.Image:
    bg = tuple(rng.randint(170, 250) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)
    px = im.load()
    assert px is not None
    for _ in range(size * 2):  # sparse noise so no two images are pixel-identical
        x, y = rng.randrange(size), rng.randrange(size)
        px[x, y] = tuple(rng.randint(0, 255) for _ in range(3))
    d = ImageDraw.Draw(im)
    r = rng.randint(size // 6, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    return im


def example_samples(n: int = 64, seed: int = 0, size: int = 96) -> Iterator[Sample]:
    rng = random.Random(seed)
    for i in range(n):
        cname = rng.choice(sorted(COLORS))
        shape = rng.choice(SHAPES)
        im = _draw(rng, size, COLORS[cname], shape)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        yield Sample(
            id=f"{i:06d}",
            image=buf.getvalue(),
            caption=f"{'an' if cname[0] in 'aeiou' else 'a'} {cname} {shape}",
            url=f"https://example.org/img/{i:06d}.jpg",
            meta={
                "color": cname,
                "shape": shape,
                "headers": json.loads('{"content-type": "image/jpeg"}'),
            },
            image_ext="jpg",
        )
