"""The language codes ``quality.languages`` may list: exactly the labels the quality stage's
detector can output (py3langid 0.4's model; ISO 639-1 where a language has such a code,
else ISO 639-3, e.g. ``yue``, ``zxx`` for "no linguistic content"). A code outside this set
could never match a caption, so every confidently detected caption would be dropped as
``wrong_language``; such a pack is refused, with the right code where it is obvious.

The set is written out here rather than read from the model (unpacking it takes seconds);
tests/test_rules_validation.py checks it against the installed detector.
"""

from __future__ import annotations

import re

_CODES = """
    ace af am an ar ary arz as az ba bcl be bg bn br bs ca crh cs cy da de dz el en eo es et
    eu ext fa fi fo fr fuv fy ga gcf gcr gd gl gom grc gu gug guw ha hbo he hi hr ht hu hy id
    ig is it ja jv ka kab kik kk km kn ko ku ky la lb lg lij ln lo lt ltg lv mg mk ml mn mr ms
    mt my ne nl nn no nso oc om or pa pcm pl ps pt qu ro ru rw sa sdh se si sk sl sn so sq sr
    st sv sw ta te tg th tk tl tr tt ug uk ur uz uzs vec vi vo wa wuu xh yo yue zh zu zxx
"""
LANGUAGE_CODES: frozenset[str] = frozenset(_CODES.split())

# English names, ISO 639-2/3 codes and common mistakes for the most used languages.
# fmt: off
_ALIASES: dict[str, str] = {
    "english": "en", "eng": "en",
    "french": "fr", "fra": "fr", "fre": "fr", "francais": "fr", "français": "fr",
    "german": "de", "deu": "de", "ger": "de", "deutsch": "de",
    "spanish": "es", "spa": "es", "espanol": "es", "español": "es", "castilian": "es",
    "italian": "it", "ita": "it",
    "portuguese": "pt", "por": "pt",
    "dutch": "nl", "nld": "nl", "dut": "nl", "flemish": "nl",
    "russian": "ru", "rus": "ru",
    "chinese": "zh", "zho": "zh", "chi": "zh", "mandarin": "zh", "cmn": "zh", "cn": "zh",
    "cantonese": "yue",
    "japanese": "ja", "jpn": "ja", "jp": "ja",
    "korean": "ko", "kor": "ko", "kr": "ko",
    "arabic": "ar", "ara": "ar",
    "hindi": "hi", "hin": "hi",
    "bengali": "bn", "ben": "bn",
    "urdu": "ur", "urd": "ur",
    "persian": "fa", "farsi": "fa", "fas": "fa", "per": "fa",
    "turkish": "tr", "tur": "tr",
    "polish": "pl", "pol": "pl",
    "ukrainian": "uk", "ukr": "uk", "ua": "uk",
    "czech": "cs", "ces": "cs", "cze": "cs", "cz": "cs",
    "greek": "el", "ell": "el", "gre": "el", "gr": "el",
    "hebrew": "he", "heb": "he", "iw": "he",
    "indonesian": "id", "ind": "id", "in": "id",
    "malay": "ms", "msa": "ms", "may": "ms",
    "vietnamese": "vi", "vie": "vi", "vn": "vi",
    "thai": "th", "tha": "th",
    "swedish": "sv", "swe": "sv",
    "danish": "da", "dan": "da", "dk": "da",
    "norwegian": "no", "nor": "no", "nb": "no", "nob": "no", "bokmal": "no", "bokmål": "no",
    "finnish": "fi", "fin": "fi",
    "hungarian": "hu", "hun": "hu",
    "romanian": "ro", "ron": "ro", "rum": "ro",
    "bulgarian": "bg", "bul": "bg",
    "serbian": "sr", "srp": "sr",
    "croatian": "hr", "hrv": "hr",
    "catalan": "ca", "cat": "ca",
    "tagalog": "tl", "filipino": "tl", "fil": "tl", "tgl": "tl",
    "swahili": "sw", "swa": "sw",
    "tamil": "ta", "tam": "ta",
    "latin": "la", "lat": "la",
    "none": "zxx",
}
# fmt: on
_REGION = re.compile(r"^([a-z]{2,3})[-_][a-z0-9]+([-_][a-z0-9]+)*$")


def suggest_language(code: str) -> str | None:
    """The detector's code for a near miss ('EN', 'english', 'en-US', 'eng'), else None."""
    low = code.strip().lower()
    if low in LANGUAGE_CODES:
        return low
    if low in _ALIASES:
        return _ALIASES[low]
    m = _REGION.match(low)  # a region or script tag: en-US, pt_BR, zh-Hant
    if m:
        base = m.group(1)
        return base if base in LANGUAGE_CODES else _ALIASES.get(base)
    return None


def check_language(code: str) -> str:
    """``code`` itself when the detector can output it; else a one-sentence ValueError."""
    if code in LANGUAGE_CODES:
        return code
    hint = suggest_language(code)
    if hint is not None and hint != code:
        raise ValueError(
            f"{code!r} is not a language code the detector outputs; write {hint!r} "
            "(lower-case ISO 639-1 where the language has one)"
        )
    raise ValueError(
        f"{code!r} is not a language code the detector outputs; the codes are: "
        f"{', '.join(sorted(LANGUAGE_CODES))}"
    )
