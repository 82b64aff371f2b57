"""C2PA beyond the JPEG fixtures: manifests signed here (a throwaway CA, tests/c2pa_support.py)
into every image kind the decoder reads and into an mp4 clip, read back by the stage's reader;
a signed file whose pixels are changed afterwards is invalid; the decide rules see both."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipaudit.curate.stages.rights import C2paStage, c2pa_reasons
from clipaudit.data.decode import decode_image, decode_sample
from clipaudit.data.sample import Sample
from clipaudit.data.video import encode_video
from clipaudit.rights.provenance import read_c2pa
from clipaudit.rules.schema import load_pack
from tests.c2pa_support import sign

KINDS = [
    ("PNG", "image/png"),
    ("JPEG", "image/jpeg"),
    ("WEBP", "image/webp"),
    ("TIFF", "image/tiff"),
    ("AVIF", "image/avif"),
    ("GIF", "image/gif"),
]


def _picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    _picture().save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "mime"), KINDS)
def test_a_manifest_signed_into_each_image_kind_is_read(fmt: str, mime: str) -> None:
    signed = sign(_encoded(fmt), mime)
    info = read_c2pa(signed)
    assert (info.status, info.validation, info.valid) == ("present", "Valid", True)
    assert info.source_types == ["trainedAlgorithmicMedia"]
    assert info.training == {"ai_generative_training": "notAllowed"}
    # The signed file is still the picture it was.
    dec, plain = decode_image(signed), decode_image(_encoded(fmt))
    assert dec.error is None and dec.image is not None and plain.image is not None
    assert np.array_equal(np.asarray(dec.image), np.asarray(plain.image))


def test_a_signed_mp4_clip_is_read_and_still_decodes() -> None:
    clip = encode_video([_picture()] * 8)
    signed = sign(clip, "video/mp4")
    info = read_c2pa(signed)
    assert (info.status, info.valid, info.training) == (
        "present",
        True,
        {"ai_generative_training": "notAllowed"},
    )
    dec = decode_sample(Sample("v", signed, image_ext="mp4"))
    plain = decode_sample(Sample("v", clip, image_ext="mp4"))
    assert dec.error is None and dec.frames is not None and plain.frames is not None
    assert len(dec.frames) == len(plain.frames) >= 7
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(dec.frames, plain.frames, strict=True)
    )


@pytest.mark.parametrize(
    ("fmt", "mime", "marker"), [("PNG", "image/png", b"IDAT"), ("TIFF", "image/tiff", None)]
)
def test_pixels_changed_after_signing_make_the_manifest_invalid(
    fmt: str, mime: str, marker: bytes | None
) -> None:
    signed = sign(_encoded(fmt), mime)
    at = signed.find(marker) + 20 if marker else len(signed) // 2
    tampered = bytearray(signed)
    for k in range(at, at + 20):
        tampered[k] ^= 0x55
    info = read_c2pa(bytes(tampered))
    assert (info.status, info.validation, info.valid) == ("present", "Invalid", False)


def test_the_rules_read_signed_pngs_and_clips() -> None:
    png = sign(_encoded("PNG"), "image/png")
    samples = [
        Sample("png", png),
        Sample("clip", sign(encode_video([_picture()] * 4), "video/mp4"), image_ext="mp4"),
        Sample("plain", _encoded("PNG")),
    ]
    stage = C2paStage()
    rows = [stage.prepare(s, decode_sample(s)) for s in samples]
    sig = {c: np.array([r[k] for r in rows], dtype=object) for k, c in enumerate(stage.columns)}
    sig["id"] = np.array([s.id for s in samples], dtype=object)
    assert list(sig["c2pa_status"]) == ["present", "present", "no_manifest"]
    assert list(sig["c2pa_ai_generated"])[:2] == [True, True]
    reasons = c2pa_reasons(sig, load_pack("default"))
    assert reasons[2] == []
    for r in reasons[:2]:
        assert "optout_c2pa" in r
