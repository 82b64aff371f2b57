"""``clipaudit eval ...``: zero-shot classification, retrieval and the world benchmarks.

Wired into the main app by cli.py (``app.add_typer(eval_app, name="eval")``). Every run
writes ``OUT/NN-<model>/results.json`` + ``predictions.parquet`` per model and
``OUT/comparison.json`` (the table, and paired differences against the first model).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clipaudit.cli_options import DatasetArgs, VideoSamplingOpt, dataset_options
from clipaudit.errors import ClipauditError

eval_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Zero-shot classification and retrieval benchmarks with intervals and comparisons.",
)

DEFAULT_MODEL = "bundled:world-clip"
Models = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Model spec; repeat to compare (first is the baseline)."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="New folder for the results.")]
SeedOpt = Annotated[int, typer.Option(help="Bootstrap seed.")]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples (0: none).")]
BatchOpt = Annotated[int, typer.Option(min=1)]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print comparison JSON, not a table.")]


@eval_app.callback()
def _group() -> None:
    """Zero-shot classification and retrieval benchmarks with intervals and comparisons."""


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-")[:60] or "model"


def _fresh(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ClipauditError(f"The output {str(out)!r} is a file; choose a new folder.")
    if out.is_dir() and any(out.iterdir()):
        raise ClipauditError(f"The output folder {str(out)!r} is not empty; choose a new one.")


def check_device(device: str | None) -> None:
    """Refuse a bad --device before any data is read (one ModelError naming it)."""
    if device:
        from clipaudit.models.loader import pick_device

        pick_device(device)


def run_models(
    models: list[str],
    run_one: Callable[[Any], dict[str, Any]],
    out: Path | None,
    seed: int,
    n_boot: int,
    device: str | None,
) -> dict[str, Any]:
    """Load each model in turn, run the task, write its results; then compare them all."""
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.evaluate.compare import compare_results
    from clipaudit.evaluate.results import write_result
    from clipaudit.models import load_clip

    if out is not None:
        _fresh(out)
    check_device(device)
    results = []
    told: set[str] = set()
    for i, spec in enumerate(models):
        clip = load_clip(spec, device=device)
        result = run_one(clip)
        results.append(result)
        for note in result.get("notes", []):
            if note not in told:  # the data's notes are the same for every model
                told.add(note)
                typer.echo(f"note: {note}", err=True)
        if out is not None:
            write_result(result, out / f"{i:02d}-{_slug(spec)}")
    comparison = compare_results(results, BootstrapSpec(n=n_boot, seed=seed))
    if out is not None:
        (out / "comparison.json").write_text(
            json.dumps(comparison, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return comparison


def _fmt(v: dict[str, Any]) -> str:
    ci = v.get("ci")
    return f"{v['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def show(comparison: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(comparison, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{comparison['task']} on {comparison['dataset']}")
    metrics = list(comparison["table"][0]["metrics"])
    table.add_column("model")
    for m in metrics:
        table.add_column(m)
    for row in comparison["table"]:
        table.add_row(row["model"], *(_fmt(row["metrics"][m]) for m in metrics))
    for diff in comparison["differences"]:
        table.add_row(
            f"Δ {diff['model']}",
            *(
                _fmt(diff["metrics"][m]) + (" *" if diff["metrics"][m]["excludes_zero"] else "")
                for m in metrics
            ),
        )
    Console().print(table)


@eval_app.command()
@dataset_options("image_column", "path_column", "id_column", "split", described=False)
def zeroshot(
    dataset: Annotated[str, typer.Argument(help="Dataset path (class folders or any format).")],
    out: OutOpt,
    model: Models = None,
    templates: Annotated[
        str, typer.Option(help="Built-in set (openai, simple, world-…) or JSON file[#KEY].")
    ] = "openai",
    classes: Annotated[
        str | None, typer.Option(help="Class names: JSON list file[#KEY] or one per line.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Column or field holding labels.")
    ] = None,
    seed: SeedOpt = 0,
    bootstrap: BootOpt = 1000,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    heads_cache: Annotated[
        Path | None, typer.Option(help="Folder caching class heads by (model, prompts).")
    ] = None,
    *,
    data: DatasetArgs,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot classification: acc1, acc5, mean per-class recall, per-class recall."""
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.evaluate.classdata import load_classification
    from clipaudit.evaluate.classification import zeroshot_classification
    from clipaudit.evaluate.heads import HeadCache
    from clipaudit.evaluate.prompts import build_prompts, load_classnames, load_templates

    check_device(device)
    names = load_classnames(classes) if classes else None
    labelled = load_classification(dataset, data.format, data.read_options(), label_column, names)
    prompts = build_prompts(labelled.classnames, load_templates(templates), templates)
    boot = BootstrapSpec(n=bootstrap, seed=seed)
    heads = HeadCache(heads_cache)

    def one(clip: Any) -> dict[str, Any]:
        return zeroshot_classification(
            clip, labelled, prompts, boot=boot, heads=heads, batch_size=batch_size
        )

    show(run_models(model or [DEFAULT_MODEL], one, out, seed, bootstrap, device), as_json)


@eval_app.command()
@dataset_options(
    "image_column", "path_column", "caption_column", "id_column", "split", described=False
)
def retrieval(
    dataset: Annotated[str, typer.Argument(help="Image–caption dataset path.")],
    out: OutOpt,
    model: Models = None,
    captions_field: Annotated[
        str | None,
        typer.Option(help="Meta field holding a list (or JSON list) of extra captions per image."),
    ] = None,
    seed: SeedOpt = 0,
    bootstrap: BootOpt = 1000,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    video_sampling: VideoSamplingOpt = "uniform:8",
    *,
    data: DatasetArgs,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot retrieval: text→image and image→text recall@1/5/10."""
    from clipaudit.data.video import SamplingPolicy
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.evaluate.retrieval import zeroshot_retrieval
    from clipaudit.evaluate.retrievaldata import load_retrieval

    policy = SamplingPolicy.parse(video_sampling)  # a bad policy is refused before any work
    check_device(device)
    pairs = load_retrieval(dataset, data.format, data.read_options(), captions_field, policy)
    boot = BootstrapSpec(n=bootstrap, seed=seed)

    def one(clip: Any) -> dict[str, Any]:
        return zeroshot_retrieval(clip, pairs, boot=boot, batch_size=batch_size)

    show(run_models(model or [DEFAULT_MODEL], one, out, seed, bootstrap, device), as_json)


def _world_command(name: str, description: str) -> None:
    def command(
        model: Models = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for results.")] = None,
        n: Annotated[int | None, typer.Option(min=1, help="Scenes (default: the card's).")] = None,
        world_seed: Annotated[int, typer.Option(help="World split seed.")] = 1,
        seed: SeedOpt = 0,
        bootstrap: BootOpt = 1000,
        device: DeviceOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from clipaudit.evaluate.bootstrap import BootstrapSpec
        from clipaudit.evaluate.world import run_world_benchmark

        boot = BootstrapSpec(n=bootstrap, seed=seed)

        def one(clip: Any) -> dict[str, Any]:
            return run_world_benchmark(name, clip, n=n, seed=world_seed, boot=boot)

        show(run_models(model or [DEFAULT_MODEL], one, out, seed, bootstrap, device), as_json)

    command.__doc__ = f"World benchmark: {description}."
    eval_app.command(name=name)(command)


def _register_world_commands() -> None:
    from clipaudit.evaluate.world import WORLD_BENCHMARKS

    for bench in WORLD_BENCHMARKS.values():
        _world_command(bench.name, bench.description)


_register_world_commands()


@eval_app.command("list")
def list_builtins() -> None:
    """List the built-in template sets, world benchmarks and bias prompt sets."""
    from clipaudit.evaluate.bias.promptsets import builtin_prompt_sets, load_prompt_set
    from clipaudit.evaluate.prompts import TEMPLATE_SETS
    from clipaudit.evaluate.world import WORLD_BENCHMARKS

    c = Console()
    c.print("template sets: " + ", ".join(sorted(TEMPLATE_SETS)))
    for b in WORLD_BENCHMARKS.values():
        c.print(f"{b.name:<18} {b.task:<24} {b.description} (default n={b.default_n})")
    c.print("bias prompt sets (eval bias --prompts / --labels / --classes):")
    for name in sorted(builtin_prompt_sets()):
        ps = load_prompt_set(name)
        s = ps.spec
        c.print(f"{name:<18} {s.kind:<9} {len(s.classes):>3} classes  {s.description}")


@eval_app.command()
def bias(
    out: OutOpt,
    dataset: Annotated[
        str | None,
        typer.Argument(help="FairFace CSV, UTKFace folder, any dataset, or 'world'."),
    ] = None,
    probe: Annotated[
        str, typer.Option(help="skew, harmful, association, disparity, or all.")
    ] = "all",
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec.")] = DEFAULT_MODEL,
    world: Annotated[
        bool, typer.Option("--world", help="The world's balanced eval-people split.")
    ] = False,
    prompts: Annotated[
        str | None, typer.Option(help="Concept prompt set (name or YAML) for skew/association.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Label set (name or YAML) for the harmful probe.")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Class prompt set (name or YAML) for disparity.")
    ] = None,
    group_column: Annotated[
        list[str] | None, typer.Option(help="Demographic column; repeat for several.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Zero-shot target column for disparity.")
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="fairface, utkface or dataset (default: detect).")
    ] = None,
    n: Annotated[int, typer.Option(min=1, help="World scenes.")] = 2000,
    world_seed: Annotated[int, typer.Option(help="World split seed.")] = 1,
    k: Annotated[int, typer.Option(help="Headline k for skew and its p-value.")] = 100,
    ks: Annotated[str | None, typer.Option(help="Curve ks, comma-separated.")] = None,
    permutations: Annotated[int, typer.Option(min=0, help="Permutations for p-values.")] = 1000,
    min_group_size: Annotated[int, typer.Option(min=1)] = 30,
    tau: Annotated[float, typer.Option(help="Aequitas fairness band [tau, 1/tau].")] = 0.8,
    thresholds: Annotated[
        Path | None, typer.Option(help="YAML of pass/warn/fail thresholds (default: built in).")
    ] = None,
    rules: Annotated[
        str | None, typer.Option(help="Rules pack whose bias: section sets the thresholds.")
    ] = None,
    fail_on: Annotated[
        str, typer.Option(help="Exit 1 when the overall verdict reaches: fail, warn or never.")
    ] = "fail",
    seed: SeedOpt = 0,
    bootstrap: BootOpt = 1000,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
) -> None:
    """Bias probes: retrieval skew, harmful labels, association and accuracy disparity."""
    import sys

    from clipaudit.evaluate.bias import detect_layout, load_bias_data, run_bias
    from clipaudit.evaluate.bias.run import write_bias_result
    from clipaudit.evaluate.bias.verdicts import load_thresholds
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.models import load_clip

    if fail_on not in ("fail", "warn", "never"):
        raise ClipauditError(f"--fail-on must be fail, warn or never, got {fail_on!r}.")
    if thresholds is not None and rules is not None:
        raise ClipauditError("Pass --thresholds or --rules, not both: both set the thresholds.")
    limits = load_thresholds(thresholds, rules)
    world = world or dataset == "world"
    if not world and dataset is None:
        raise ClipauditError("Pass a dataset path, or --world for the world's eval-people split.")
    _fresh(out)
    if world:
        data = load_bias_data("world", n=n, seed=world_seed)
    else:
        assert dataset is not None
        kind = layout or detect_layout(dataset)
        data = load_bias_data(
            kind,
            dataset,
            columns=[*(group_column or []), *([label_column] if label_column else [])],
        )
    try:
        curve = tuple(int(x) for x in ks.split(",")) if ks else None
    except ValueError:
        raise ClipauditError(f"--ks must be comma-separated integers, got {ks!r}.") from None
    clip = load_clip(model, device=device)
    result = run_bias(
        clip,
        data,
        probes=probe,
        prompts={"concepts": prompts, "labels": labels, "classes": classes},
        group_columns=group_column,
        label_column=label_column,
        boot=BootstrapSpec(n=bootstrap, seed=seed),
        k=k,
        ks=curve,
        permutations=permutations,
        min_group_size=min_group_size,
        tau=tau,
        world=world,
        batch_size=batch_size,
        thresholds=limits,
    )
    path = write_bias_result(result, out)
    table = Table(
        title=f"bias probes on {result['dataset']['name']} ({result['dataset']['n']} images)"
    )
    table.add_column("metric")
    table.add_column("value")
    for name, v in result["metrics"].items():
        if name.startswith("skew.") and "max_skew" not in name:
            continue  # the full curves are in results.json and bias_table.parquet
        table.add_row(name, _fmt(v) if v["value"] == v["value"] else "n/a")
    console = Console()
    console.print(table)
    v = result["verdicts"]
    for item in v["items"]:
        if item["verdict"] != "pass":
            console.print(
                f"{item['verdict']:<5} {item['probe']:<12} {item['item']}: {item['why']}",
                markup=False,
            )
    console.print(f"verdict: {v['overall']}; results: {path}", markup=False)
    if fail_on != "never" and (
        v["overall"] == "fail" or (fail_on == "warn" and v["overall"] == "warn")
    ):
        sys.exit(1)  # like the curation gates: the audit's verdict is the exit code
