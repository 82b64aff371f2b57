"""``clipaudit index`` and ``clipaudit search``: thin commands over search/index.py and
search/query.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from clipaudit.errors import ClipauditError

WhereOpt = Annotated[
    str | None,
    typer.Option(
        help="Filter rows first, e.g. \"decision = 'keep'\" or \"'nsfw' in reasons\"; "
        "any column of the decision table."
    ),
]


def index_command(
    run: Annotated[Path, typer.Argument(help="A decided run folder.")],
    out: Annotated[Path | None, typer.Option(help="Index folder (default RUN/index).")] = None,
    backend: Annotated[
        str, typer.Option(help="faiss (clipaudit search) or lancedb (also a LanceDB table).")
    ] = "faiss",
    where: WhereOpt = None,
    kind: Annotated[
        str,
        typer.Option(help="auto (exact up to 100,000 vectors, quantised above), flat or pq."),
    ] = "auto",
) -> None:
    """Build a vector index over a run's image and caption embeddings, with its sample ids,
    captions, urls, decisions, reasons, routes and signals as columns."""
    from clipaudit.search.index import build_index

    info = build_index(run, out, backend=backend, where=where, kind=kind)
    folder = out or run / "index"
    vectors = f"{info['count']} image"
    if info["without_caption"] is not None:
        vectors += f" and {info['caption_count']} caption"
    Console().print(
        f"{escape(str(folder))}: {vectors} vectors of dimension {info['dim']} "
        f"({info['kind']}, {info['backend']}) in {info['build_s']} s",
        highlight=False,
        soft_wrap=True,
    )
    part = info.get("partial")
    if part:
        from clipaudit.curate.rundir import other_shards

        Console().print(
            f"PARTIAL: the run was decided with --partial; the index holds the samples of "
            f"{part['scored_shards']} of the input's {part['input_shards']} shards, none of "
            f"{other_shards(len(part['unscored_shards']))} (not scored)",
            highlight=False,
            soft_wrap=True,
        )
    left = []
    if info["without_image"]:
        left.append(f"{info['without_image']} without an image embedding (image not decoded)")
    if info["without_caption"]:
        left.append(f"{info['without_caption']} without a caption embedding (no caption)")
    if left:
        Console().print(
            f"left out: {'; '.join(left)} (of {info['selected']} samples)",
            highlight=False,
            soft_wrap=True,
        )


def search_command(
    source: Annotated[Path, typer.Argument(help="A run folder or an index folder.")],
    text: Annotated[str | None, typer.Argument(help="Text to search for.")] = None,
    image: Annotated[Path | None, typer.Option(help="Search with this image.")] = None,
    like: Annotated[str | None, typer.Option(help="Search with this sample's image.")] = None,
    k: Annotated[int, typer.Option(min=1, max=10_000, help="How many results.")] = 10,
    where: WhereOpt = None,
    captions: Annotated[
        bool, typer.Option(help="Search caption embeddings instead of image embeddings.")
    ] = False,
    collapse: Annotated[bool, typer.Option(help="Show one sample per duplicate group.")] = False,
    model: Annotated[
        str | None, typer.Option(help="Refuse unless the run was scored with this model.")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the results as a page.")] = None,
    show_nsfw: Annotated[bool, typer.Option(help="Thumbnails of NSFW-coded samples.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Nearest samples to a text, an image or a sample, by cosine with the run's own model."""
    from clipaudit.search.query import (
        check_model,
        embed_image,
        embed_text,
        fit_warning,
        like_query,
        open_searchable,
        search,
    )

    given = [x for x in (text, image, like) if x is not None]
    if len(given) != 1:
        raise ClipauditError('give exactly one query: "TEXT", --image PATH or --like ID.')
    if html is not None:
        from clipaudit.search.html import check_html_path

        check_html_path(html)  # before the search, not after it
    s = open_searchable(source)
    check_model(s, model)
    exclude = None
    if text is not None:
        query, label = embed_text(s, text), text
    elif image is not None:
        query, label = embed_image(s, image), f"image {image}"
    else:
        assert like is not None
        exclude, query = like_query(s, like)
        label = f"like {like}"
    hits = search(
        s,
        query,
        k=k,
        where=where,
        captions=captions,
        collapse=collapse,
        exclude=exclude,
        copies_first=like is not None,
    )
    # Warnings once the query and the filter have been accepted: an error stays one line.
    unfit = fit_warning(s)
    if unfit:
        typer.echo(unfit, err=True)
    left_out = s.left_out(captions)
    if left_out:
        what = "a caption embedding (no caption)" if captions else "an image embedding"
        typer.echo(
            f"note: {left_out} sample{'s' if left_out != 1 else ''} without {what} left out "
            "of the search.",
            err=True,
        )
    if not hits:
        # Said on stderr, so stdout (and --json) stays empty: a blank answer read as a hang
        # or a failure.
        typer.echo(
            "no result: "
            + (
                f"no sample passes --where {where!r}."
                if where
                else "the run has nothing to search."
            ),
            err=True,
        )
    if as_json:
        for h in hits:
            typer.echo(json.dumps(h.to_dict(), ensure_ascii=False))
    else:
        for h in hits:
            cap = " ".join(str(h.columns.get("caption") or "").split())[:80]
            typer.echo(
                f"{h.rank:>3}  {h.score:.4f}  {h.id}  {h.columns.get('decision') or ''}  {cap}"
            )
    if html is not None:
        from clipaudit.search.html import results_html, write_results_html

        facts = [
            ("query", label),
            ("searched", "captions" if captions else "images"),
            ("filter", where or "none"),
            ("index", str(s.info.get("kind", "exact"))),
            ("results", str(len(hits))),
        ]
        if left_out:
            facts.append(("left out", f"{left_out} without the embedding searched"))
        if unfit:
            facts.append(("model", unfit.removeprefix("warning: ")))
        write_results_html(html, results_html(s, hits, label, facts, show_nsfw))
