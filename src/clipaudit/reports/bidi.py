"""Unicode's bidirectional embeddings, overrides and isolates in data text.

HTML and Markdown escaping leave them in place, and one in a caption or a file name reverses
the text after it on screen ("Trojan Source": "invoice\\u202efdp.exe" reads "invoiceexe.pdf"),
so what a reviewer reads is not what the data holds. Reports show them as code points.
Right-to-left text itself, and the marks LRM/RLM/ALM, are left alone. Control characters
(C0 but tab and line breaks, DEL, C1) are spelt out too: a NUL or an escape in a caption
reached the HTML as a raw byte, which a browser hides or turns into U+FFFD.
"""

from __future__ import annotations

import re

CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def spell_controls(text: str) -> str:
    """``text`` with each bidi embedding, override or isolate, and each control character,
    written as ``⟨U+202E⟩``."""
    if not CONTROLS.search(text):
        return text
    return CONTROLS.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)
