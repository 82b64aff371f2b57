"""Rights metadata embedded in the image bytes: EXIF, IPTC-IIM and XMP.

Pillow opens the header only (no pixels are decoded), so this costs well under a
millisecond for web-sized images. Broken metadata gives an error value, never a raise.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

from clipaudit.data.scripts import visible_text
from clipaudit.rights.xmp import (
    XmpRights,
    clean_text,
    find_packet,
    parse_xmp,
    strictest_data_mining,
)

EXIF_ARTIST = 0x013B
EXIF_COPYRIGHT = 0x8298
IPTC_BYLINE = (2, 80)
IPTC_CREDIT = (2, 110)
IPTC_COPYRIGHT = (2, 116)


@dataclass
class EmbeddedRights:
    copyright: str | None = None
    creator: str | None = None
    credit: str | None = None
    usage_terms: str | None = None
    web_statement: str | None = None
    marked: bool | None = None  # xmpRights:Marked: True rights-managed, False public domain
    cc_license: str | None = None
    data_mining: str | None = None  # PLUS code, e.g. PROHIBITED-AIMLTRAINING
    source_type: str | None = None  # IPTC DigitalSourceType short name, from XMP
    provenance: str | None = None  # dcterms:provenance (a remote C2PA manifest url)
    tdm_reservation: int | None = None  # TDMRep tdm:reservation in XMP: 1 reserved, 0 not
    tdm_policy: str | None = None  # TDMRep tdm:policy url
    found: list[str] = field(default_factory=list)  # "exif:Copyright", "xmp:dc:rights"...
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return ",".join(self.errors) if self.errors else None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _utf8(value: Any) -> Any:
    """Pillow reads EXIF ASCII as latin-1; most writers (exiftool, cameras' apps) store
    UTF-8 there, so undo the mojibake when the bytes are valid UTF-8."""
    if isinstance(value, str) and not value.isascii():
        try:
            return value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return value
    return value


def _exif_from_bytes(data: bytes) -> Any:
    """EXIF from an "Exif\\0\\0" block anywhere in ``data``: the header Pillow cannot open
    (a truncated or damaged file) may still carry it."""
    from PIL import Image

    exif = Image.Exif()
    start = data.find(b"Exif\x00\x00")
    if start >= 0:
        exif.load(data[start : start + 0x10000])
    return exif


def exif_directory_damaged(raw: bytes) -> bool:
    """Whether the first directory of a raw EXIF block (``Exif\\0\\0`` + TIFF) claims more
    entries than its bytes hold, or points outside them."""
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return bool(tiff)  # bytes that are not TIFF at all
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return True
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    return offset + 2 + 12 * count > len(tiff)


def _exif(im: Any, out: EmbeddedRights) -> tuple[str | None, str | None]:
    try:
        exif = im.getexif() if not isinstance(im, bytes) else _exif_from_bytes(im)
        artist, notice = _utf8(exif.get(EXIF_ARTIST)), _utf8(exif.get(EXIF_COPYRIGHT))
    except Exception:
        out.errors.append("exif_malformed")
        return None, None
    # Pillow reads what it can of a damaged directory and only warns (a warning cannot be
    # caught per call in decode threads: catch_warnings is process-wide and not thread-safe),
    # so the first directory is checked here: the rest of the EXIF, a copyright among it,
    # may be lost, which is worth a review flag like a raise.
    raw = im.info.get("exif") if not isinstance(im, bytes) else None
    if isinstance(raw, bytes) and exif_directory_damaged(raw):
        out.errors.append("exif_malformed")
    if isinstance(notice, str):
        # EXIF packs "photographer\0editor" copyrights into one tag.
        notice = "; ".join(p for p in notice.split("\x00") if p.strip())
    a, c = clean_text(artist), clean_text(notice)
    if a:
        out.found.append("exif:Artist")
    if c:
        out.found.append("exif:Copyright")
    return a, c


def _iptc_value(v: Any) -> str | None:
    if isinstance(v, list):
        texts = [clean_text(x) for x in v]
        return "; ".join(t for t in texts if t) or None
    return clean_text(v)


def _resource_overruns(segment: bytes) -> bool:
    """Whether a Photoshop APP13 segment holds an image resource (``8BIM``) whose declared
    length runs past the segment: truncated or hostile (a length of 0x7FFFFFFF)."""
    if not segment.startswith(b"Photoshop 3.0\x00"):
        return False
    offset = 14
    while segment[offset : offset + 4] == b"8BIM":
        offset += 6  # signature, resource id
        if offset >= len(segment):
            return True
        offset += 1 + segment[offset]  # Pascal name, padded to an even length
        offset += offset & 1
        if offset + 4 > len(segment):
            return True
        (size,) = struct.unpack(">I", segment[offset : offset + 4])
        offset += 4 + size
        if offset > len(segment):
            return True
        offset += offset & 1
    return False


def _iptc(im: Any, out: EmbeddedRights) -> dict[tuple[int, int], str | None]:
    from PIL import IptcImagePlugin

    try:
        info = IptcImagePlugin.getiptcinfo(im) or {}
    except Exception:
        out.errors.append("iptc_malformed")
        return {}
    if any(_resource_overruns(seg) for name, seg in getattr(im, "applist", []) if name == "APP13"):
        # Pillow cuts such a resource at the segment's end and reads what is left as if whole.
        out.errors.append("iptc_malformed")
    got = {k: _iptc_value(info.get(k)) for k in (IPTC_BYLINE, IPTC_CREDIT, IPTC_COPYRIGHT)}
    names = {IPTC_BYLINE: "By-line", IPTC_CREDIT: "Credit", IPTC_COPYRIGHT: "CopyrightNotice"}
    out.found.extend(f"iptc:{names[k]}" for k, v in got.items() if v)
    return got


def _xmp_packet(im: Any, data: bytes) -> bytes | None:
    packet = im.info.get("xmp") if im is not None else None
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    return packet or find_packet(data)


_SOURCE_TYPE = re.compile(r"[A-Za-z]+$")
_XMP_LABELS = {
    "rights": "xmp:dc:rights",
    "creator": "xmp:dc:creator",
    "usage_terms": "xmp:xmpRights:UsageTerms",
    "web_statement": "xmp:xmpRights:WebStatement",
    "marked": "xmp:xmpRights:Marked",
    "credit": "xmp:photoshop:Credit",
    "cc_license": "xmp:cc:license",
    "data_mining": "xmp:plus:DataMining",
    "source_type": "xmp:Iptc4xmpExt:DigitalSourceType",
    "tdm_reservation": "xmp:tdm:reservation",
    "tdm_policy": "xmp:tdm:policy",
}


def source_type_name(uri: str | None) -> str | None:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` →
    ``trainedAlgorithmicMedia`` (the IPTC vocabulary's short name)."""
    if not uri:
        return None
    m = _SOURCE_TYPE.search(uri.strip().rstrip("/"))
    return m.group(0)[:80] if m else None


def read_embedded(data: bytes | None) -> EmbeddedRights:
    """EXIF / IPTC / XMP rights fields of the encoded image ``data``."""
    from clipaudit.data.decode import open_untrusted

    out = EmbeddedRights()
    if not data:
        return out
    im = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = open_untrusted(data)
    except Exception:
        im = None
    artist = notice = None
    iptc: dict[tuple[int, int], str | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        artist, notice = _exif(im if im is not None else data, out)
        if im is not None:
            iptc = _iptc(im, out)
    packet = _xmp_packet(im, data)
    xmp = parse_xmp(packet) if packet else XmpRights()
    if xmp.error:
        out.errors.append(xmp.error)
    out.found.extend(_XMP_LABELS[k] for k in xmp.values if k in _XMP_LABELS)
    out.copyright = _first(notice, iptc.get(IPTC_COPYRIGHT), xmp.get("rights"))
    out.creator = _first(artist, iptc.get(IPTC_BYLINE), xmp.get("creator"))
    out.credit = _first(iptc.get(IPTC_CREDIT), xmp.get("credit"))
    out.usage_terms = xmp.get("usage_terms")
    out.web_statement = xmp.get("web_statement")
    marked = (xmp.get("marked") or "").strip().lower()
    out.marked = True if marked == "true" else False if marked == "false" else None
    out.cc_license = xmp.get("cc_license")
    out.data_mining = strictest_data_mining(xmp.all_of("data_mining"))
    out.source_type = source_type_name(xmp.get("source_type"))
    out.provenance = xmp.get("provenance")
    # Only 0 and 1 mean anything; another value is a protocol error, read as unset.
    reservation = (xmp.get("tdm_reservation") or "").strip()
    out.tdm_reservation = int(reservation) if reservation in ("0", "1") else None
    out.tdm_policy = xmp.get("tdm_policy")
    return out


# Caption marks: a weak signal (captions quote, joke and paraphrase), so its own reason.
_CAPTION_MARK = re.compile(
    r"(?i:©|\bcopyright(?:ed)?\b|\ball\s+rights\s+reserved\b)|\([cC]\)\s*(?:\d{4}|[A-Z])"
)


def caption_has_copyright(caption: str | None) -> bool:
    """Whether a caption carries "©", "(c) 2024 …", "copyright" or "all rights reserved",
    as it reads on screen: full-width letters and zero-width characters inside the word
    ("copy\u200bright") do not hide it."""
    return caption is not None and _CAPTION_MARK.search(visible_text(caption[:2000])) is not None
