"""Rights and provenance signals: embedded EXIF / IPTC / XMP rights metadata, C2PA Content
Credentials, url sources (eTLD+1) and licences. Pure functions over a sample's bytes and
strings; the curate stages in :mod:`clipaudit.curate.stages.rights` call them."""

from __future__ import annotations

from clipaudit.rights.embedded import EmbeddedRights, caption_has_copyright, read_embedded
from clipaudit.rights.licences import Licence, parse_licence
from clipaudit.rights.provenance import C2paInfo, read_c2pa, training_answer
from clipaudit.rights.sources import UrlParts, match_domain, url_parts
from clipaudit.rights.xmp import XmpRights, parse_xmp

__all__ = [
    "C2paInfo",
    "EmbeddedRights",
    "Licence",
    "UrlParts",
    "XmpRights",
    "caption_has_copyright",
    "match_domain",
    "parse_licence",
    "parse_xmp",
    "read_c2pa",
    "read_embedded",
    "training_answer",
    "url_parts",
]
