from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipaudit.data import decode_image
from clipaudit.data.decode import decode_sample
from clipaudit.data.sample import Sample, sniff_image_ext

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


def _saved(fmt: str) -> bytes:
    im = Image.new("RGB", (64, 48), (20, 180, 40))
    im.paste((200, 30, 30), (0, 0, 32, 48))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


# An HEIF still image's first box as a phone writes it (ftyp, major brand heic), then bytes
# no decoder here can read.
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)


@pytest.mark.parametrize(("fmt", "ext"), [("AVIF", "avif"), ("JPEG2000", "jp2")])
def test_avif_and_jpeg2000_are_images_not_videos(fmt: str, ext: str) -> None:
    from PIL import features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    data = _saved(fmt)
    # An AVIF is an ISO media file like an mp4: the ftyp brands, not the box name, decide.
    assert sniff_image_ext(data) == ext
    assert Sample("a", data).media == "image"
    dec = decode_sample(Sample("a", data))
    assert dec.error is None and dec.frames is None and dec.image is not None
    assert dec.image.size == (64, 48)
    left, right = dec.image.getpixel((8, 24)), dec.image.getpixel((56, 24))
    assert left[0] > 150 > left[1] and right[1] > 130 > right[0], (left, right)


def test_heic_without_a_decoder_names_what_to_install() -> None:
    from clipaudit.data.decode import HEIF_DECODER, NO_HEIF

    assert sniff_image_ext(HEIC_HEAD) == "heic"
    assert Sample("h", HEIC_HEAD).media == "image"
    assert sniff_image_ext(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42") == "mp4"
    if HEIF_DECODER:
        pytest.skip("pillow-heif is installed here")
    dec = decode_image(HEIC_HEAD)
    assert dec.error == "decode_error" and dec.detail == NO_HEIF


def test_an_image_folder_lists_avif_and_heic_files(tmp_path: Path) -> None:
    """Files of an image kind the folder reader did not know were passed over in silence."""
    from clipaudit.data.formats import open_dataset

    (tmp_path / "a.jpg").write_bytes(_saved("JPEG"))
    (tmp_path / "b.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf")
    (tmp_path / "c.heic").write_bytes(HEIC_HEAD)
    (tmp_path / "notes.txt").write_text("not a sample")
    ds = open_dataset(tmp_path, format="imagefolder")
    got = {s.image_ext: s for shard in ds.shards() for s in ds.read_shard(shard)}
    assert sorted(got) == ["avif", "heic", "jpg"]
    assert all(s.image and s.error is None and s.media == "image" for s in got.values())


def test_postscript_is_not_rendered_and_rare_kinds_are_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow renders EPS by running Ghostscript; untrusted bytes never get that far."""
    from PIL import EpsImagePlugin

    from clipaudit.data.decode import NOT_READ

    ran: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"  # what Pillow alone would do
    dec = decode_image(eps)
    assert dec.error == "decode_error" and dec.detail == NOT_READ and not ran
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PCX")  # a kind Pillow reads, datasets do not hold
    assert decode_image(buf.getvalue()).detail == NOT_READ


def test_a_phone_jpeg_with_a_second_picture_decodes() -> None:
    buf = io.BytesIO()
    first, depth = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (40, 30))
    first.save(buf, format="MPO", save_all=True, append_images=[depth])
    dec = decode_image(buf.getvalue())
    assert dec.error is None and dec.format == "MPO" and dec.image is not None
    assert dec.image.getpixel((20, 15))[0] > 150  # the first picture, not the second
