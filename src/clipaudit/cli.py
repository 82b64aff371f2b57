"""The ``clipaudit`` command: a thin typer app; each command calls one public API function."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape

from clipaudit.cli_options import (
    BatchMegapixelsOpt,
    DatasetArgs,
    FormatOpt,
    VideoSamplingOpt,
    dataset_options,
)
from clipaudit.errors import ClipauditError
from clipaudit.evaluate.cli import eval_app
from clipaudit.judge.cli import judge_command
from clipaudit.optout.cli import optout_app
from clipaudit.search.cli import index_command, search_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Curate image-caption datasets, evaluate CLIP-style models, and report on both.",
)
console = Console(stderr=True)
app.add_typer(optout_app, name="optout")
app.add_typer(eval_app, name="eval")
app.command("index")(index_command)
app.command("search")(search_command)
app.command("judge")(judge_command)


@app.command()
@dataset_options()
def info(
    dataset: Annotated[str, typer.Argument(help="Dataset path (folder, file or shard pattern).")],
    *,
    data: DatasetArgs,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a dataset's format, shards, sample count, columns and a few captions."""
    from clipaudit.data.info import dataset_info

    ds = data.open(dataset)
    result = dataset_info(ds)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    out = Console(markup=False)  # paths, columns and captions are the data's text
    out.print(str(result.source), style="bold")
    out.print(f"format   {result.format}")
    out.print(f"shards   {result.shards}")
    out.print(f"samples  {result.samples}")
    out.print(f"columns  {', '.join(result.columns)}")
    if result.reader_errors:
        out.print(f"unreadable  {result.reader_errors}")
    for cap in result.captions:
        out.print(f"  caption: {cap[:200]!r}", markup=False)


@app.command()
@dataset_options()
def embed(
    dataset: Annotated[str, typer.Argument(help="Dataset path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the embeddings.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model spec, e.g. bundled:NAME.")
    ] = "random:clipaudit-tiny",
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    batch_megapixels: BatchMegapixelsOpt = 128,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")] = None,
    video_sampling: VideoSamplingOpt = "uniform:8",
    *,
    data: DatasetArgs,
) -> None:
    """Embed images and captions into the clip-retrieval layout (img_emb, text_emb, metadata)."""
    from clipaudit.data.video import SamplingPolicy
    from clipaudit.models import load_clip
    from clipaudit.models.embed import embed_dataset

    policy = SamplingPolicy.parse(video_sampling)
    ds = data.open(dataset)
    clip = load_clip(model, device=device)
    from clipaudit.models.domain import domain_warning

    note = domain_warning(model, ds)
    if note:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    summary = embed_dataset(
        ds,
        clip,
        out,
        batch_size=batch_size,
        show_progress=sys.stderr.isatty(),
        policy=policy,
        batch_megapixels=batch_megapixels,
    )
    Console().print(
        f"embedded {summary.images_embedded}/{summary.samples} images and "
        f"{summary.texts_embedded} captions in {summary.shards} shards → {summary.out}"
        + (f"; not embedded: {summary.errors}" if summary.errors else "")
    )


@app.command()
def example(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the dataset.")],
    n: Annotated[int, typer.Option(min=1, help="Number of samples.")] = 64,
    format: Annotated[str, typer.Option("--format", "-f")] = "webdataset",
    shard_size: Annotated[int, typer.Option(min=1)] = 32,
    seed: int = 0,
) -> None:
    """Write a small seeded example dataset of coloured shapes with captions."""
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples

    files = write_dataset(example_samples(n, seed), out, format, shard_size=shard_size)
    files_word = "file" if len(files) == 1 else "files"
    Console().print(f"wrote {n} samples in {len(files)} {files_word} → {out}", markup=False)


@app.command()
def world(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for data/ and labels.")],
    n: Annotated[int, typer.Option(min=1, help="Number of samples.")] = 1000,
    split: Annotated[
        str,
        typer.Option(
            help="pool (noisy, for curation), train, eval-objects, eval-people, "
            "eval-watermark or eval-retrieval."
        ),
    ] = "pool",
    format: Annotated[str, typer.Option("--format", "-f")] = "webdataset",
    size: Annotated[int, typer.Option(min=16, help="Image side in pixels.")] = 256,
    seed: int = 0,
    shard_size: Annotated[int, typer.Option(min=1)] = 1000,
    rate: Annotated[
        list[str] | None,
        typer.Option(help="Pool rate override NAME=VALUE, e.g. misaligned=0.3 (repeatable)."),
    ] = None,
) -> None:
    """Write a synthetic world split or noisy pool with every planted issue labelled."""
    from clipaudit.world import write_world

    rates: dict[str, float] = {}
    for item in rate or []:
        name, sep, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise ClipauditError(f"--rate {item!r} is not NAME=NUMBER.") from None
        if not sep:
            raise ClipauditError(f"--rate {item!r} is not NAME=NUMBER.")
    from clipaudit.world.pool import PoolConfig

    known = set(PoolConfig.__dataclass_fields__) - {"n", "seed", "size"}
    bad = sorted(set(rates) - known)
    if bad:
        raise ClipauditError(f"Unknown pool rate {bad[0]!r}; use: {', '.join(sorted(known))}.")
    record = write_world(
        out,
        split=split,
        n=n,
        seed=seed,
        size=size,
        format=format,
        shard_size=shard_size,
        rates=rates,
    )
    Console().print(
        f"wrote {record['samples']} {split} samples → {out}/data "
        f"(labels.jsonl, planted.json); planted: {record['planted_counts']}"
    )


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the model.")],
    steps: Annotated[int, typer.Option(min=1)] = 2000,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    n_train: Annotated[int, typer.Option(min=2, help="Distinct training scenes.")] = 60_000,
    lr: float = 1e-3,
    seed: int = 0,
    arch: Annotated[
        str, typer.Option(help="Config in clipaudit/models/configs.")
    ] = "clipaudit-world",
    measure: Annotated[bool, typer.Option(help="Measure the card numbers after training.")] = False,
    init: Annotated[
        str | None, typer.Option(help="Start from this model (bundled:NAME or local-dir:DIR).")
    ] = None,
    twins: Annotated[
        bool,
        typer.Option(help="Group-swapped twins of unbiased-occupation people (shipped recipe)."),
    ] = True,
    warmup: Annotated[int | None, typer.Option(min=1, help="Warmup steps.")] = None,
    device: Annotated[str, typer.Option(help="cpu (seeded, bit-reproducible) or cuda.")] = "cpu",
) -> None:
    """Train the small CLIP on the synthetic world (contrastive, seeded) into a local-dir model."""
    from clipaudit.models.train import TrainConfig, train_world_clip

    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        n_train=n_train,
        lr=lr,
        seed=seed,
        arch=arch,
        warmup=warmup or min(100, max(1, steps // 10)),
        init=init,
        twins=twins,
        device=device,
    )
    record = train_world_clip(cfg, out, log=lambda m: Console(stderr=True).print(m))
    Console().print(
        f"trained {steps} steps in {record['train_seconds']:.0f} s "
        f"(+{record['render_seconds']:.0f} s rendering) → local-dir:{out}"
    )
    if measure:
        from clipaudit.models import load_clip
        from clipaudit.models.card import write_model_card
        from clipaudit.world.measure import world_card_metrics

        metrics = world_card_metrics(load_clip(f"local-dir:{out}"))
        write_model_card(Path(out), record, metrics)
        Console().print(json.dumps(metrics, indent=1))


def _print_stats(stats: dict[str, Any], out: Path) -> None:
    c = Console()
    # The path and the pack's name are the user's text: a "[/x]" in either was read as
    # markup, and a closing tag with no opening one crashed the command after its work.
    pack = f"pack {stats['pack']['name']} v{stats['pack']['version']}"
    c.print(f"[bold]{escape(str(out))}[/bold]  {escape(pack)}")
    c.print(
        f"input {stats['input']}  →  kept {stats['kept']} (flagged {stats['flagged']})  "
        f"dropped {stats['dropped']}  errored {stats['errored']}  "
        f"{'(adds up)' if stats['adds_up'] else '(DOES NOT ADD UP)'}"
    )
    part = stats.get("partial")
    if part:
        from clipaudit.curate.rundir import other_shards

        c.print(
            f"PARTIAL: {part['scored_shards']} of the input's {part['input_shards']} shards "
            f"decided; the samples of {other_shards(len(part['unscored_shards']))} (not "
            "scored) are in no table yet (decided with --partial)",
            highlight=False,
            soft_wrap=True,
        )
    for code, n in stats["by_reason"].items():
        c.print(f"  {code:<22} {n:>6}  (dropping {stats['by_reason_dropping'].get(code, 0)})")
    for name, r in stats.get("routes", {}).items():
        c.print(
            f"  route {name:<16} {r['samples']:>6}  ({r['action']}; kept {r['keep']}, "
            f"flagged {r['flag']}, dropped {r['drop']})",
            highlight=False,
        )
    t = stats["thresholds"]
    if t.get("alignment_skipped"):
        c.print(f"alignment threshold: {t['alignment_skipped']}", highlight=False)
        others = [k for k in stats.get("model_scores_not_applied", []) if k != "alignment"]
        if others:
            c.print(
                f"also not applied, as they rest on the same model: {', '.join(others)}",
                highlight=False,
            )
    elif t.get("alignment_scored") is False and (
        t["alignment_min"] is not None or t["alignment_min_percentile"] is not None
    ):
        # Said, not silent: a pack that promises an alignment cut (datacomp's top 30%) over
        # a run scored without the alignment stage cuts nothing.
        c.print(
            f"alignment threshold: min {t['alignment_min']}, percentile "
            f"{t['alignment_min_percentile']} → not applied: the run has no alignment scores "
            "(curate with the alignment stage to cut on them)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        c.print(
            f"alignment threshold: min {t['alignment_min']}, percentile "
            f"{t['alignment_min_percentile']} → {t['alignment_percentile_value']}"
        )
    gates = stats.get("gates")
    if gates:
        c.print(
            "gates: passed" if gates["success"] else f"gates: {gates['first_failure']}",
            highlight=False,
        )


def _gate_exit(stats: dict[str, Any], allow: bool) -> None:
    gates = stats.get("gates")
    if gates and not gates["success"] and not allow:
        console.print(
            f"error: {gates['first_failure']} (see gates.json; pass "
            "--allow-gate-failure to accept).",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


AgainstOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="A run, its kept/ folder or a dataset: samples that copy one of its samples "
        "are dropped naming it (repeat for several; a dataset's hashes are cached).",
    ),
]
AgainstCacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Where a reference dataset's hashes are cached (default: ~/.cache/clipaudit/against)."
    ),
]


@app.command()
# The column options in the order curate has always listed them (caption first).
@dataset_options(
    "caption_column", "image_column", "path_column", "id_column", "url_column", "split"
)
def curate(
    dataset: Annotated[str, typer.Argument(help="Dataset path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumes if it exists).")],
    rules: Annotated[str, typer.Option(help="Rules pack name or .yaml path.")] = "default",
    model: Annotated[str, typer.Option("--model", "-m")] = "bundled:world-clip",
    stages: Annotated[
        str | None, typer.Option(help="Comma-separated stages (default: all of them).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    batch_megapixels: BatchMegapixelsOpt = 128,
    out_format: Annotated[str | None, typer.Option(help="Format of the kept dataset.")] = None,
    device: Annotated[str | None, typer.Option()] = None,
    allow_gate_failure: Annotated[bool, typer.Option(help="Exit 0 even if a gate fails.")] = False,
    optout_cache: Annotated[
        Path | None,
        typer.Option(help="Folder written by `clipaudit optout fetch` (read only, offline)."),
    ] = None,
    c2pa_trust_anchors: Annotated[
        Path | None,
        typer.Option(
            help="PEM file of CA certificates (e.g. the C2PA trust list): a manifest signed "
            "under one reads Trusted, not only Valid.",
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray Data; same run files).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join: HEAD_IP:6379 or auto (default: start one here)."),
    ] = None,
    decode_threads: Annotated[
        int, typer.Option(min=1, help="Threads that decode and prepare batches ahead.")
    ] = 2,
    model_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Torch threads for the model (default: one per core); 1 is faster on a "
            "small or busy machine. Recorded in the run.",
        ),
    ] = None,
    against: AgainstOpt = None,
    against_cache: AgainstCacheOpt = None,
    video_sampling: VideoSamplingOpt = "uniform:8",
    *,
    data: DatasetArgs,
) -> None:
    """Score every sample with the stages, then keep / flag / drop it with a rules pack."""
    from clipaudit.curate.pipeline import DEFAULT_STAGES, CurateConfig
    from clipaudit.curate.pipeline import curate as run_curate

    if ray_address and engine != "ray":
        raise ClipauditError(
            f"--ray-address {ray_address!r} is for the ray engine; add --engine ray."
        )
    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else DEFAULT_STAGES
    if stages is not None and not chosen:  # "," ran no stage and passed every gate
        raise ClipauditError(
            f"--stages {stages!r} names no stage; name one or more of: {', '.join(DEFAULT_STAGES)}"
            " (or leave --stages out for all of them)."
        )
    if c2pa_trust_anchors and "c2pa" in chosen:  # else said unused (curate/scoring.py)
        from clipaudit.rights.provenance import load_trust_anchors

        load_trust_anchors(c2pa_trust_anchors)  # a bad file fails here, not in a worker
        c2pa_trust_anchors = c2pa_trust_anchors.resolve()
    cfg = CurateConfig(
        dataset=dataset,
        out=str(out),
        rules=rules,
        model=model,
        format=data.format,
        read=data.read_options(),
        stages=list(chosen),
        batch_size=batch_size,
        batch_megapixels=batch_megapixels,
        device=device,
        out_format=out_format,
        options={
            k: str(v)
            for k, v in (
                ("optout_cache", optout_cache),
                ("c2pa_trust_anchors", c2pa_trust_anchors),
            )
            if v
        },
        engine=engine,
        ray_address=ray_address,
        decode_threads=decode_threads,
        model_threads=model_threads,
        against=list(against or []),
        against_cache=str(against_cache) if against_cache else None,
        video_sampling=video_sampling,
    )
    with _phase_bars() as decide_progress:
        stats = run_curate(
            cfg,
            warn=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True),
            progress=lambda d, t, n: console.print(
                f"shard {d}/{t} scored ({n} samples this run)", highlight=False
            ),
            decide_progress=decide_progress,
        )
    _print_stats(stats, out)
    for note in _stale_notes(stats, out):  # a resumed curate decides again too
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    _gate_exit(stats, allow_gate_failure)


def _stale_notes(stats: dict[str, Any], run: Path) -> list[str]:
    """Said where a decide removed the run's report or cards: they described the decisions
    it replaced."""
    if not stats.get("stale_documents_removed"):
        return []
    return [
        f"removed {', '.join(stats['stale_documents_removed'])} from {run}: they described "
        "the previous decisions; run `clipaudit report` / `clipaudit card` again."
    ]


@contextlib.contextmanager
def _phase_bars() -> Iterator[Callable[[str, int, int], None]]:
    """One progress bar per decide phase on stderr (shards done of the shards), when it is a
    terminal; nothing otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bars = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(f"decide: {phase}", total=total)
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield update


@app.command()
def decide(
    run: Annotated[Path, typer.Argument(help="A run folder written by curate.")],
    rules: Annotated[str, typer.Option(help="Rules pack name or .yaml path.")] = "default",
    out_format: Annotated[str | None, typer.Option(help="Format of the kept dataset.")] = None,
    allow_gate_failure: Annotated[bool, typer.Option(help="Exit 0 even if a gate fails.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes for the per-shard steps (default: the cores, on large runs)."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local, or ray: the per-shard steps as Ray tasks.")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="HOST:PORT of a Ray cluster (engine ray).")
    ] = None,
    against: AgainstOpt = None,
    against_cache: AgainstCacheOpt = None,
    no_against: Annotated[
        bool,
        typer.Option(
            "--no-against",
            help="Decide without reference sets (by default a decide without --against drops "
            "copies of those the run's last decide used).",
        ),
    ] = False,
    split_by_route: Annotated[
        bool, typer.Option(help="Also write one kept dataset per route (kept_routes/NAME).")
    ] = False,
    kept: Annotated[
        bool,
        typer.Option(
            help="Write the kept dataset (kept/) from the source; --no-kept decides from the "
            "run's signals alone, without the source dataset.",
        ),
    ] = True,
    partial: Annotated[
        bool,
        typer.Option(
            help="Decide a run whose curate stopped part-way on the shards it scored (refused "
            "otherwise); the stats, report and cards say how many shards that leaves out.",
        ),
    ] = False,
) -> None:
    """Re-apply a rules pack to a run's stored signals, without loading any model (routes
    with a phrase the run has not embedded yet load its text tower once)."""
    from clipaudit.curate.config import CurateConfig
    from clipaudit.curate.decide import decide_run
    from clipaudit.curate.engines import get_engine

    if against and no_against:
        raise ClipauditError("--against and --no-against contradict each other; pass one.")
    # None: the reference sets of the run's last decide (RUN/against.json).
    against_paths = list(against) if against else ([] if no_against else None)
    # An unknown or uninstalled engine: the same one-line error as curate gives.
    cfg = CurateConfig(dataset="", out=str(run), engine=engine, ray_address=ray_address)
    mapper = get_engine(engine).decide_mapper(cfg)
    with _phase_bars() as progress:
        stats = decide_run(
            run,
            rules,
            out_format=out_format,
            workers=workers,
            mapper=mapper,
            progress=progress,
            against_paths=against_paths,
            against_cache=against_cache,
            split_by_route=split_by_route,
            write_kept=kept,
            partial=partial,
        )
    _print_stats(stats, run)
    notes = []
    if stats.get("against_reused"):
        notes.append(
            f"copies of {', '.join(stats['against_reused'])} dropped as the run's last decide "
            "did (RUN/against.json); --no-against decides without them."
        )
    notes += _stale_notes(stats, run)
    if not kept and (run / "kept").exists():
        notes.append(
            f"{run / 'kept'} was not rewritten: it still holds an earlier decision's kept samples."
        )
    for note in notes:  # plain text: paths and ids are not markup
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    _gate_exit(stats, allow_gate_failure)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("clipaudit-demo"),
    n: Annotated[int, typer.Option(min=10)] = 2000,
    rules: str = "default",
    seed: int = 0,
    video: Annotated[
        bool, typer.Option(help="The world's video pool instead (clips; --n defaults to 300).")
    ] = False,
) -> None:
    """Make a noisy world pool, curate it with the bundled model, score against the truth."""
    if video:
        _video_demo(out, 300 if n == 2000 else n, rules, seed)
        return
    from clipaudit.demo.images import run_demo

    report = run_demo(
        out, n=n, rules=rules, seed=seed, log=lambda m: console.print(m, highlight=False)
    )
    _print_stats(report["stats"], out / "run")
    c = Console()
    t = report["truth"]
    m = t["misaligned_caption"]
    c.print(
        f"misaligned captions: precision {m['precision']:.3f} recall {m['recall']:.3f} "
        f"F1 {m['f1']:.3f}"
    )
    joined = (" or " if t.get("hash_match") == "any" else " and ").join(t["hashes"])
    joined += ", mirror images too" if t.get("mirrors") else ""
    c.print(
        f"near duplicates (radius {t['radius']}, {joined}): pair precision "
        f"{t['near_duplicate_pair_precision']:.3f}"
    )
    for kind, v in t["near_duplicate_by_transform"].items():
        c.print(f"  {kind:<11} recall {v['recall']}  ({v['found']}/{v['planted']})")
    drops = t.get("near_duplicate_drops")
    if drops and drops["dropped"]:
        c.print(
            f"  near-duplicate drops that copy the sample they name: "
            f"{drops['copy_their_kept_sample']}/{drops['dropped']} ({drops['precision']})"
        )
    from clipaudit.reports import write_report

    c.print(f"report: {write_report([out / 'run'], out / 'report.html').html}", markup=False)


def _video_demo(out: Path, n: int, rules: str, seed: int) -> None:
    from clipaudit.demo.video import run_video_demo

    result = run_video_demo(
        out, n=n, rules=rules, seed=seed, log=lambda m: console.print(m, highlight=False)
    )
    _print_stats(result["stats"], out / "run")
    t = result["truth"]
    m = t["misaligned_caption"]
    c = Console()
    c.print(
        f"misaligned captions: precision {m['precision']:.3f} recall {m['recall']:.3f} "
        f"F1 {m['f1']:.3f}"
    )
    c.print(f"video copies: pair precision {t['copy_pair_precision']}")
    for kind, v in t["copies_by_transform"].items():
        c.print(f"  {kind:<9} recall {v['recall']}  ({v['found']}/{v['planted']})")
    from clipaudit.demo.video import PLANTS

    for plant in PLANTS:
        v = t["signals_by_planted_issue"][plant]
        c.print(
            f"{plant:<14} found {v['found']}/{v['planted']}, false positives {v['false_positives']}"
        )
    from clipaudit.reports import write_report

    c.print(f"report: {write_report([out / 'run'], out / 'report.html').html}", markup=False)


@app.command()
def report(
    dirs: Annotated[list[Path], typer.Argument(help="Curate run and/or eval --out folders.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: DIR/report.html).")
    ] = None,
    show_nsfw: Annotated[
        bool, typer.Option(help="Show thumbnails of NSFW-flagged samples (hidden by default).")
    ] = False,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
) -> None:
    """One self-contained HTML report (plus .json and .csv) for runs and evaluations."""
    from clipaudit.reports import write_report

    files = write_report(dirs, out, show_nsfw=show_nsfw, title=title)
    Console().print(
        f"report: {files.html} (numbers: {files.json.name}, {files.csv.name})", markup=False
    )


@app.command()
def card(
    run: Annotated[Path, typer.Argument(help="A run folder written by curate.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder (default: RUN/cards).")
    ] = None,
) -> None:
    """Dataset card, datasheet and EU AI Act training-content summary from a run's evidence."""
    from clipaudit.reports import write_cards

    for path in write_cards(run, out):
        Console().print(str(path))


@app.command()
def ablate(
    pool: Annotated[
        str, typer.Argument(help="The pool: a dataset, or a `clipaudit world` folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the ablation.")],
    rules: Annotated[
        list[str] | None,
        typer.Option(help="Rules pack (name or .yaml), one arm each; repeatable."),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps of every model.")] = 600,
    seeds: Annotated[int, typer.Option(min=1, help="Training seeds per arm (0..K-1).")] = 2,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    arch: Annotated[
        str, typer.Option(help="Config in clipaudit/models/configs.")
    ] = "clipaudit-ablate",
    lr: float = 1e-3,
    model: Annotated[
        str, typer.Option(help="Model that scores alignment while curating.")
    ] = "bundled:world-clip",
    bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    format: FormatOpt = None,
) -> None:
    """Curate the pool with each pack, train the small CLIP on raw and curated data at equal
    compute, and compare the models on the world benchmarks with paired intervals."""
    from clipaudit.ablate.config import AblateConfig
    from clipaudit.ablate.run import run_ablation

    cfg = AblateConfig(
        pool=pool,
        out=str(out),
        rules=rules or ["default", "keep-all"],
        steps=steps,
        seeds=seeds,
        batch_size=batch_size,
        arch=arch,
        lr=lr,
        curate_model=model,
        bootstrap=bootstrap,
        format=format,
    )
    run_ablation(cfg, log=lambda m: console.print(m, highlight=False, markup=False))
    Console().print((out / "ablate.md").read_text(), markup=False, highlight=False)


# typer >= 0.2x carries its own copy of click, whose exceptions are not click's: usage
# errors (an unknown option, a value out of range) must be caught in both shapes.
_USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    {click.ClickException}
    | {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
)
_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort)
_EXITS: tuple[type[BaseException], ...] = (click.exceptions.Exit, typer.Exit)


def _cap_help_width(width: int) -> None:
    """Typer's help and usage-error consoles take this width (None: the terminal's)."""
    import typer.rich_utils

    if typer.rich_utils.MAX_WIDTH is None:
        typer.rich_utils.MAX_WIDTH = width


def _reflowed(doc: str) -> str:
    """A docstring's paragraphs with their hard line breaks joined: Typer keeps them, so
    `--help` broke sentences mid-line ("with its sample ids," alone on a line)."""
    paras = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paras if p.strip())


def _reflow_help(typer_app: typer.Typer) -> None:
    for cmd in typer_app.registered_commands:
        if cmd.help is None and cmd.callback is not None and cmd.callback.__doc__:
            cmd.help = _reflowed(cmd.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def main() -> None:
    """Entry point: user errors are one line on stderr (exit 2), never a traceback."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        # Rich wraps at 80 columns when it cannot ask a terminal: piped into a file or grep, a
        # line broke as "pair precision\n0.980". A pipe has no width; COLUMNS set wins.
        # Help and usage boxes would be drawn to that width (10,000 columns of box in
        # `--help | less`): Typer draws them at its own width, capped here.
        os.environ["COLUMNS"] = "10000"
        _cap_help_width(100)
    _reflow_help(app)
    command = typer.main.get_command(app)
    try:
        returned = command.main(prog_name="clipaudit", standalone_mode=False)
        # Out of standalone mode an Exit raised inside a command, and Ctrl-C (which Typer
        # turns into Exit(130)), come back as a returned code, not an exception: dropped,
        # an interrupted curate exited 0 and `curate && index` went on over a partial run.
        if returned == 130:
            raise click.exceptions.Abort()
        if isinstance(returned, int) and not isinstance(returned, bool) and returned:
            sys.exit(returned)
    except ClipauditError as err:
        # The message quotes the user's paths, pack names and values: escaped, so "[/x]" in
        # one is printed as typed (it crashed the handler with a MarkupError traceback).
        console.print(
            f"[red]error:[/red] {escape(str(err))}", markup=True, highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except _ABORTS:
        console.print("aborted")
        sys.exit(130)
    except _USAGE_ERRORS as err:
        err.show()  # type: ignore[attr-defined]
        sys.exit(int(getattr(err, "exit_code", 2)))
    except _EXITS as err:
        sys.exit(int(getattr(err, "exit_code", 0)))
