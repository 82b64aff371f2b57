"""Scripts written without spaces between words, as character classes for regexes.

Unicode's default word boundaries (UAX #29) make each Han ideograph, hiragana letter and
Thai, Lao, Khmer or Myanmar letter a word of its own (only a dictionary could join them)
and a run of katakana one word. Caption word counts and caption word lists read them so.
"""

from __future__ import annotations

import re
import unicodedata

LETTER_WORDS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u309f"  # Hiragana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han (extension A, unified, compatibility)
    "\U00020000-\U0003134f"  # Han extensions B to G
)
"""Letters that are each a word (inside a regex character class)."""

KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
"""Letters whose runs are one word (inside a regex character class)."""

# Unicode format characters (category Cf) that render as nothing inside a word: zero-width
# space and joiners, soft hyphen, Arabic letter mark, word joiner, bidi controls, BOM.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def visible_text(text: str) -> str:
    """``text`` NFKC-normalised (full-width letters, ligatures) without the format characters
    that render as nothing, so a pattern sees the word a reader sees ("n\u200bude", "ｃｏｐｙ")."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
