"""``clipaudit judge``: a thin command over judge/run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


def judge_command(
    run: Annotated[Path, typer.Argument(help="A decided run folder.")],
    endpoint: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    ],
    model: Annotated[str, typer.Option(help="The model name the server serves.")],
    rules: Annotated[str, typer.Option(help="Rules pack (its judge: section).")] = "default",
    rubric: Annotated[
        str | None, typer.Option(help="faithful, watermark, nsfw or a pack rubric.")
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(help="Ask about the rows this filter selects (the --where language)."),
    ] = None,
    budget: Annotated[
        int, typer.Option(min=0, help="At most this many HTTP requests, retries included.")
    ] = 200,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 4,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (never written).")
    ] = "OPENAI_API_KEY",
    max_side: Annotated[int, typer.Option(min=64, max=4096, help="Image side sent.")] = 512,
    deadline: Annotated[float, typer.Option(help="Seconds for the whole run.")] = 3600.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds to wait for one answer.")] = 60.0,
    price_in: Annotated[
        float | None, typer.Option(help="Price per million input tokens (for the cost).")
    ] = None,
    price_out: Annotated[
        float | None, typer.Option(help="Price per million output tokens.")
    ] = None,
) -> None:
    """Ask a native multimodal model about a run's borderline samples; verdicts land in
    RUN/judge/ and the next `clipaudit decide` reads them. Exits 1 when none of the selected
    samples got an answer."""
    from clipaudit.judge.run import run_judge

    info = run_judge(
        run,
        endpoint,
        model,
        rules=rules,
        rubric=rubric,
        select_expr=select,
        budget=budget,
        concurrency=concurrency,
        api_key_env=api_key_env,
        max_side=max_side,
        deadline_s=deadline,
        read_timeout=read_timeout,
        price_in=price_in,
        price_out=price_out,
    )
    # Why requests failed, grouped by problem, most frequent first: "failed 2" alone sent
    # the user to answers.jsonl.
    why = "; ".join(f"{problem}: {n}" for problem, n in info["failures"].items())
    Console().print(
        f"{escape(str(run))}/judge: selected {info['selected']}, asked {info['asked']} "
        f"(cached {info['cached']}"
        + (f", not sent {info['not_sent']}" if info.get("not_sent") else "")
        + f"): ok {info['ok']}, unparseable {info['unparseable']}, "
        f"failed {info['failed']}"
        + (f" ({escape(why)})" if why else "")
        + (f", no picture {info['no_image']}" if info["no_image"] else "")
        + f"; tokens {info['tokens']['prompt']} in / {info['tokens']['completion']} out"
        + (f"; cost {info['cost']}" if info["cost"] is not None else ""),
        highlight=False,
    )
    if info.get("note"):
        Console().print(escape(str(info["note"])), highlight=False, soft_wrap=True)
    if info.get("refused"):
        key = f"the key in ${api_key_env} (--api-key-env)" if api_key_env else "the key"
        Console().print(
            f"error: the server refused the request ({escape(str(info['refused']))}); "
            f"check {key}, --model and --endpoint. The samples after it were not sent.",
            highlight=False,
            soft_wrap=True,
        )
    if info["selected"] and not info["answered"]:
        # Exit 1, as a failed gate does: `judge && decide` must not go on as if judged.
        Console().print(
            f"error: none of the {info['selected']} selected samples got an answer (see "
            f"{escape(str(run))}/judge/verdicts.parquet).",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
