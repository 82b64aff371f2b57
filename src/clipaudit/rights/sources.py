"""Where a sample came from: the host and registrable domain (eTLD+1) of its url.

``tldextract`` runs on its bundled Public Suffix List snapshot only: no suffix-list url
(so no network) and no cache dir (so nothing is written). Hosts are canonicalised to
lower-case ASCII (IDNA), so ``münchen.de`` and ``xn--mnchen-3ya.de`` are one domain.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_URL_CHARS = 2048
_HOST_OK = re.compile(r"^[a-z0-9._-]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1)
def _extractor() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@dataclass(frozen=True)
class UrlParts:
    host: str | None  # lower-case ASCII host, or the IP address
    domain: str | None  # eTLD+1 (or the IP address itself); None when there is none
    label: str | None  # the registrable label: ``gettyimages`` of ``gettyimages.co.uk``
    url: str | None  # normalised url for block lists: scheme+host lower-case, no fragment


def _ascii_host(host: str) -> str | None:
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    return host if _HOST_OK.match(host) and ".." not in host else None


def url_parts(url: str | None) -> UrlParts:
    """Host, eTLD+1 and normalised form of ``url``; all ``None`` for garbage, never raises."""
    none = UrlParts(None, None, None, None)
    if not url or not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        return none
    text = url.strip()
    if "://" not in text and not text.startswith("//"):
        text = "//" + text  # a bare host or host/path
    try:
        parts = urlsplit(text)
        raw_host = parts.hostname
        port = parts.port
    except ValueError:  # bad port, bad IPv6 brackets
        return none
    if not raw_host:
        return none
    try:
        ip = ipaddress.ip_address(raw_host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        host: str | None = ip.compressed
        domain: str | None = host
        label: str | None = None
    else:
        host = _ascii_host(raw_host)
        if host is None:
            return none
        ext = _extractor().extract_str(host)
        domain = f"{ext.domain}.{ext.suffix}" if ext.domain and ext.suffix else None
        label = ext.domain if domain else None
    scheme = parts.scheme.lower()
    netloc = host if ip is None or ip.version == 4 else f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    norm = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return UrlParts(host, domain, label, norm)


def _clean_entry(entry: str) -> str:
    return entry.strip().rstrip(".").lower()


def match_domain(parts: UrlParts, entries: list[str]) -> str | None:
    """The first list entry that ``parts`` falls under, or ``None``.

    An entry with a dot (``stock.adobe.com``, ``alamy.com``) matches that host and its
    subdomains; a bare label (``gettyimages``) matches that registrable label under any
    public suffix (``gettyimages.com``, ``gettyimages.co.uk``), never a subdomain label.
    """
    if parts.host is None:
        return None
    for raw in entries:
        entry = _clean_entry(raw)
        if "." in entry:
            if parts.host == entry or parts.host.endswith("." + entry):
                return raw
        elif parts.label is not None and parts.label == entry:
            return raw
    return None


def normalise_url(url: str) -> str | None:
    """The form block-list urls are compared in (same as ``UrlParts.url``)."""
    return url_parts(url).url
