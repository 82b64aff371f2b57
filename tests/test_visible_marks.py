"""The synthetic marks the visible-watermark detector learns from and is measured on: split
discipline (fonts by family, logos, words), each layout and effect really drawn where it
says, and the photo parts (fit / tune / held-out) the training and the card rest on."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clipaudit.calibrate.photo_split import TUNE_SHARE, is_tune, part_of
from clipaudit.safety.visible import marks as vm
from clipaudit.safety.visible.train import MARKED_PHOTOS, marked_photos

SHARED_PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "photos"


def _photo(w: int = 320, h: int = 240) -> Image.Image:
    """A smooth stand-in photo: gradients, no edges of its own."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 / w, y * 255 / h, np.full_like(x, 120)], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def test_font_split_is_by_family_and_disjoint() -> None:
    train, held = vm.available_fonts("train"), vm.available_fonts("heldout")
    assert train and vm.PILLOW_DEFAULT in held
    assert not set(train) & set(held)
    assert not {vm.family(f) for f in train} & {vm.family(f) for f in held}
    assert vm.family("DejaVuSansMono-BoldOblique") == "DejaVuSansMono"
    assert vm.family("STIXGeneralBolIta") == "STIXGeneral"
    assert vm.family("EBGaramond12-Italic") == "EBGaramond"
    assert vm.family("FreeSansBoldOblique") == "FreeSans"
    # No symbol or maths font stands in for letters.
    assert not any(vm._NOT_TEXT.search(f) for f in train + held)


def test_texts_and_logos_never_cross_the_split() -> None:
    assert not set(vm.logos_of("train")) & set(vm.logos_of("heldout"))
    assert "ring_letter" in vm.logos_of("heldout")  # the world's logo style
    rng = random.Random(1)
    seen = set().union(*(vm.words(vm.draw_text(rng, "train")) for _ in range(4000)))
    assert not seen & vm.HELD_OUT_WORDS
    for text in vm.WATERMARK_TEXTS:
        assert vm.words(text) <= vm.HELD_OUT_WORDS


@pytest.mark.parametrize("layout", vm.LAYOUTS)
def test_every_layout_marks_the_image(layout: str) -> None:
    base = _photo()
    for seed in range(6):
        rng = random.Random(f"{layout}:{seed}")
        ov = vm.draw_overlay(rng, "train", layout=layout)
        assert ov.layout == layout
        out = np.asarray(vm.apply_overlay(base, ov, rng), np.int16)
        changed = np.abs(out - np.asarray(base, np.int16)).max(-1) > 8
        assert out.shape == (240, 320, 3)
        assert changed.any(), ov.describe()
        rows = np.nonzero(changed.any(1))[0]
        if layout == "band":  # a bar across the whole width, at the top or the bottom
            assert changed.any(0).mean() > 0.9
            assert rows[0] == 0 or rows[-1] == 239
        if layout == "tiled":  # repeated down the frame, not one stamp
            assert rows[-1] - rows[0] > 80, ov.describe()


def test_outline_and_emboss_leave_the_inside_of_the_letters() -> None:
    from scipy.ndimage import binary_dilation, binary_erosion, binary_fill_holes

    base = Image.new("RGB", (600, 200), (90, 90, 90))
    common: dict[str, Any] = {
        "kind": "text",
        "layout": "single",
        "text": "HIM",
        "font": "DejaVuSans-Bold",
        "logo": "star",
        "opacity": 1.0,
        "height": 0.9,
        "angle": 0.0,
        "color": (255, 255, 255),
        "band": (0, 0, 0, 0),
    }

    def draw(effect: str) -> np.ndarray:
        ov = vm.Overlay(effect=effect, **common)
        return np.asarray(vm.apply_overlay(base, ov, random.Random(0)), np.int16)

    filled, outline, embossed = draw("fill"), draw("outline"), draw("emboss")
    ink = (filled != 90).any(-1)
    assert ink.sum() > 5000
    inside = binary_erosion(ink, iterations=12)  # deeper than the relief
    assert inside.sum() > 100
    # Outline: the ring is drawn, what it encloses is not (its stamp is wider, so it sits
    # elsewhere: its own letters are the ring with its holes filled).
    ring = (outline != 90).any(-1)
    letters = binary_erosion(binary_fill_holes(ring), iterations=14)
    assert ring.sum() > 500 and letters.sum() > 5000
    assert (outline[letters] == 90).all(-1).mean() > 0.95
    # Emboss: a light and a dark edge, the flat grey kept inside the strokes.
    assert (embossed > 130).any() and (embossed < 50).any()
    edge = ink & ~binary_erosion(ink)
    near_edge = binary_dilation(edge, iterations=2 * (180 // 16) + 1)  # the relief's reach
    relief = (embossed != 90).any(-1)
    assert relief.sum() > 1000 and not (relief & ~near_edge).any()
    assert (embossed[inside] == 90).all(-1).mean() > 0.3


def test_tune_part_is_a_stable_fifth_of_the_calibration_photos() -> None:
    names = [f"caltech101/c{k % 37}/image_{k:04d}.jpg" for k in range(4000)]
    cal = [n for n in names if part_of(n) == "calibration"]
    share = np.mean([is_tune(n) for n in cal])
    assert abs(share - TUNE_SHARE) < 0.03
    assert [is_tune(n) for n in cal] == [is_tune(n) for n in reversed(cal)][::-1]


def test_labelled_photos_with_marks_exist_and_say_what_they_carry() -> None:
    record = json.loads(MARKED_PHOTOS.read_text(encoding="utf-8"))
    assert set(record["photos"]) == marked_photos()
    assert set(record["photos"]) == set(record["marks"])  # each entry names its mark
    assert all(isinstance(v, str) and len(v) > 3 for v in record["marks"].values())
    if SHARED_PHOTOS.is_dir():
        missing = [p for p in record["photos"] if not (SHARED_PHOTOS / p).is_file()]
        assert not missing
