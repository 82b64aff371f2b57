"""TDMRep (W3C): ``/.well-known/tdmrep.json``, the ``tdm-reservation`` header and the HTML
``<meta name="tdm-reservation">``, resolved in that order of increasing precedence.

The file is a JSON array of ``{"location", "tdm-reservation", "tdm-policy"}``; the first
entry whose robots-style location pattern matches the path decides. A reservation other
than 0 or 1 is a protocol error and reads as unset (no declaration from that source).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

# The 512 KiB read limit holds at most ~31,000 entries of the shortest shape
# (``{"location":"/"},``), so this bound is never what cuts a file we fetched. Entries past
# it are dropped and counted; a path none of the kept entries matches then reads as unknown.
MAX_ENTRIES = 40_000
MAX_PATTERN_CHARS = 2048
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPE = frozenset(' "<>\\^`{|}')


def normalise(text: str) -> str:
    """A path or location in one percent-encoded form, as robots.txt matching compares them
    (RFC 9309 §2.2.2, RFC 3986 §6.2.2): escapes of unreserved characters decoded (``%7E`` is
    ``~``), other escapes upper-cased (``%2F`` stays, unlike ``/``), and non-ASCII, space and
    control characters percent-encoded as UTF-8. ``*`` and ``$`` are left as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        hex2 = text[i + 1 : i + 3]
        if c == "%" and len(hex2) == 2 and set(hex2) <= _HEX:
            ch = chr(int(hex2, 16))
            out.append(ch if ch in _UNRESERVED else "%" + hex2.upper())
            i += 3
            continue
        if ord(c) > 126 or ord(c) < 33 or c in _ESCAPE:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
        else:
            out.append(c)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Reservation:
    """A resolved TDMRep answer: 1 reserved, 0 not reserved, None no valid declaration."""

    reservation: int | None
    policy: str | None
    source: str | None  # "file", "header", "meta" or None


def reservation_value(value: Any) -> int | None:
    """0 or 1 from a JSON number or a header/meta string; anything else is unset."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    return None


def parse_tdmrep(body: str) -> list[dict[str, Any]] | None:
    """The file's entries normalised to ``{location, reservation, policy}`` (reservation None
    where the value was invalid), or None when the body is not a JSON array."""
    return parse_tdmrep_counted(body)[0]


def parse_tdmrep_counted(body: str) -> tuple[list[dict[str, Any]] | None, int]:
    """``parse_tdmrep``'s entries and how many usable entries past ``MAX_ENTRIES`` were
    dropped (0 when none were)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, 0
    if not isinstance(data, list):
        return None, 0
    entries: list[dict[str, Any]] = []
    dropped = 0
    for item in data:
        if not isinstance(item, dict):
            continue
        loc = item.get("location")
        if not isinstance(loc, str) or not loc or len(loc) > MAX_PATTERN_CHARS:
            continue
        raw, policy = item.get("tdm-reservation"), item.get("tdm-policy")
        # JSON numbers only: a string "1" in the file is already a protocol error.
        value = None if isinstance(raw, str) else reservation_value(raw)
        if len(entries) >= MAX_ENTRIES:
            dropped += 1
            continue
        entries.append(
            {
                "location": loc,
                "reservation": value,
                "policy": policy if isinstance(policy, str) else None,
            }
        )
    return entries, dropped


@functools.lru_cache(maxsize=4096)
def _pattern(location: str) -> tuple[tuple[str, ...], bool]:
    """Robots-style pattern: ``*`` any run of characters, a final ``$`` anchors the end,
    otherwise a prefix match from the start of the path. As its literal parts between the
    stars and whether it is anchored: a regular expression of ``.*``-joined parts
    backtracked exponentially (a server's ``/*a*a*a*a*a*a*a*a*a*a*b`` stalled curate)."""
    location = normalise(location)
    anchored = location.endswith("$")
    body = location[:-1] if anchored else location
    if not body.startswith(("/", "*")):
        body = "/" + body
    return tuple(body.split("*")), anchored


def _matches(parts: tuple[str, ...], anchored: bool, path: str) -> bool:
    """Whether ``path`` matches the pattern, in time linear in the path per part: each part
    between stars is taken at its leftmost place after the one before, which leaves the
    most room for the rest."""
    if not path.startswith(parts[0]):
        return False
    pos = len(parts[0])
    if len(parts) == 1:
        return not anchored or pos == len(path)
    for part in parts[1:-1]:
        found = path.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    last = parts[-1]
    if anchored:
        return len(path) - len(last) >= pos and path.endswith(last)
    return path.find(last, pos) >= 0


def match_entry(entries: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The first entry whose location matches ``path`` (first match wins), or None; both
    compared percent-normalised."""
    path = normalise(path)
    for entry in entries:
        if _matches(*_pattern(str(entry["location"])), path):
            return entry
    return None


def resolve(
    entries: list[dict[str, Any]] | None,
    path: str,
    header: Any = None,
    header_policy: Any = None,
    meta: Any = None,
    meta_policy: Any = None,
) -> Reservation:
    """The effective reservation: HTML meta over HTTP header over the file's first match."""
    for value, policy, source in ((meta, meta_policy, "meta"), (header, header_policy, "header")):
        r = reservation_value(value)
        if r is not None:
            return Reservation(r, policy if isinstance(policy, str) else None, source)
    if entries:
        entry = match_entry(entries, path)
        if entry is not None and entry["reservation"] is not None:
            return Reservation(int(entry["reservation"]), entry.get("policy"), "file")
    return Reservation(None, None, None)
