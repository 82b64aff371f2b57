"""Who we are and whom we speak for: AI-training user-agent tokens and header directives."""

from __future__ import annotations

import re

from clipaudit import __version__

# Product tokens of crawlers that collect AI training data (reference.md, "Rights and
# provenance"). A site that disallows any of them has opted out of AI training.
DEFAULT_AGENTS: tuple[str, ...] = (
    "GPTBot",
    "ClaudeBot",
    "anthropic-ai",
    "Google-Extended",
    "Applebot-Extended",
    "CCBot",
    "Bytespider",
    "Meta-ExternalAgent",
    "cohere-training-data-crawler",
    "Ai2Bot-Dolma",
)

# img2dataset's default ``disallowed_header_directives``: the two AI words and the two
# indexing words it also honours.
DEFAULT_HEADER_DIRECTIVES: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")

# The User-Agent our fetcher sends: our own name, never a borrowed browser string.
USER_AGENT = f"clipaudit-optout/{__version__}"

# RFC 9309 product tokens: letters, digits, "-" and "_" (we also allow "." for safety).
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def valid_agent(token: str) -> bool:
    """Whether ``token`` is a usable user-agent product token."""
    return bool(_TOKEN.match(token))


def parse_agents(text: str | None) -> tuple[str, ...]:
    """A comma-separated agent list (``None`` or blank: the default list), deduplicated."""
    if text is None or not text.strip():
        return DEFAULT_AGENTS
    out: list[str] = []
    for part in text.split(","):
        token = part.strip()
        if not token:
            continue
        if not valid_agent(token):
            from clipaudit.errors import ClipauditError

            raise ClipauditError(
                f"The user-agent token {token!r} is not a product token; use letters, digits, "
                "'-' and '_' only (e.g. GPTBot)."
            )
        if token.lower() not in {a.lower() for a in out}:
            out.append(token)
    return tuple(out) or DEFAULT_AGENTS
