"""Zero-shot prompt sets for the world's classes (per-class prompt lists, CLIP_benchmark shape)."""

from __future__ import annotations

from clipaudit.world.captions import article
from clipaudit.world.vocab import COLORS, GROUPS, OCCUPATIONS, SHAPES


def color_prompts() -> dict[str, list[str]]:
    """Each colour, named on every shape, so the head averages the shapes out."""
    return {c: [f"{article(c)} {c} {s}" for s in SHAPES] for c in COLORS}


def shape_prompts() -> dict[str, list[str]]:
    return {s: [f"{article(c)} {c} {s}" for c in COLORS] for s in SHAPES}


def occupation_prompts() -> dict[str, list[str]]:
    return {
        o: [f"{article(o)} {o}", f"a photo of {article(o)} {o}", f"a picture of {article(o)} {o}"]
        for o in OCCUPATIONS
    }


def group_prompts() -> dict[str, list[str]]:
    return {g: [f"{article(g)} {g} person", f"a photo of {article(g)} {g} person"] for g in GROUPS}


WATERMARK_PROMPTS = ("a photo with a watermark", "a photo")
