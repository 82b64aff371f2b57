"""Hostile embedded metadata: XMP packets with entities, DTDs and odd shapes, and damaged
C2PA manifests (mutations of the real signed fixtures in ``../shared/fixtures/c2pa``)."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.hostile.images import photo, png_chunk, save

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
C2PA_FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "c2pa"


def _xmp(body: str, prolog: str = "") -> str:
    return (
        f'{prolog}<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
        f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" {body}/>'
        "</rdf:RDF></x:xmpmeta>"
    )


LAUGHS = "".join(
    f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" if i else "lol"}'
    + (f"&l{i - 1};" * 9 if i else "")
    + '">'
    for i in range(10)
)
XMP_PACKETS: dict[str, tuple[str | bytes, str]] = {
    # name → (packet, the rights_error values it may give, "|"-separated; "" = none)
    "billion_laughs": (
        _xmp('dc:rights="&l9;"', f"<!DOCTYPE x:xmpmeta [{LAUGHS}]>"),
        "xmp_forbidden",
    ),
    "external_entity_file": (
        _xmp('dc:rights="&e;"', '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'),
        "xmp_forbidden",
    ),
    "external_entity_http": (
        _xmp('dc:rights="&e;"', '<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>'),
        "xmp_forbidden",
    ),
    "parameter_entity": (
        _xmp('dc:rights="x"', '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>'),
        "xmp_forbidden",
    ),
    "external_dtd": (
        _xmp('dc:rights="x"', '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">'),
        "xmp_forbidden",
    ),
    "quadratic_blowup": (
        _xmp(
            'dc:rights="' + "&a;" * 20000 + '"', '<!DOCTYPE x [<!ENTITY a "' + "A" * 50000 + '">]>'
        ),
        "xmp_forbidden|xmp_malformed",
    ),
    "internal_dtd_only": (
        _xmp('dc:rights="x"', "<!DOCTYPE x [<!ELEMENT x ANY>]>"),
        "xmp_forbidden",
    ),
    "unclosed": ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>', "xmp_malformed"),
    "undeclared_prefix": (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><zz:oops/></rdf:RDF></x:xmpmeta>',
        "xmp_malformed",
    ),
    "not_utf8": (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><a>\xff\xfe\xc0</a></x:xmpmeta>',
        "xmp_malformed|",
    ),
    "deep_nesting": (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        + "<a>" * 100_000
        + "</a>" * 100_000
        + "</x:xmpmeta>",
        "",
    ),
    "deep_rights_value": (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}"><rdf:Description '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:rights>'
        + "<b>" * 50_000
        + "x"
        + "</b>" * 50_000
        + "</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>",
        "",
    ),
    "xinclude": (
        _xmp('dc:rights="x"').replace(
            "</rdf:RDF>",
            '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            'href="file:///etc/passwd" parse="text"/></rdf:RDF>',
        ),
        "",
    ),
    "many_attributes": (_xmp(" ".join(f'dc:a{i}="v"' for i in range(20_000))), ""),
    "huge_value": (_xmp('dc:rights="' + "©" * 300_000 + '"'), ""),
    # Over the 8 MiB packet cap (packets of a few MB are read: Photoshop's history makes
    # them). Pillow refuses to inflate a PNG text chunk over 1 MB: that PNG is a decode error.
    "nine_megabytes": (_xmp('dc:rights="' + "x" * (9 << 20) + '"'), "xmp_too_large|decode_error"),
}


def with_xmp(packet: str | bytes, fmt: str) -> bytes:
    """An image carrying ``packet`` the way each container stores XMP."""
    im = photo(48, 32)
    raw = packet.encode("utf-8") if isinstance(packet, str) else packet
    if fmt == "PNG":
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", raw.decode("utf-8", "replace"), zip=True)
        return save(im, "PNG", pnginfo=info)
    if fmt == "JPEG" and len(raw) > 65_000:
        # Too big for one APP1 segment: the byte scan finds it in a trailing comment.
        return save(im, "JPEG") + raw
    return save(im, fmt, xmp=raw)


def xmp_cases() -> dict[str, tuple[bytes, str, frozenset[str]]]:
    """id → (image bytes, extension, the rights_error values it may give; "" = none)."""
    out = {}
    for name, (packet, err) in XMP_PACKETS.items():
        for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
            out[f"xmp_{name}_{ext}"] = (with_xmp(packet, fmt), ext, frozenset(err.split("|")))
    return out


def c2pa_cases(seed: int = 0) -> dict[str, tuple[bytes, str]]:
    """id → (damaged bytes, extension): manifests cut, flipped, spliced and forged."""
    rng = random.Random(seed)
    out: dict[str, tuple[bytes, str]] = {}
    jumbf = b"\x00\x00\x00\x40jumb\x00\x00\x00\x18jumdc2pa" + bytes(range(40))
    out["jumbf_garbage_in_app11"] = (_jpeg_app11(jumbf + b"c2pa" * 20), "jpg")
    out["jumbf_box_claims_4gb"] = (_jpeg_app11(b"\xff\xff\xff\xffjumb" + b"c2pa" * 8), "jpg")
    out["png_cabx_garbage"] = (_png_with_chunk(b"caBX", jumbf * 4), "png")
    out["webp_c2pa_garbage"] = (_webp_with_chunk(b"C2PA", jumbf * 4), "webp")
    out["markers_in_random_bytes"] = (
        b"jumb" + bytes(rng.randrange(256) for _ in range(3000)) + b"c2pa",
        "jpg",
    )
    out["provenance_url_in_xmp"] = (
        save(
            photo(48, 32),
            "JPEG",
            xmp=(
                _xmp(
                    'xmlns:dcterms="http://purl.org/dc/terms/" '
                    'dcterms:provenance="http://127.0.0.1:9/manifest.c2pa"'
                ).encode()
            ),
        ),
        "jpg",
    )
    for fixture in ("C.jpg", "C_with_CAWG_data.jpg"):
        path = C2PA_FIXTURES / fixture
        if not path.is_file():
            continue
        data = path.read_bytes()
        start = data.find(b"jumb")
        stem = fixture.split(".")[0]
        for k, frac in enumerate((0.1, 0.5, 0.9)):
            out[f"{stem}_cut{k}"] = (data[: start + int(frac * 20_000)], "jpg")
        for k in range(4):
            flipped = bytearray(data)
            for _ in range(1 + 8 * k):
                at = start + rng.randrange(min(30_000, len(data) - start))
                flipped[at] ^= 1 << rng.randrange(8)
            out[f"{stem}_flip{k}"] = (bytes(flipped), "jpg")
        out[f"{stem}_manifest_zeroed"] = (data[:start] + bytes(2000) + data[start + 2000 :], "jpg")
        out[f"{stem}_pixels_changed"] = (data[:-3000] + bytes(2998) + data[-2:], "jpg")
    return out


def _jpeg_app11(payload: bytes) -> bytes:
    jpeg = save(photo(48, 32), "JPEG")
    # APP11 with the JPEG-XT/JUMBF common identifier "JP", box instance 1, sequence 1.
    body = b"JP" + struct.pack(">HI", 1, 1) + payload
    seg = b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:2] + seg + jpeg[2:]


def _png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    png = save(photo(48, 32), "PNG")
    at = png.find(b"IDAT") - 4
    return png[:at] + png_chunk(kind, payload) + png[at:]


def _webp_with_chunk(kind: bytes, payload: bytes) -> bytes:
    im = photo(48, 32)
    webp = save(im, "WEBP", exif=Image.Exif().tobytes() or b"Exif")  # VP8X container
    chunk = (
        kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    )
    body = webp[12:] + chunk
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def crc_ok(data: bytes) -> int:
    return zlib.crc32(data)
