"""Licence strings and Creative Commons URLs → an SPDX-like id with NC / ND / SA flags.

Parsers live in a registry tried in registration order (most specific first); the first
that recognises the text wins. Unrecognised text is ``None``: the raw string stays in its
own column for the licences table, and no flag is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Untrusted text: only this much is ever read, and only this much is stored.
MAX_LICENCE_CHARS = 300


@dataclass(frozen=True)
class Licence:
    id: str
    nc: bool = False
    nd: bool = False
    sa: bool = False


LicenceParser = Callable[[str], "Licence | None"]
LICENCE_PARSERS: dict[str, LicenceParser] = {}


def register_licence_parser(name: str) -> Callable[[LicenceParser], LicenceParser]:
    def deco(fn: LicenceParser) -> LicenceParser:
        LICENCE_PARSERS[name] = fn
        return fn

    return deco


def _on_match(
    name: str, regex: str
) -> Callable[[Callable[[re.Match[str]], Licence | None]], LicenceParser]:
    """Register a parser that reads the licence off the first match of ``regex`` (case
    ignored) with the decorated function; no match: ``None``."""
    pattern = re.compile(regex, re.IGNORECASE)

    def deco(read: Callable[[re.Match[str]], Licence | None]) -> LicenceParser:
        def parse(text: str) -> Licence | None:
            m = pattern.search(text)
            return None if m is None else read(m)

        return register_licence_parser(name)(parse)

    return deco


def _named_by(name: str, regex: str, ident: str) -> None:
    """Register a parser that names licence ``ident`` wherever ``regex`` matches."""
    _on_match(name, regex)(lambda m: Licence(ident))


def _cc(parts: list[str], version: str | None) -> Licence | None:
    """A CC licence from its elements (``by``, ``nc``, ``nd``, ``sa``) in any order."""
    elems = [p for p in parts if p]
    if not elems or elems[0] != "by" or len(set(elems)) != len(elems):
        return None
    if not set(elems) <= {"by", "nc", "nd", "sa"} or {"nd", "sa"} <= set(elems):
        return None
    ordered = ["by"] + [e for e in ("nc", "nd", "sa") if e in elems]
    ident = "CC-" + "-".join(e.upper() for e in ordered)
    if version:
        ident += f"-{version}"
    return Licence(ident, nc="nc" in elems, nd="nd" in elems, sa="sa" in elems)


@_on_match(
    "cc_url",
    r"creativecommons\.org/(?P<kind>licenses|licences|publicdomain)/(?P<code>[a-z+-]+)"
    r"(?:/(?P<version>\d(?:\.\d)?))?",
)
def _cc_url(m: re.Match[str]) -> Licence | None:
    code, version = m["code"].lower(), m["version"]
    if m["kind"].lower() == "publicdomain":
        if code == "zero":
            return Licence(f"CC0-{version or '1.0'}")
        if code == "mark":
            return Licence(f"CC-PDM-{version or '1.0'}")
        return None
    return _cc(code.replace("+", "-").split("-"), version)


@_on_match(
    "cc_short",
    r"\bcc[\s_-]*(?P<elems>by(?:[\s_-]*(?:nc|nd|sa)){0,2})\b(?:[\s_-]*v?(?P<version>\d\.\d))?",
)
def _cc_short(m: re.Match[str]) -> Licence | None:
    """``CC BY-SA 4.0``, ``cc-by-nc``, ``CC_BY_NC_ND 3.0``."""
    return _cc(re.split(r"[\s_-]+", m["elems"].lower()), m["version"])


_CC_WORDS = {"attribution": "by", "noncommercial": "nc", "noderivatives": "nd", "noderivs": "nd"}


@_on_match(
    "cc_words",
    r"\battribution(?:[\s-]*(?:non-?commercial|no-?deriv(?:ative)?s|share-?alike))*"
    r"(?:\s+(?P<version>\d\.\d))?",
)
def _cc_words(m: re.Match[str]) -> Licence | None:
    """``Attribution-NonCommercial-ShareAlike 4.0 International``."""
    words = re.sub(r"[\s]+", "-", m[0].lower().replace("non-commercial", "noncommercial"))
    words = words.replace("no-derivatives", "noderivatives").replace("no-derivs", "noderivs")
    words = words.replace("share-alike", "sharealike")
    elems = []
    for w in words.split("-"):
        if w == "sharealike":
            elems.append("sa")
        elif w in _CC_WORDS:
            elems.append(_CC_WORDS[w])
    if elems == ["by"] and not m["version"]:
        return None  # "attribution required" is not a CC licence
    return _cc(elems, m["version"])


_named_by("cc0", r"\bcc[\s_-]*(?:0|zero)\b(?:[\s_-]*v?(?P<version>1\.0))?", "CC0-1.0")
_named_by("public_domain", r"\bpublic[\s_-]*domain\b", "LicenseRef-PublicDomain")


# Exact SPDX ids (and common spellings) that also turn up on image datasets.
_SPDX_EXACT = {
    "mit": "MIT",
    "apache-2.0": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "odbl": "ODbL-1.0",
    "odbl-1.0": "ODbL-1.0",
    "cdla-permissive-2.0": "CDLA-Permissive-2.0",
    "unsplash": "LicenseRef-Unsplash",
    "pexels": "LicenseRef-Pexels",
}


@register_licence_parser("spdx")
def _spdx(text: str) -> Licence | None:
    ident = _SPDX_EXACT.get(text.strip().lower())
    return Licence(ident) if ident else None


# No licence is granted; the notice itself is the copyright_notice signal, not NC/ND.
_named_by(
    "all_rights_reserved",
    r"\ball\s+rights\s+reserved\b|\brights[\s-]+managed\b",
    "LicenseRef-AllRightsReserved",
)


def parse_licence(text: str | None) -> Licence | None:
    """The licence a string names, or ``None`` when no parser recognises it."""
    if not text:
        return None
    text = text[:MAX_LICENCE_CHARS]
    for parser in LICENCE_PARSERS.values():
        found = parser(text)
        if found is not None:
            return found
    return None
