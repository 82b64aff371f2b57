"""Origins of untrusted urls, and the cache file name each maps to.

robots.txt, ai.txt and tdmrep.json are per origin (scheme, host, port), so the cache is keyed
by origin. Urls come from the dataset, so a host is accepted only in a strict shape, and a
cache file name is a hash: no dataset text ever becomes part of a path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEFAULT_PORT = {"http": 80, "https": 443}
MAX_URL_CHARS = 8192


def _clean_host(host: str) -> str | None:
    """The host in ASCII lower case (IDNA for unicode names), or None when malformed."""
    host = host.strip().rstrip(".").lower()
    if not host or len(host) > 253:
        return None
    try:
        ip = ipaddress.ip_address(host)
        return f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        pass
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return host


def origin_of(url: object) -> str | None:
    """``scheme://host[:port]`` of an http(s) url, or None when it is not a usable url."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        return None
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORT or not host:
        return None
    clean = _clean_host(host)
    if clean is None:
        return None
    if port is not None and port != _DEFAULT_PORT[scheme]:
        return f"{scheme}://{clean}:{port}"
    return f"{scheme}://{clean}"


def path_of(url: str) -> str:
    """The path and query robots rules match against ("/" when empty)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "/"
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def cache_name(origin: str) -> str:
    """The cache file name for ``origin``: its sha256, never text from the url itself."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest() + ".json"
