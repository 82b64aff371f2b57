"""Hostile and odd image bytes, made here from real Pillow encodings (nothing downloaded).

Each :class:`ImageCase` says what a reader of the bytes should end with: ``ok`` (decoded to
RGB, optionally with a known displayed size) or a decode reason code. ``expect`` is the set
of acceptable outcomes; a case with several may end either way (a bit flip inside entropy
coded data can still decode), but never in a crash, a hang or a lost sample.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

OK = "ok"


@dataclass
class ImageCase:
    name: str
    data: bytes
    ext: str
    expect: frozenset[str]
    # Displayed (width, height) after EXIF rotation, for cases that must decode.
    size: tuple[int, int] | None = None
    caption: str = "a hostile test image"
    meta: dict[str, object] = field(default_factory=dict)


def photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), 128 + 0 * xx], -1)
    arr = arr + rng.normal(0, 10, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(w: int, h: int, idat: bytes, bit_depth: int = 8, color: int = 2) -> bytes:
    """A PNG whose IHDR declares ``w``×``h`` whatever the IDAT holds."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(w: int, h: int) -> bytes:
    """A real JPEG whose SOF0 frame header is rewritten to claim ``w``×``h``."""
    data = bytearray(save(photo(16, 16), "JPEG"))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, h, w)
    return bytes(data)


def gif_with_screen(w: int, h: int) -> bytes:
    data = bytearray(save(photo(16, 16).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, w, h)
    # The image descriptor too, so the frame itself claims the size.
    at = data.find(b"\x2c", 13 + 3 * 256)
    if at > 0:
        struct.pack_into("<HH", data, at + 5, w, h)
    return bytes(data)


def webp_lossless_with_size(w: int, h: int) -> bytes:
    data = bytearray(save(photo(16, 16), "WEBP", lossless=True))
    at = data.find(b"VP8L")
    # VP8L header: signature 0x2f, then 14 bits width-1, 14 bits height-1.
    bits = (w - 1) | ((h - 1) << 14)
    struct.pack_into(
        "<I", data, at + 9, bits | (struct.unpack_from("<I", data, at + 9)[0] & ~0xFFFFFFF)
    )
    return bytes(data)


def tiff_with_size(w: int, h: int) -> bytes:
    data = bytearray(save(photo(8, 8), "TIFF"))
    # Rewrite the ImageWidth (256) and ImageLength (257) entries of the first IFD.
    ifd = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    for i in range(n):
        e = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", data, e)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", data, e, tag, 4, 1, w if tag == 256 else h)
    return bytes(data)


def _formats() -> dict[str, tuple[bytes, str]]:
    rgb = photo()
    return {
        "jpeg": (save(rgb, "JPEG", quality=90), "jpg"),
        "jpeg_progressive": (save(rgb, "JPEG", quality=85, progressive=True), "jpg"),
        "png": (save(rgb, "PNG"), "png"),
        "png_interlaced": (save(rgb, "PNG", optimize=False), "png"),
        "webp_lossy": (save(rgb, "WEBP", quality=80), "webp"),
        "webp_lossless": (save(rgb, "WEBP", lossless=True), "webp"),
        "gif": (save(rgb.convert("P"), "GIF"), "gif"),
    }


def zero_byte() -> list[ImageCase]:
    return [
        ImageCase(f"zero_byte_{ext}", b"", ext, frozenset({"empty_image"}))
        for ext in ("jpg", "png", "webp", "gif", "bmp", "tif")
    ]


def truncated() -> list[ImageCase]:
    out = []
    for name, (data, ext) in _formats().items():
        for frac in (0.02, 0.25, 0.5, 0.75, 0.95):
            cut = max(1, int(len(data) * frac))
            out.append(
                ImageCase(
                    f"{name}_cut{int(frac * 100)}", data[:cut], ext, frozenset({"decode_error"})
                )
            )
        # Only the last bytes (JPEG EOI, PNG IEND) missing: may still decode, never crash.
        out.append(ImageCase(f"{name}_cut_tail", data[:-2], ext, frozenset({"decode_error", OK})))
    return out


def corrupted(seed: int = 0) -> list[ImageCase]:
    rng = random.Random(seed)
    out = []
    for name, (data, ext) in _formats().items():
        # Header damage: the format can no longer be read.
        head = bytearray(data)
        for i in range(4, min(24, len(head))):
            head[i] ^= 0xA5
        out.append(
            ImageCase(f"{name}_header_flipped", bytes(head), ext, frozenset({"decode_error", OK}))
        )
        for k in range(4):
            flipped = bytearray(data)
            for _ in range(1 + k * 4):
                at = rng.randrange(len(flipped))
                flipped[at] ^= 1 << rng.randrange(8)
            out.append(
                ImageCase(
                    f"{name}_bitflip{k}", bytes(flipped), ext, frozenset({"decode_error", OK})
                )
            )
        mid = len(data) // 2
        out.append(
            ImageCase(
                f"{name}_garbage_middle",
                data[:mid] + bytes(rng.randrange(256) for _ in range(256)) + data[mid + 256 :],
                ext,
                frozenset({"decode_error", OK}),
            )
        )
    png = _formats()["png"][0]
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # the IHDR CRC
    out.append(ImageCase("png_bad_ihdr_crc", bytes(bad_crc), "png", frozenset({"decode_error"})))
    out.append(
        ImageCase(
            "random_bytes",
            bytes(rng.randrange(256) for _ in range(4096)),
            "jpg",
            frozenset({"decode_error"}),
        )
    )
    out.append(
        ImageCase(
            "text_named_jpg",
            b"<html><body>404 not found</body></html>",
            "jpg",
            frozenset({"decode_error"}),
        )
    )
    out.append(
        ImageCase("jpeg_magic_only", b"\xff\xd8\xff\xe0", "jpg", frozenset({"decode_error"}))
    )
    out.append(ImageCase("png_named_jpg", png, "jpg", frozenset({OK}), size=(96, 64)))
    return out


def bombs() -> list[ImageCase]:
    """Decompression bombs and absurd declared dimensions."""
    big = ImageCase
    too = frozenset({"image_too_large"})
    zero_rows = zlib.compress(b"\x00" * 4096)
    out = [
        big("png_declares_100000x100000", png_with_header(100_000, 100_000, zero_rows), "png", too),
        big("png_declares_2^31x1", png_with_header(2**31 - 1, 1, zero_rows), "png", too),
        big("jpeg_declares_65000x65000", jpeg_with_size(65_000, 65_000), "jpg", too),
        big("gif_declares_65535x65535", gif_with_screen(65_535, 65_535), "gif", too),
        big("webp_declares_16384x16384", webp_lossless_with_size(16_384, 16_384), "webp", too),
        big("tiff_declares_100000x100000", tiff_with_size(100_000, 100_000), "tif", too),
        big(
            "png_declares_0x10",
            png_with_header(0, 10, zero_rows),
            "png",
            frozenset({"decode_error", "image_too_large"}),
        ),
        big(
            "png_declares_10x0",
            png_with_header(10, 0, zero_rows),
            "png",
            frozenset({"decode_error", "image_too_large"}),
        ),
    ]
    # A real zlib bomb under the pixel limit: 8000×8000 grey zeros, 60 KB on disk, decoded.
    bomb = Image.new("L", (8000, 8000))
    out.append(
        big(
            "png_zlib_bomb_64mpx",
            save(bomb, "PNG", optimize=True),
            "png",
            frozenset({OK, "image_too_large"}),
            size=(8000, 8000),
        )
    )
    # Absurd aspect ratios: real, tiny files that a model's resize would blow up.
    out.append(
        big(
            "png_1x100000",
            save(Image.new("RGB", (1, 100_000), (9, 9, 9)), "PNG"),
            "png",
            frozenset({OK}),
            size=(1, 100_000),
        )
    )
    out.append(
        big(
            "png_100000x1",
            save(Image.new("RGB", (100_000, 1), (9, 9, 9)), "PNG"),
            "png",
            frozenset({OK}),
            size=(100_000, 1),
        )
    )
    out.append(
        big(
            "gif_1x1_tracker",
            save(Image.new("P", (1, 1)), "GIF"),
            "gif",
            frozenset({OK}),
            size=(1, 1),
        )
    )
    # Many frames: only the first is decoded.
    frames = [Image.new("P", (64, 64), i % 256) for i in range(2000)]
    out.append(
        big(
            "gif_2000_frames",
            save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10),
            "gif",
            frozenset({OK}),
            size=(64, 64),
        )
    )
    return out


def lying_apng(claimed: int) -> bytes:
    """A 3-frame APNG whose animation-control chunk claims ``claimed`` frames."""
    frames = [Image.new("RGB", (40, 30), (i * 60, 0, 0)) for i in range(3)]
    data = save(frames[0], "PNG", save_all=True, append_images=frames[1:])
    at = data.find(b"acTL")
    return data[: at - 4] + png_chunk(b"acTL", struct.pack(">II", claimed, 0)) + data[at + 16 :]


def animated() -> list[ImageCase]:
    frames = [photo(seed=i) for i in range(3)]
    kw = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    many = [photo(seed=i % 7) for i in range(40)]
    gif = save(many[0].convert("P"), "GIF", save_all=True, append_images=many[1:], duration=40)
    return [
        # Frames are sampled in curate: a cut, a lying count or a long animation still ends
        # as the first frame plus what could be read, within the pixel budget.
        ImageCase(
            "gif_cut_in_later_frames",
            gif[: len(gif) * 2 // 3],
            "gif",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "apng_claims_1000_frames", lying_apng(1000), "png", frozenset({OK}), size=(40, 30)
        ),
        ImageCase(
            "apng_claims_5_of_3_frames", lying_apng(5), "png", frozenset({OK}), size=(40, 30)
        ),
        ImageCase(
            "gif_animated",
            save(frames[0].convert("P"), "GIF", **kw),
            "gif",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase("apng", save(frames[0], "PNG", **kw), "png", frozenset({OK}), size=(96, 64)),
        ImageCase(
            "webp_animated", save(frames[0], "WEBP", **kw), "webp", frozenset({OK}), size=(96, 64)
        ),
        ImageCase(
            "apng_rgba_frames",
            save(frames[0].convert("RGBA"), "PNG", **kw),
            "png",
            frozenset({OK}),
            size=(96, 64),
        ),
    ]


def modes() -> list[ImageCase]:
    """CMYK, 16-bit, palette with transparency, float and bilevel images: all become RGB."""
    rgb = photo()
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    arr16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    la = rgb.convert("LA")
    f32 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.float32))
    i32 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.int32) * 1000)
    cases = {
        "cmyk_jpeg": (save(rgb.convert("CMYK"), "JPEG"), "jpg"),
        "cmyk_tiff": (save(rgb.convert("CMYK"), "TIFF"), "tif"),
        "png_16bit_gray": (save(Image.fromarray(arr16), "PNG"), "png"),
        "tiff_16bit_gray": (save(Image.fromarray(arr16), "TIFF"), "tif"),
        "png_16bit_rgb": (_png16_rgb(rgb), "png"),
        "tiff_float32": (save(f32, "TIFF"), "tif"),
        "tiff_int32": (save(i32, "TIFF"), "tif"),
        "palette_trns": (save(pal, "PNG", transparency=0), "png"),
        "gif_palette_trns": (save(pal, "GIF", transparency=0), "gif"),
        "gray_alpha": (save(la, "PNG"), "png"),
        "rgba_webp": (save(rgb.convert("RGBA"), "WEBP"), "webp"),
        "bilevel": (save(rgb.convert("1"), "PNG"), "png"),
        "bmp": (save(rgb, "BMP"), "bmp"),
        "ycbcr_jpeg_gray": (save(rgb.convert("L"), "JPEG"), "jpg"),
    }
    return [ImageCase(k, d, e, frozenset({OK}), size=(96, 64)) for k, (d, e) in cases.items()]


def _png16_rgb(rgb: Image.Image) -> bytes:
    """A 48-bit RGB PNG (Pillow cannot write one, so the IDAT is built by hand)."""
    arr = np.asarray(rgb, dtype=np.uint16) * 257
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return png_with_header(w, h, zlib.compress(raw), bit_depth=16, color=2)


def exif_orientation() -> list[ImageCase]:
    rgb = photo()
    out = []
    for value in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = value
        size = (64, 96) if value >= 5 else (96, 64)  # 5-8 swap width and height
        out.append(
            ImageCase(
                f"exif_orientation_{value}",
                save(rgb, "JPEG", exif=exif.tobytes()),
                "jpg",
                frozenset({OK}),
                size=size,
            )
        )
    for value in (0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = value
        out.append(
            ImageCase(
                f"exif_orientation_bogus_{value}",
                save(rgb, "JPEG", exif=exif.tobytes()),
                "jpg",
                frozenset({OK}),
                size=(96, 64),
            )
        )
    # A broken EXIF block (an IFD offset past the end): the image still decodes.
    junk_exif = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\x00" * 8
    out.append(
        ImageCase(
            "exif_broken_ifd",
            save(rgb, "JPEG", exif=junk_exif),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        )
    )
    webp_exif = Image.Exif()
    webp_exif[0x0112] = 6
    out.append(
        ImageCase(
            "webp_exif_orientation_6",
            save(rgb, "WEBP", exif=webp_exif.tobytes()),
            "webp",
            frozenset({OK}),
            size=(64, 96),
        )
    )
    return out


def svg_and_non_images() -> list[ImageCase]:
    svg = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<image href="file:///etc/passwd"/></svg>'
    )
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 200
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"
    zip_ = b"PK\x03\x04" + b"\x00" * 100
    return [
        ImageCase("svg_as_png", svg, "png", frozenset({"decode_error"})),
        ImageCase("svg_as_jpg", svg, "jpg", frozenset({"decode_error"})),
        ImageCase("elf_as_jpg", elf, "jpg", frozenset({"decode_error"})),
        ImageCase("pdf_as_jpg", pdf, "jpg", frozenset({"decode_error"})),
        ImageCase("zip_as_webp", zip_, "webp", frozenset({"decode_error"})),
        ImageCase(
            "html_as_gif", b"<!doctype html><title>x</title>", "gif", frozenset({"decode_error"})
        ),
    ]


def colour_profiles() -> list[ImageCase]:
    from tests.icc_support import cmyk_profile, rgb_profile

    cmyk = Image.new("CMYK", (96, 64), (200, 10, 10, 0))
    return [
        ImageCase(
            "icc_adobe_rgb",
            save(photo(), "JPEG", icc_profile=rgb_profile()),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "icc_cmyk_press",
            save(cmyk, "JPEG", icc_profile=cmyk_profile()),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "icc_garbage",
            save(photo(), "PNG", icc_profile=b"\xff" * 300),
            "png",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "icc_truncated",
            save(photo(), "JPEG", icc_profile=rgb_profile()[:150]),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "icc_cmyk_profile_on_rgb",
            save(photo(), "JPEG", icc_profile=cmyk_profile()),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        ),
        ImageCase(
            "icc_5mb",
            save(photo(), "JPEG", icc_profile=bytes(5 << 20)),
            "jpg",
            frozenset({OK}),
            size=(96, 64),
        ),
    ]


def _videos() -> list[ImageCase]:
    from tests.hostile.videos import hostile_videos

    return hostile_videos()


IMAGE_CLASSES = {
    "zero-byte files": zero_byte,
    "truncated JPEG/PNG/WebP/GIF": truncated,
    "corrupted JPEG/PNG/WebP/GIF": corrupted,
    "decompression bombs, absurd dimensions": bombs,
    "animated GIF, APNG, WebP": animated,
    "CMYK, 16-bit, palette+transparency, float": modes,
    "EXIF orientation (valid, bogus, broken)": exif_orientation,
    "ICC profiles (wide gamut, CMYK, broken, mismatched, oversized)": colour_profiles,
    "SVG and non-image bytes as images": svg_and_non_images,
    "hostile videos (PyAV)": _videos,
}
