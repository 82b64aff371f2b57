"""``<meta>`` opt-out equivalents in a captured HTML page: ``<meta name="robots">`` (or a
crawler's token as the name) with the X-Robots-Tag words, and TDMRep's
``<meta name="tdm-reservation">`` / ``<meta name="tdm-policy">``."""

from __future__ import annotations

from html.parser import HTMLParser

# Metas sit in the head; a page bigger than this is read only that far.
MAX_HTML_CHARS = 1 << 20
MAX_METAS = 512


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.metas: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta" or len(self.metas) >= MAX_METAS:
            return
        a = {k.lower(): v for k, v in attrs if v is not None}
        name, content = a.get("name"), a.get("content")
        if name and content is not None:
            self.metas.append((name.strip().lower(), content.strip()))


def html_metas(html: object) -> list[tuple[str, str]]:
    """(lower-case name, content) of every named ``<meta>``; malformed HTML gives what was
    read before the fault, and a non-string gives nothing."""
    if not isinstance(html, str) or not html:
        return []
    p = _MetaParser()
    try:
        p.feed(html[:MAX_HTML_CHARS])
        p.close()
    except (AssertionError, ValueError):  # html.parser's reactions to broken markup
        pass
    return p.metas


def meta_robots_values(metas: list[tuple[str, str]], agents: list[str]) -> list[str]:
    """Meta robots contents written as X-Robots-Tag values (``agent: words`` for a meta
    named after one of ``agents``), so one parser reads both."""
    ours = {a.lower() for a in agents}
    out = []
    for name, content in metas:
        if name == "robots":
            out.append(content)
        elif name in ours:
            out.append(f"{name}: {content}")
    return out


def meta_value(metas: list[tuple[str, str]], name: str) -> str | None:
    """The first content of the meta called ``name``."""
    return next((c for n, c in metas if n == name), None)
