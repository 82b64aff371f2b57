"""XMP rights fields, read namespace-aware with defusedxml.

XMP is untrusted XML: DTDs, entity declarations and external references are refused
outright (a billion-laughs packet costs microseconds, not memory), and a refused or broken
packet becomes a per-sample value (``xmp_forbidden`` / ``xmp_malformed``), never a raise.
Properties are matched by namespace URI, not prefix: a writer may bind any prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
PLUS = "http://ns.useplus.org/ldf/xmp/1.0/"
DMI_PREFIX = "http://ns.useplus.org/ldf/vocab/DMI-"
# The vocabulary URI in any case and scheme, or a bare DMI- code: writers vary.
_DMI_URI = re.compile(r"^(?:https?://ns\.useplus\.org/ldf/vocab/)?DMI-", re.IGNORECASE)
# Fields where a packet may state several values (an rdf:Bag, or one rdf:Description each)
# and the strictest must win: an opt-out listed second is still an opt-out.
MULTI_FIELDS = frozenset({"data_mining"})

# (namespace, local name) → field of XmpRights.
XMP_FIELDS: dict[tuple[str, str], str] = {
    ("http://purl.org/dc/elements/1.1/", "rights"): "rights",
    ("http://purl.org/dc/elements/1.1/", "creator"): "creator",
    ("http://ns.adobe.com/xap/1.0/rights/", "UsageTerms"): "usage_terms",
    ("http://ns.adobe.com/xap/1.0/rights/", "WebStatement"): "web_statement",
    ("http://ns.adobe.com/xap/1.0/rights/", "Marked"): "marked",
    ("http://ns.adobe.com/photoshop/1.0/", "Credit"): "credit",
    ("http://creativecommons.org/ns#", "license"): "cc_license",
    (PLUS, "DataMining"): "data_mining",
    ("http://iptc.org/std/Iptc4xmpExt/2008-02-29/", "DigitalSourceType"): "source_type",
    ("http://purl.org/dc/terms/", "provenance"): "provenance",
}
# TDMRep's properties embedded in a file's XMP (as the W3C report writes them into PDFs; the
# same reservation travels with an image that leaves its site and its HTTP headers). Writers
# bind the namespace with "/", "#" or neither.
TDMREP_NAMESPACES = ("http://www.w3.org/ns/tdmrep/", "http://www.w3.org/ns/tdmrep#")
for _ns in (*TDMREP_NAMESPACES, "http://www.w3.org/ns/tdmrep"):
    XMP_FIELDS[(_ns, "reservation")] = "tdm_reservation"
    XMP_FIELDS[(_ns, "policy")] = "tdm_policy"

# A JPEG caps one packet at 64 KiB, but PNG iTXt, TIFF and WebP do not, and Photoshop's
# document history (photoshop:DocumentAncestors) grows packets to megabytes: at 1 MiB such a
# file's opt-out went unread (rights_metadata_malformed, flagged, not honoured). 8 MiB parses
# in under a second with defusedxml (8.5 MB: 0.85 s, 28 MB peak on the development machine).
MAX_XMP_BYTES = 8 << 20
MAX_VALUE_CHARS = 500
_PACKET_STARTS = (b"<x:xmpmeta", b"<x:xapmeta")
_PACKET_ENDS = (b"</x:xmpmeta>", b"</x:xapmeta>")


@dataclass
class XmpRights:
    values: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # xmp_forbidden | xmp_malformed | xmp_too_large
    # Every value stated for a MULTI_FIELDS field, item by item, in document order.
    every: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def all_of(self, name: str) -> list[str]:
        return self.every.get(name, [])


def clean_text(value: Any) -> str | None:
    """Untrusted metadata text as a short printable string, or ``None`` when empty."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = "".join(ch if ch.isprintable() else " " for ch in value[: MAX_VALUE_CHARS * 2])
    text = " ".join(text.split())[:MAX_VALUE_CHARS]
    return text or None


def find_packet(data: bytes) -> bytes | None:
    """The first plain XMP packet anywhere in ``data`` (JPEG APP1, WebP XMP chunk, PNG
    uncompressed iTXt, TIFF, GIF): a fallback for containers Pillow does not surface."""
    for start_tag, end_tag in zip(_PACKET_STARTS, _PACKET_ENDS, strict=True):
        start = data.find(start_tag)
        if start < 0:
            continue
        end = data.find(end_tag, start)
        if end < 0:
            return data[start : start + MAX_XMP_BYTES + 1]  # truncated: parse says malformed
        return data[start : end + len(end_tag)]
    return None


def _property_value(el: Any) -> str | None:
    resource = el.get(f"{{{RDF}}}resource")
    if resource is not None:
        return clean_text(resource)
    items = [li for li in el.iter(f"{{{RDF}}}li")]
    if items:
        default = [li for li in items if li.get(XML_LANG) == "x-default"]
        chosen = default or items
        texts = [
            clean_text(li.get(f"{{{RDF}}}resource") or "".join(li.itertext())) for li in chosen
        ]
        joined = "; ".join(t for t in texts if t)
        return joined or None
    return clean_text("".join(el.itertext()))


def _items(el: Any) -> list[str]:
    """Each value of a property on its own: rdf:resource, each rdf:li, or the text."""
    resource = el.get(f"{{{RDF}}}resource")
    if resource is not None:
        return [t for t in [clean_text(resource)] if t]
    items = list(el.iter(f"{{{RDF}}}li"))
    if items:
        texts = [clean_text(li.get(f"{{{RDF}}}resource") or "".join(li.itertext())) for li in items]
        return [t for t in texts if t]
    return [t for t in [clean_text("".join(el.itertext()))] if t]


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def parse_xmp(packet: bytes | str) -> XmpRights:
    """The rights fields of one XMP packet; hostile or broken XML gives an ``error``."""
    import defusedxml
    import defusedxml.ElementTree as DET

    raw = packet.encode("utf-8") if isinstance(packet, str) else packet
    if len(raw) > MAX_XMP_BYTES:
        return XmpRights(error="xmp_too_large")
    try:
        root = DET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException:
        return XmpRights(error="xmp_forbidden")
    except Exception:
        return XmpRights(error="xmp_malformed")
    out = XmpRights()
    for desc in root.iter(f"{{{RDF}}}Description"):
        # Simple properties may be attributes of rdf:Description...
        for attr, value in desc.attrib.items():
            name = XMP_FIELDS.get(_split(attr))
            text = clean_text(value)
            if name and text:
                if name in MULTI_FIELDS:
                    out.every.setdefault(name, []).append(text)
                if name not in out.values:
                    out.values[name] = text
        # ...or child elements (with rdf:resource, a text, or an Alt/Seq/Bag of rdf:li).
        for child in desc:
            name = XMP_FIELDS.get(_split(child.tag))
            if not name:
                continue
            if name in MULTI_FIELDS:
                out.every.setdefault(name, []).extend(_items(child))
            if name not in out.values:
                text = _property_value(child)
                if text:
                    out.values[name] = text
    return out


def data_mining_code(value: str | None) -> str | None:
    """``DMI-PROHIBITED-AIMLTRAINING`` URIs (any case, http or https) or bare codes →
    ``PROHIBITED-AIMLTRAINING``."""
    if not value:
        return None
    v = _DMI_URI.sub("", value.strip(), count=1)
    return v.upper()[:80] or None


def strictest_data_mining(values: list[str]) -> str | None:
    """Of several stated PLUS values, a prohibition over anything else (the first in
    document order among equals): ALLOWED then PROHIBITED in one Bag is an opt-out."""
    codes = [c for c in (data_mining_code(v) for v in values) if c]
    prohibited = [c for c in codes if c.startswith("PROHIBITED")]
    return (prohibited or codes)[0] if codes else None
