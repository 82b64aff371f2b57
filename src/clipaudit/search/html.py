"""Search results as one self-contained HTML page in the report's style: inline thumbnails,
every caption, url and reason escaped, no script (the page's CSP allows none)."""

from __future__ import annotations

import datetime
from pathlib import Path

from clipaudit import __version__
from clipaudit.errors import ClipauditError
from clipaudit.reports.render import CSP, environment
from clipaudit.reports.thumbs import NSFW_CODES, ThumbSource
from clipaudit.search.query import Hit, Searchable

THUMB_PX = 150


def results_html(
    s: Searchable, hits: list[Hit], query: str, facts: list[tuple[str, str]], show_nsfw: bool
) -> str:
    """The page for ``hits``; NSFW-coded samples are not even decoded unless ``show_nsfw``."""
    shard_of = {h.id: int(s.rows.column("shard")[_pos(s, h.id)].as_py()) for h in hits}
    hidden = (
        set()
        if show_nsfw
        else {h.id for h in hits if set(h.columns.get("reasons") or []) & NSFW_CODES}
    )
    source = ThumbSource(s.run.path, s.run.read_json("run.json"), shard_of, px=THUMB_PX)
    views = source.load([h.id for h in hits], hidden)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        environment()
        .get_template("search.html.j2")
        .render(
            csp=CSP,
            version=__version__,
            title=f"clipaudit search: {query}",
            subtitle=f"{s.run.path} · {s.model} · {stamp}",
            facts=facts,
            note=source.note,
            hits=hits,
            views=views,
        )
    )


def _pos(s: Searchable, sample_id: str) -> int:
    import pyarrow.compute as pc

    return int(pc.index(s.rows.column("id"), sample_id).as_py())


def check_html_path(path: str | Path) -> Path:
    """Refuse, in one sentence, a page path that cannot be written: a folder, or a path
    under a file. Missing parent folders are fine: writing creates them."""
    out = Path(path)
    if out.is_dir():
        raise ClipauditError(
            f"--html {str(out)!r} is a folder; give a file name for the page, like "
            f"{str(out / 'search.html')!r}."
        )
    above = out.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ClipauditError(
            f"--html {str(out)!r} lies under {str(above)!r}, which is a file, not a folder; "
            "give a path in a folder."
        )
    return out


def write_results_html(path: str | Path, html: str) -> Path:
    """Write the page, creating missing parent folders."""
    out = check_html_path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as err:
        raise ClipauditError(
            f"cannot write the page to {str(out)!r}: {err.strerror or err}; give a path in a "
            "folder you can write to."
        ) from None
    return out
