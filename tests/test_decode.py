from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipaudit.data import decode_image

GOOD = ("jpeg", "progressive", "cmyk", "png_alpha", "palette", "png16", "gray", "webp")


@pytest.mark.parametrize("name", GOOD)
def test_every_kind_decodes_to_rgb_of_the_stored_size(zoo: dict, name: str) -> None:
    dec = decode_image(zoo[name][0])
    assert dec.error is None, dec.detail
    assert dec.image is not None and dec.image.mode == "RGB"
    assert dec.image.size == (120, 80)


def test_exif_orientation_is_applied(zoo: dict) -> None:
    dec = decode_image(zoo["exif_rotated"][0])
    assert dec.stored_size == (120, 80)
    assert dec.image is not None and dec.image.size == (80, 120)


def test_alpha_is_composited_on_white(zoo: dict) -> None:
    dec = decode_image(zoo["png_alpha"][0])
    assert dec.image is not None
    assert dec.image.getpixel((5, 5)) == (255, 255, 255)  # the transparent corner
    assert dec.image.getpixel((100, 70)) != (255, 255, 255)


def test_16_bit_keeps_its_tones(zoo: dict) -> None:
    dec = decode_image(zoo["png16"][0])
    gray8 = np.asarray(Image.open(io.BytesIO(zoo["gray"][0])))
    got = np.asarray(dec.image)[..., 0]
    # value*257 >> 8 == value for 8-bit data scaled to 16 bits
    assert np.array_equal(got, gray8)
    assert got.std() > 20  # not clipped to white, which a bare convert("RGB") would give


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (None, "missing_image"),
        (b"", "empty_image"),
        (b"not an image at all", "decode_error"),
    ],
)
def test_bad_bytes_give_reason_codes(data: bytes | None, code: str) -> None:
    dec = decode_image(data)
    assert dec.image is None and dec.error == code


def test_truncated_and_corrupt_are_decode_errors(zoo: dict) -> None:
    for name in ("truncated", "corrupt"):
        dec = decode_image(zoo[name][0])
        assert dec.image is None and dec.error == "decode_error", name
        assert dec.detail


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")
    dec = decode_image(buf.getvalue(), max_pixels=1_000_000)
    assert dec.error == "image_too_large" and dec.detail == "3000x3000"
    # Past Pillow's own guard the refusal comes from Pillow, with the same reason code.
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")
    dec = decode_image(buf.getvalue())
    assert dec.error == "image_too_large" and "144000000 pixels" in (dec.detail or "")
