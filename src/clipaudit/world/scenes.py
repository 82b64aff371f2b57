"""Scenes of the world: a seeded description, its image, its caption and its ground truth."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from clipaudit.world.captions import objects_caption, person_caption, watermark_suffix
from clipaudit.world.render import (
    ObjectSpec,
    PersonSpec,
    WatermarkSpec,
    overlay_watermark,
    person_spec,
    place_objects,
    render_objects,
    render_person,
    watermark_spec,
)
from clipaudit.world.vocab import (
    BIAS_RATE,
    BIASED_GROUP,
    BIASED_OCCUPATION,
    COLORS,
    GROUPS,
    OCCUPATIONS,
    SHAPES,
    SIZES,
    WATERMARK_TEXTS,
)


@dataclass
class Scene:
    kind: str  # "objects" or "person"
    objects: list[ObjectSpec] = field(default_factory=list)
    person: PersonSpec | None = None
    watermark: WatermarkSpec | None = None
    caption: str = ""
    seed: str = ""

    def truth(self) -> dict[str, Any]:
        """Ground truth as plain JSON-able values."""
        out: dict[str, Any] = {"kind": self.kind, "caption": self.caption}
        if self.objects:
            out["objects"] = [
                {"shape": o.shape, "color": o.color, "size": o.size} for o in self.objects
            ]
        if self.person:
            out["group"] = self.person.group
            out["occupation"] = self.person.occupation
        out["watermark"] = (
            {
                "kind": self.watermark.kind,
                "text": self.watermark.text,
                "opacity": round(self.watermark.opacity, 3),
                "tiled": self.watermark.tiled,
            }
            if self.watermark
            else None
        )
        return out

    def render(self, size: int) -> Image.Image:
        rng = random.Random(f"{self.seed}:pixels")
        if self.kind == "person":
            assert self.person is not None
            im = render_person(self.person, rng, size)
        else:
            im = render_objects(self.objects, rng, size)
        if self.watermark is not None:
            im = overlay_watermark(im, self.watermark)
        return im


def rng_for(seed: int, split: str, index: int) -> random.Random:
    """Each sample has its own stream, so any one can be rebuilt without the others."""
    return random.Random(f"clipaudit-world:{seed}:{split}:{index}")


def objects_scene(
    rng: random.Random,
    n_objects: int | None = None,
    wanted: list[tuple[str, str, str]] | None = None,
) -> Scene:
    if wanted is None:
        n = n_objects or rng.choice((1, 1, 2, 2, 3))
        wanted = [
            (rng.choice(SHAPES), rng.choice(sorted(COLORS)), rng.choice(sorted(SIZES)))
            for _ in range(n)
        ]
    objs = place_objects(rng, wanted)
    return Scene(
        "objects", objects=objs, caption=objects_caption(objs, rng), seed=str(rng.getrandbits(64))
    )


def person_scene(
    rng: random.Random,
    group: str | None = None,
    occupation: str | None = None,
    biased: bool = False,
) -> Scene:
    occ = occupation or rng.choice(OCCUPATIONS)
    if group is None:
        if biased and occ == BIASED_OCCUPATION:
            others = [g for g in GROUPS if g != BIASED_GROUP]
            group = BIASED_GROUP if rng.random() < BIAS_RATE else rng.choice(others)
        else:
            group = rng.choice(sorted(GROUPS))
    p = person_spec(rng, group, occ)
    return Scene(
        "person", person=p, caption=person_caption(p, rng, biased), seed=str(rng.getrandbits(64))
    )


def add_watermark(
    scene: Scene, rng: random.Random, mention_rate: float, texts: tuple[str, ...] = WATERMARK_TEXTS
) -> Scene:
    scene.watermark = watermark_spec(rng, texts)
    if rng.random() < mention_rate:
        scene.caption += watermark_suffix(rng)
    return scene


def encode(im: Image.Image, rng: random.Random, fmt: str | None = None) -> tuple[bytes, str]:
    """JPEG mostly, some PNG and WebP, as a crawl would have."""
    fmt = fmt or rng.choices(("jpg", "png", "webp"), weights=(8, 1, 1))[0]
    buf = io.BytesIO()
    if fmt == "jpg":
        im.save(buf, format="JPEG", quality=rng.randint(80, 95))
    elif fmt == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="WEBP", quality=85)
    return buf.getvalue(), fmt
