"""robots.txt (RFC 9309) and ai.txt (Spawning: the same syntax).

The verdict for a url is the list of our AI-training agent tokens the file disallows there;
any one of them is an opt-out. Group selection is ours (RFC 9309 §2.2.1): an agent obeys the
groups whose user-agent token equals its product token, case-insensitively and as a whole
token (``Applebot`` is not ``Applebot-Extended``), merged when repeated, and the ``*`` groups
only when none names it. The selected group's rule lines go to protego, which implements
longest-match precedence (Allow wins a tie), the ``*`` / ``$`` wildcards and percent-decoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from protego import Protego

# ai.txt generators write extension rules as ``Disallow: *.jpg``; a bare ``.jpg`` means the
# same there, while robots syntax needs the leading ``*`` to match anywhere in the path.
_BARE_EXTENSION = re.compile(r"^(\s*(?:dis)?allow\s*:\s*)(\.[A-Za-z0-9]+\$?)", re.I | re.M)
# A user-agent line, in the spellings protego also accepts ("User-agent:", "User agent:").
_USER_AGENT = re.compile(r"^user[- ]?agent\s*(?::|\s)\s*(.*)$", re.I)
# Lines that do not end a group (site-wide records).
_SITE_WIDE = re.compile(r"^(?:sitemaps?|site-map|host)\s*(?::|\s)", re.I)
# The product token at the start of a user-agent value ("GPTBot/1.0" names GPTBot).
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _token(value: str) -> str | None:
    value = value.strip()
    if value.startswith("*"):
        return "*"
    m = _TOKEN.match(value)
    return m.group(0).lower() if m else None


class Rules:
    """A parsed robots.txt / ai.txt: its groups, each a set of lowercased tokens and the
    rule lines that follow them; one protego matcher per distinct selection, built lazily."""

    def __init__(self, body: str) -> None:
        self.groups: list[tuple[set[str], list[str]]] = []
        in_agents = False
        for raw in body.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = _USER_AGENT.match(line)
            if m:
                if not in_agents:
                    self.groups.append((set(), []))
                    in_agents = True
                tok = _token(m.group(1))
                if tok:
                    self.groups[-1][0].add(tok)
                continue
            if _SITE_WIDE.match(line):
                continue
            in_agents = False
            if self.groups:  # rules before any user-agent line belong to no group
                self.groups[-1][1].append(line)
        self._selected: dict[str, tuple[int, ...]] = {}
        self._matchers: dict[tuple[int, ...], Protego] = {}

    def group_for(self, agent: str) -> tuple[int, ...]:
        """Indices of the groups ``agent`` obeys: those naming its token, else the ``*`` ones."""
        key = agent.lower()
        if key not in self._selected:
            own = tuple(i for i, (toks, _) in enumerate(self.groups) if key in toks)
            star = tuple(i for i, (toks, _) in enumerate(self.groups) if "*" in toks)
            self._selected[key] = own or star
        return self._selected[key]

    def can_fetch(self, path: str, agent: str) -> bool:
        sel = self.group_for(agent)
        if not sel:
            return True
        if sel not in self._matchers:
            lines = [line for i in sel for line in self.groups[i][1]]
            self._matchers[sel] = Protego.parse("User-agent: *\n" + "\n".join(lines) + "\n")
        return bool(self._matchers[sel].can_fetch(path, "*"))


def complete_lines(text: str) -> str:
    """``text`` without its last line when that line has no end: what a body cut at the read
    limit keeps, so a half rule (``Allow: /im`` of ``Allow: /imgs-public/``) never counts."""
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1]


def parse_rules(body: str, aitxt: bool = False, truncated: bool = False) -> Rules:
    """The rules of a robots.txt or (``aitxt``) an ai.txt body; garbage parses to an empty
    rule set, which allows everything, as RFC 9309 reads unparseable lines. ``truncated``:
    the body was cut at the read limit, so its unfinished last line is dropped."""
    if truncated:
        body = complete_lines(body)
    if aitxt:
        body = _BARE_EXTENSION.sub(r"\1*\2", body)
    return Rules(body)


def disallowed_agents(rules: Rules, path: str, agents: Iterable[str]) -> list[str]:
    """The agent tokens for which ``rules`` disallows ``path`` (a path with its query)."""
    return [a for a in agents if not rules.can_fetch(path, a)]
