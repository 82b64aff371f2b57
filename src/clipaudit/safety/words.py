"""Caption word lists: whole words or phrases, case-insensitive, Unicode-aware.

Both the caption and the list are NFKC-normalised and case-folded (so full-width letters,
ligatures and "ß"/"SS" match) and lose their invisible format characters (zero-width space
and joiners, soft hyphen, word joiner, bidi controls, BOM: "n\u200bude" shows as "nude" and
slipped past the list), and a hit must not touch another letter or digit on either side, in
any script: "nude" does not match "nudelsuppe". In scripts written without spaces the
boundary is the script's own (``_edge``): a Chinese word is found inside a Chinese sentence,
a katakana word not inside a longer katakana run. Spaces inside a listed phrase match any
run of whitespace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from clipaudit.data.scripts import KATAKANA, LETTER_WORDS, visible_text


def normalise(text: str) -> str:
    return visible_text(text).casefold()


def fingerprint(items: Sequence[object]) -> str:
    """A short, order-independent digest of a list of pack entries."""
    blob = json.dumps(sorted(json.dumps(i, sort_keys=True) for i in items)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _edge(ch: str, side: str) -> str:
    """What a listed word's end ``ch`` must not touch: another letter or digit (``\\w`` is
    Unicode-aware), another katakana letter for katakana (a run is one word: "ヌード" is not
    in "ヌードル", noodle), nothing for a Han, hiragana or Thai letter, which touches its
    neighbours in running text ("裸体" is in "一张裸体照片")."""
    if re.match(f"[{KATAKANA}]", ch):
        cls = f"[{KATAKANA}]"
    elif re.match(f"[{LETTER_WORDS}]", ch):
        return ""
    else:
        cls = r"\w"
    return f"(?<!{cls})" if side == "left" else f"(?!{cls})"


def _pattern(word: str) -> str:
    body = r"\s+".join(re.escape(part) for part in word.split())
    return _edge(word[0], "left") + body + _edge(word[-1], "right")


class WordMatcher:
    def __init__(self, words: Sequence[str]) -> None:
        self.words = sorted({normalise(w).strip() for w in words if w.strip()})
        alts = "|".join(_pattern(w) for w in sorted(self.words, key=len, reverse=True))
        self._re = re.compile(f"(?:{alts})") if alts else None

    def find(self, text: str | None) -> list[str]:
        """The listed words (normalised) that occur in ``text``, sorted, each once."""
        if not text or self._re is None:
            return []
        found = {" ".join(m.group(0).split()) for m in self._re.finditer(normalise(text))}
        return sorted(found)
