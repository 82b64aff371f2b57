"""``clipaudit optout ...``: the networked half of opt-out checking (wired in by cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

optout_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Collect machine-readable opt-outs (robots.txt, ai.txt, TDMRep) for curation.",
)


@optout_app.callback()
def _group() -> None:
    """Collect machine-readable opt-outs (robots.txt, ai.txt, TDMRep) for curation."""
    # A callback keeps ``fetch`` a subcommand even while it is the only one.


@optout_app.command()
def fetch(
    dataset: Annotated[str, typer.Argument(help="Dataset path whose sample urls to check.")],
    cache: Annotated[Path, typer.Option("--cache", help="Folder for the per-origin cache.")],
    agents: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated AI-training user-agent tokens (default: see docs/signals.md)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds for a connect or one read.")] = 10.0,
    deadline: Annotated[float, typer.Option(help="Seconds for a whole fetch.")] = 30.0,
    rate_per_host: Annotated[float, typer.Option(help="Requests per second to one host.")] = 1.0,
    ttl: Annotated[
        float, typer.Option(help="Seconds a cached answer stays fresh (≤ 86400).")
    ] = 86400.0,
    refresh: Annotated[bool, typer.Option(help="Refetch even fresh cache entries.")] = False,
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="Dataset format (default: detect).")
    ] = None,
    url_column: Annotated[str | None, typer.Option(help="Column holding source urls.")] = None,
    split: Annotated[str | None, typer.Option(help="Split of a saved DatasetDict.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fetch robots.txt, ai.txt and /.well-known/tdmrep.json for every origin of the
    dataset's urls into --cache; curate reads it with the optout stage (offline)."""
    from rich.progress import Progress

    from clipaudit.data import ReadOptions, open_dataset
    from clipaudit.optout.agents import parse_agents
    from clipaudit.optout.fetch import FetchConfig, fetch_samples
    from clipaudit.optout.http_get import HttpSettings

    cfg = FetchConfig(
        agents=parse_agents(agents),
        concurrency=concurrency,
        rate_per_host=rate_per_host,
        ttl_s=ttl,
        refresh=refresh,
        http=HttpSettings(timeout=timeout, deadline=deadline),
    )
    cfg.validate()
    ds = open_dataset(
        dataset, format=format, options=ReadOptions(url_column=url_column, split=split)
    )
    err = Console(stderr=True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("origins", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = fetch_samples(ds, cache, cfg, step)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    out = Console()
    out.print(
        f"{summary['samples']} samples, {summary['origins']} origins: {summary['fetched']} "
        f"fetched, {summary['fresh']} fresh in the cache; {summary['no_url']} without url, "
        f"{summary['bad_url']} with an unusable url"
    )
    for name, counts in summary["outcomes"].items():
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
        out.print(f"  {name:<7} {shown}", markup=False)
    out.print(f"cache: {summary['cache']}  ({summary['seconds']} s)", markup=False)
