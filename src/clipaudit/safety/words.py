"""Caption word lists: whole words or phrases, case-insensitive, Unicode-aware.

Both the caption and the list are NFKC-normalised and case-folded (so full-width letters,
ligatures and "ß"/"SS" match) and lose their invisible format characters (zero-width space
and joiners, soft hyphen, word joiner, bidi controls, BOM: "n\u200bude" shows as "nude" and
slipped past the list), and a hit must not touch another letter or digit on either side, in
any script: "nude" does not match "nudelsuppe". Spaces inside a listed phrase match any run
of whitespace.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence

# Unicode format characters (category Cf) that render as nothing inside a word.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def normalise(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()


def fingerprint(items: Sequence[object]) -> str:
    """A short, order-independent digest of a list of pack entries."""
    blob = json.dumps(sorted(json.dumps(i, sort_keys=True) for i in items)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class WordMatcher:
    def __init__(self, words: Sequence[str]) -> None:
        self.words = sorted({normalise(w).strip() for w in words if w.strip()})
        alts = "|".join(
            r"\s+".join(re.escape(part) for part in w.split())
            for w in sorted(self.words, key=len, reverse=True)
        )
        # \w is Unicode-aware for str patterns: letters and digits of every script.
        self._re = re.compile(rf"(?<!\w)(?:{alts})(?!\w)") if alts else None

    def find(self, text: str | None) -> list[str]:
        """The listed words (normalised) that occur in ``text``, sorted, each once."""
        if not text or self._re is None:
            return []
        found = {" ".join(m.group(0).split()) for m in self._re.finditer(normalise(text))}
        return sorted(found)
