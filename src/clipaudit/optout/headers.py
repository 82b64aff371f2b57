"""Opt-out words in captured HTTP headers: X-Robots-Tag as img2dataset reads it, and the
TDMRep ``tdm-reservation`` / ``tdm-policy`` headers.

A directive is kept as ``word`` (applies to every crawler) or ``agent:word`` (applies only
when ``agent`` is one of our tokens). A value ``agent: a, b`` scopes every word after the
agent, as Google documents; img2dataset reads the same values the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Directives that carry their own ``name: value``, so the name is not a user agent.
_VALUED = {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
_WORD = re.compile(r"^[a-z0-9_-]{1,40}$")
_AGENT = re.compile(r"^[a-z0-9._-]{1,64}$")
MAX_DIRECTIVES = 32
MAX_VALUE_CHARS = 4096


def header_values(headers: Any, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive) from captured headers: a dict of
    str or list of str, or a list of ``[name, value]`` pairs; anything else is no value."""
    want = name.lower()
    if isinstance(headers, dict):
        pairs: Iterable[Any] = headers.items()
    elif isinstance(headers, list):
        pairs = (p for p in headers if isinstance(p, (list, tuple)) and len(p) == 2)
    else:
        return []
    out: list[str] = []
    for key, value in pairs:
        if not isinstance(key, str) or key.strip().lower() != want:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                out.append(str(v)[:MAX_VALUE_CHARS])
    return out


def parse_directives(values: Iterable[str], agents: Iterable[str] | None = None) -> list[str]:
    """``word`` / ``agent:word`` directives, lower case, in order and without repeats.

    With ``agents``, a scoped directive for any other agent is left out (it never applies).
    """
    keep = {a.lower() for a in agents} if agents is not None else None
    out: list[str] = []
    for value in values:
        agent: str | None = None
        for token in value.split(","):
            token = token.strip().lower()
            if ":" in token:
                head, _, rest = token.partition(":")
                head = head.strip()
                if head in _VALUED:
                    continue  # e.g. ``unavailable_after: date``: not an opt-out word
                agent, token = (head if _AGENT.match(head) else "?"), rest.strip()
            if not _WORD.match(token):
                continue
            if agent is not None and (agent == "?" or (keep is not None and agent not in keep)):
                continue
            d = f"{agent}:{token}" if agent else token
            if d not in out:
                out.append(d)
            if len(out) >= MAX_DIRECTIVES:
                return out
    return out


def matching_directive(
    directives: Iterable[str], counted: Iterable[str], agents: Iterable[str]
) -> str | None:
    """The first directive that opts out: a counted word, unscoped or scoped to our agent."""
    words = {w.lower() for w in counted}
    ours = {a.lower() for a in agents}
    for d in directives:
        agent, _, word = d.rpartition(":")
        if word in words and (not agent or agent in ours):
            return d
    return None
