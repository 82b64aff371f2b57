from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from clipaudit.curate.stages.borders import border_box
from clipaudit.curate.stages.hashes import perceptual_hashes_mirrored


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Smooth random colour content with texture, nowhere flat near an edge."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(40, 216, (6, 8, 3), np.uint8)
    im = Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 13, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(im, np.int16) + noise, 0, 255).astype(np.uint8))


def _jpeg(im: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _inner(im: Image.Image) -> Image.Image:
    box = border_box(im)
    return im if box is None else im.crop(box)


def _dist(a: Image.Image, b: Image.Image) -> int:
    (pa, pb), _, _ = perceptual_hashes_mirrored([a, b])
    return bin((pa ^ pb) & (2**64 - 1)).count("1")


def test_black_and_white_borders_are_trimmed_back_to_the_original() -> None:
    trimmed, as_is = 0, 0
    for seed in range(5):
        im = _photo(seed)
        for fill in ((0, 0, 0), (255, 255, 255)):
            framed = _jpeg(ImageOps.expand(im, border=int(0.08 * im.width), fill=fill))
            d = _dist(_inner(im), _inner(framed))
            assert d <= 4
            trimmed += d
            as_is += _dist(im, framed)  # what hashing the framed copy as it is gives
        letterbox = _jpeg(ImageOps.expand(im, border=(0, 30, 0, 30), fill=(0, 0, 0)))
        box = border_box(letterbox)
        assert box is not None and box[0] == 0 and 30 <= box[1] <= 33
    assert as_is >= 4 * max(trimmed, 1)


def test_content_and_colour_backgrounds_are_left_alone() -> None:
    im = _photo(9)
    assert border_box(im) is None
    red = ImageOps.expand(im, border=30, fill=(200, 30, 30))  # a coloured frame is content
    assert border_box(red) is None
    assert border_box(Image.new("RGB", (300, 200), (255, 255, 255))) is None  # blank: kept
    line = ImageOps.expand(im, border=1, fill=(0, 0, 0))  # a hairline frame
    assert border_box(line) is None
    # A border wider than one round's cap is peeled over rounds, back to the content and
    # never into it (a blurred probe pixel or two inside the band's edge at most).
    wide = ImageOps.expand(im, border=200, fill=(0, 0, 0))
    box = border_box(wide)
    assert box is not None
    inside = (200, 200, 200 + im.width, 200 + im.height)
    assert all(0 <= box[k] - inside[k] <= 4 for k in (0, 1))
    assert all(0 <= inside[k] - box[k] <= 4 for k in (2, 3))
    # Content smaller than a quarter of a side is an image of a border, not a framed one.
    assert border_box(ImageOps.expand(im, border=700, fill=(0, 0, 0))) is None


def _hash_rows(images: list[Image.Image]) -> dict[str, np.ndarray]:
    """The hash stage's columns for ``images``, as an in-memory signal table."""
    from clipaudit.curate.stages.hashes import HashStage
    from clipaudit.data.decode import Decoded

    stage = HashStage.__new__(HashStage)
    rows = stage.prepare_batch([], [Decoded(image=im) for im in images])
    sig = {c: np.array([r[k] for r in rows], dtype=object) for k, c in enumerate(stage.columns)}
    sig["id"] = np.array([f"s{i}" for i in range(len(images))], dtype=object)
    w, h = zip(*(im.size for im in images), strict=True)
    sig["width"], sig["height"] = np.array(w, float), np.array(h, float)
    return sig


def test_a_framed_copy_is_a_near_duplicate_and_the_unframed_original_is_kept() -> None:
    from clipaudit.curate.decide import dedup, near_duplicate_pairs
    from clipaudit.rules.schema import Dedup, load_pack

    im, other = _photo(3), _photo(4)
    framed = _jpeg(ImageOps.expand(im, border=int(0.08 * im.width), fill=(0, 0, 0)))
    sig = _hash_rows([im, framed, other])
    assert sig["phash_inner"][0] is None and sig["phash_inner"][1] is not None
    assert sig["content_area"][1] == pytest.approx(im.width * im.height, rel=0.05)
    assert near_duplicate_pairs(sig, np.arange(3), Dedup()) == [(0, 1)]
    # Without the signals inside the border, the framed copy is not found.
    plain = {k: v for k, v in sig.items() if k not in ("phash_inner", "thumb_inner")}
    assert near_duplicate_pairs(plain, np.arange(3), Dedup()) == []
    # The keeper ranks by the area inside the border: the original is kept, not the frame.
    kept, _ = dedup(sig, np.ones(3, np.bool_), load_pack("default"))
    assert kept == {1: (0, "near_duplicate")}


def _on_white(box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> Image.Image:
    from PIL import ImageDraw

    im = Image.new("RGB", (256, 256), (250, 250, 250))
    ImageDraw.Draw(im).ellipse(box, fill=colour)
    return _jpeg(im)


def test_shapes_on_white_of_other_proportions_are_not_copies_inside_their_borders() -> None:
    """Trimmed to its object, every product shot on white became a square thumbnail: a tall
    and a wide ellipse matched inside their borders. Their contents' aspects now must agree
    (keeper.MAX_INNER_ASPECT); a framed copy's content keeps the original's aspect."""
    from clipaudit.curate.decide import near_duplicate_pairs
    from clipaudit.curate.decide.keeper import MAX_INNER_ASPECT
    from clipaudit.rules.schema import load_pack

    tall = _on_white((78, 28, 178, 228), (200, 40, 60))  # 100 x 200
    wide = _on_white((28, 78, 228, 178), (190, 50, 70))  # 200 x 100
    photo = _photo(5)
    framed = _jpeg(ImageOps.expand(photo, border=int(0.08 * photo.width), fill=(255, 255, 255)))
    sig = _hash_rows([tall, wide, photo, framed])
    assert sig["content_aspect"][0] == pytest.approx(0.5, rel=0.1)
    assert sig["content_aspect"][1] == pytest.approx(2.0, rel=0.1)
    assert sig["content_aspect"][3] == pytest.approx(320 / 240, rel=0.05)
    d = load_pack("default").dedup
    assert near_duplicate_pairs(sig, np.arange(4), d) == [(2, 3)]
    # Before the aspects were compared (a run scored without them), the two shapes matched.
    before = {k: v for k, v in sig.items() if k != "content_aspect"}
    assert near_duplicate_pairs(before, np.arange(4), d) == [(0, 1), (2, 3)]
    assert MAX_INNER_ASPECT < 2.0 / 0.5


def test_a_copy_resized_to_another_shape_is_still_a_copy_inside_its_borders() -> None:
    """Resizing to a square is ordinary preprocessing: a photo with its own white margin
    squashed to a square was lost to the aspect check (its content's aspect changes by the
    squash, but its border's shares of the image do not), and so was a letterboxed copy
    squashed beside its unframed original (one side unframed: not judged by aspect)."""
    from clipaudit.curate.decide import near_duplicate_pairs
    from clipaudit.rules.schema import load_pack

    photo = _photo(6)  # 320 x 240
    page = ImageOps.expand(photo, border=(32, 24), fill=(255, 255, 255))  # its own margin
    squashed = _jpeg(page.resize((288, 288), Image.Resampling.LANCZOS))
    other = _photo(7)
    letterboxed = _jpeg(ImageOps.expand(other, border=(0, 60), fill=(0, 0, 0)).resize((256, 256)))
    sig = _hash_rows([_jpeg(page), squashed, other, letterboxed])
    assert sig["content_aspect"][0] == pytest.approx(320 / 240, rel=0.05)
    assert sig["content_aspect"][1] == pytest.approx(1.0, rel=0.05)  # 1.33x apart
    assert sig["phash_inner"][2] is None and sig["phash_inner"][3] is not None
    assert near_duplicate_pairs(sig, np.arange(4), load_pack("default").dedup) == [
        (0, 1),
        (2, 3),
    ]


def test_a_letterboxed_copy_cropped_is_checked_inside_its_bars() -> None:
    """A 16:9-letterboxed copy cropped 90% was compared with its unframed original on the
    whole thumbnails, bars included, and never confirmed: the crop check now also reads the
    framed side inside its border."""
    from clipaudit.curate.decide import near_duplicate_pairs
    from clipaudit.rules.schema import load_pack

    found = 0
    for seed in range(8, 14):
        photo = _photo(seed)  # 320 x 240
        boxed = ImageOps.pad(photo, (427, 240), color=(0, 0, 0))
        copy = _jpeg(boxed.crop((0, 0, int(427 * 0.9), int(240 * 0.9))))
        sig = _hash_rows([_jpeg(photo), copy, _photo(seed + 100)])
        assert sig["phash_inner"][0] is None and sig["phash_inner"][1] is not None
        found += near_duplicate_pairs(sig, np.arange(3), load_pack("default").dedup) == [(0, 1)]
    assert found >= 5
