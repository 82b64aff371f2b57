"""Search results as one self-contained HTML page in the report's style: inline thumbnails,
every caption, url and reason escaped, no script (the page's CSP allows none)."""

from __future__ import annotations

import datetime
from pathlib import Path

from clipaudit import __version__
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


def write_results_html(path: str | Path, html: str) -> Path:
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out
