"""The words and looks of the synthetic world: shapes, colours, sizes, groups, occupations.

Groups are abstract (two nonce words carried by head shape and collar colour) and never
stand for a real demographic; occupations are shown by props, so a model must look at the
image to tell them.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 30),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "purple": (135, 45, 175),
    "pink": (245, 120, 195),
    "black": (25, 25, 25),
}

# Fraction of the image side an object spans, by size word.
SIZES: dict[str, tuple[float, float]] = {"small": (0.22, 0.30), "large": (0.40, 0.52)}

# Group name → head shape. Nonce words on purpose: no real group is depicted.
GROUPS: dict[str, str] = {"zib": "round", "mox": "square"}
# Each group also wears a collar of its own colour (no colour word of the world names it),
# so the trait stays visible under every occupation's costume.
# Both are saturated hues no occupation prop uses, so no prop looks like either group.
GROUP_COLLARS: dict[str, tuple[int, int, int]] = {"zib": (0, 160, 160), "mox": (110, 40, 190)}

OCCUPATIONS: tuple[str, ...] = ("doctor", "chef", "builder", "painter", "farmer")

# What each occupation holds or wears, for captions ("a chef with a tall white hat").
PROPS: dict[str, str] = {
    "doctor": "a red cross",
    "chef": "a tall white hat",
    "builder": "a yellow hard hat",
    "painter": "a palette",
    "farmer": "a pitchfork",
}

# Clothing colours are independent of occupation and group, so neither leaks through them.
CLOTHING: tuple[tuple[int, int, int], ...] = (
    (70, 90, 120),
    (110, 80, 60),
    (90, 110, 90),
    (120, 120, 130),
    (150, 100, 110),
)

WATERMARK_TEXTS: tuple[str, ...] = (
    "SAMPLE",
    "PREVIEW",
    "© STOCKPIX",
    "watermark",
    "ShutterPics",
    "PROOF",
    "COPYRIGHT",
    "imgstock",
    "DO NOT COPY",
    "photoagency",
)

# The planted bias: in training, this occupation is shown with this group at this rate.
BIASED_OCCUPATION = "doctor"
BIASED_GROUP = "zib"
BIAS_RATE = 0.8
# ... and its captions mark the other group ("a mox doctor"), never the planted one alone.
MARK_MINORITY = True
