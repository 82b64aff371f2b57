"""Words and width of a caption, in scripts written with spaces and without.

Splitting on whitespace made every Chinese, Japanese or Thai caption one word ("一只猫坐在沙发上"
is a sentence), so a pack's ``min_caption_words`` dropped them all as one-word captions.
Within a whitespace-separated token, words are counted as Unicode's default word
boundaries (UAX #29) count these scripts: each Han ideograph, hiragana letter and Thai, Lao,
Khmer or Myanmar letter is a word of its own (those rules do not join them; a dictionary
would) and a run of katakana is one word; what lies between them is one word more where it
holds a letter or digit. A token with none of these scripts is one word, as before
("IMG_1234.jpg" stays one), unless it holds no letter or digit at all ("—", "!!").

A caption's length in code points is unfair the same way: "猫の写真" (a photo of a cat) is 4,
"a cat" 5, so a five-character minimum dropped it. Its width (``caption_width``) counts a
wide or full-width character (East Asian Width W or F: Han, kana, Hangul syllables,
full-width forms) as 2, as a terminal lays text out and roughly as much as it says, a
combining mark or an invisible format character as 0, and anything else as 1; for
Latin-script text it is the code-point count.
"""

from __future__ import annotations

import re
import unicodedata

from clipaudit.data.scripts import KATAKANA, LETTER_WORDS

_SPACELESS = re.compile(rf"[{LETTER_WORDS}]|[{KATAKANA}]+")


def _has_alnum(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def caption_word_count(text: str) -> int:
    """Words in ``text``, counted as the module says."""
    n = 0
    for token in text.split():
        units = _SPACELESS.findall(token)
        if units:
            n += len(units) + sum(map(_has_alnum, _SPACELESS.sub(" ", token).split()))
        else:
            n += _has_alnum(token)
    return n


def caption_width(text: str) -> int:
    """The display width of ``text``, counted as the module says."""
    if text.isascii():  # most captions: one column a character, no per-character look-ups
        return len(text)
    n = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) == "Cf":
            continue
        n += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return n
