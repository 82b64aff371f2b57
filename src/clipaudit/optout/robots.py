"""robots.txt (RFC 9309) and ai.txt (Spawning: the same syntax) evaluated with protego.

The verdict for a url is the list of our AI-training agent tokens the file disallows there;
any one of them is an opt-out. Protego implements groups, longest-match precedence and the
``*`` / ``$`` wildcards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from protego import Protego

# ai.txt generators write extension rules as ``Disallow: *.jpg``; a bare ``.jpg`` means the
# same there, while robots syntax needs the leading ``*`` to match anywhere in the path.
_BARE_EXTENSION = re.compile(r"^(\s*(?:dis)?allow\s*:\s*)(\.[A-Za-z0-9]+\$?)", re.I | re.M)


def parse_rules(body: str, aitxt: bool = False) -> Protego:
    """A protego parser for a robots.txt or (``aitxt``) an ai.txt body; garbage parses to
    an empty rule set, which allows everything, as RFC 9309 reads unparseable lines."""
    if aitxt:
        body = _BARE_EXTENSION.sub(r"\1*\2", body)
    return Protego.parse(body)


def disallowed_agents(rules: Protego, path: str, agents: Iterable[str]) -> list[str]:
    """The agent tokens for which ``rules`` disallows ``path`` (a path with its query)."""
    return [a for a in agents if not rules.can_fetch(path, a)]
