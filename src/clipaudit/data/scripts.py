"""Scripts written without spaces between words, as character classes for regexes.

Unicode's default word boundaries (UAX #29) make each Han ideograph, hiragana letter and
Thai, Lao, Khmer or Myanmar letter a word of its own (only a dictionary could join them)
and a run of katakana one word. Caption word counts and caption word lists read them so.
"""

from __future__ import annotations

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
