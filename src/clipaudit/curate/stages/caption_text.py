"""Words in a caption, in scripts written with spaces and without.

Splitting on whitespace made every Chinese, Japanese or Thai caption one word ("一只猫坐在沙发上"
is a sentence), so a pack's ``min_caption_words`` dropped them all as one-word captions.
Within a whitespace-separated token, words are counted as Unicode's default word
boundaries (UAX #29) count these scripts: each Han ideograph, hiragana letter and Thai, Lao,
Khmer or Myanmar letter is a word of its own (those rules do not join them; a dictionary
would) and a run of katakana is one word; what lies between them is one word more where it
holds a letter or digit. A token with none of these scripts is one word, as before
("IMG_1234.jpg" stays one), unless it holds no letter or digit at all ("—", "!!").
"""

from __future__ import annotations

import re

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
