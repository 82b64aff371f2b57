"""The ablation end to end: curate, train every arm × seed at equal compute, score, compare."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from clipaudit.ablate.benchmarks import HEADLINE, build_benchmarks, score_model
from clipaudit.ablate.config import RAW_ARM, AblateConfig
from clipaudit.ablate.curation import curate_arms
from clipaudit.ablate.paired import paired_table
from clipaudit.ablate.pooldata import TRACKED_ISSUES, load_pool, locate
from clipaudit.ablate.report import ablate_markdown
from clipaudit.ablate.training import train_jobs
from clipaudit.data.formats import atomic_write_bytes
from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.evaluate.tasks import get_task
from clipaudit.models.loader import load_clip
from clipaudit.models.train import TrainConfig, new_model

SCHEMA = "clipaudit.ablate/1"
RESULTS_JSON = "ablate.json"
REPORT_MD = "ablate.md"


def _issue_share(ids: set[str], issues: dict[str, set[str]] | None) -> dict[str, float] | None:
    if issues is None or not ids:
        return None
    return {i: len(ids & issues.get(i, set())) / len(ids) for i in TRACKED_ISSUES}


def _units(result: dict[str, Any]) -> tuple[str, ...]:
    return tuple(result["per_sample"]["id"])


def compare_arms(
    scores: dict[str, list[dict[str, dict[str, Any]]]], spec: BootstrapSpec
) -> dict[str, dict[str, dict[str, Any]]]:
    """arm → benchmark → metric → {"score", "difference"?} from every model's results.

    ``scores``: arm → per seed (same order in every arm) → benchmark → result dict.
    """
    arms = list(scores)
    benches = list(scores[RAW_ARM][0])
    out: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in arms}
    for bench in benches:
        base = scores[RAW_ARM][0][bench]
        task = get_task(base["task"])
        stats: dict[str, list[dict[str, Any]]] = {}
        n_units = 0
        for a in arms:
            stats[a] = []
            for per_seed in scores[a]:
                r = per_seed[bench]
                if _units(r) != _units(base):
                    raise RuntimeError(f"{bench}: models were scored on different units")
                st, n_units = task.stats(r)
                stats[a].append(st)
        for a in arms:
            out[a][bench] = {}
        for metric in stats[RAW_ARM][0]:
            table = paired_table(
                {a: [s[metric] for s in stats[a]] for a in arms}, n_units, spec, RAW_ARM
            )
            for a in arms:
                out[a][bench][metric] = table[a]
    return out


def _verdicts(arms: list[dict[str, Any]], raw_kept: int) -> list[str]:
    notes = []
    for a in arms:
        if a["name"] == RAW_ARM:
            continue
        diffs = [a["difference_to_raw"][b][m] for b, m in HEADLINE]
        if a["kept"] == raw_kept:
            worst = max(abs(d["value"]) for d in diffs)
            zero = all(d["ci"] is not None and d["ci"][0] <= 0 <= d["ci"][1] for d in diffs)
            verdict = (
                "every interval contains zero (passed)"
                if zero
                else "an interval excludes zero: the method is broken (FAILED)"
            )
            notes.append(
                f"null check: `{a['name']}` keeps every trainable sample, so it must train "
                f"the raw arm's model; largest headline difference {worst * 100:.2f} points, "
                f"{verdict}."
            )
            continue
        better = sum(1 for d in diffs if d["excludes_zero"] and d["value"] > 0)
        worse = sum(1 for d in diffs if d["excludes_zero"] and d["value"] < 0)
        notes.append(
            f"`{a['name']}` vs raw: better on {better} and worse on {worse} of {len(diffs)} "
            f"headline metrics with the interval excluding zero ({len(diffs) - better - worse} "
            "undecided)."
        )
    return notes


def run_ablation(cfg: AblateConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the ablation into ``cfg.out``; returns what ``ablate.json`` holds."""
    import open_clip

    cfg.validate()
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ClipauditError(
            f"The output {str(out)!r} is a file or a folder that is not empty; choose a new folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    t_start, c_start = time.perf_counter(), time.process_time()
    names = cfg.arm_names()
    base_cfg = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup=cfg.warmup or min(100, max(1, cfg.steps // 10)),
        arch=cfg.arch,
        workers=cfg.workers,
    )
    _, model_cfg, _ = new_model(base_cfg)  # an unknown --arch fails before any work
    from clipaudit.rules.schema import load_pack

    for rules in cfg.rules:  # so does a pack name or file that does not load
        load_pack(rules)
    image_size = int(model_cfg["vision_cfg"]["image_size"])
    data_path, _ = locate(cfg.pool)

    t0 = time.perf_counter()
    pool = load_pool(cfg.pool, image_size, cfg.format, cfg.workers, log)
    t_pool = time.perf_counter() - t0

    t0 = time.perf_counter()
    curated, scoring_seconds = curate_arms(
        str(data_path),
        cfg.format,
        list(zip(names[1:], cfg.rules, strict=True)),
        out,
        cfg.curate_model,
        log,
    )
    t_curate = time.perf_counter() - t0

    arm_ids: dict[str, set[str]] = {RAW_ARM: set(pool.ids)}
    for arm in curated:
        arm_ids[arm.name] = arm.kept_ids & arm_ids[RAW_ARM]
    arm_rows = {name: pool.rows(ids) for name, ids in arm_ids.items()}
    for name, rows in arm_rows.items():
        if len(rows) < cfg.batch_size:
            raise ClipauditError(
                f"The arm {name!r} keeps {len(rows)} samples, fewer than the batch size "
                f"{cfg.batch_size}; use a larger pool or a smaller --batch-size."
            )
    tokens = open_clip.get_tokenizer(cfg.arch)(pool.captions)

    t0 = time.perf_counter()
    log("rendering the world benchmarks")
    bset = build_benchmarks(cfg.eval_sizes, cfg.eval_seed, image_size, cfg.workers)
    t_render = time.perf_counter() - t0

    seeds = list(range(cfg.seeds))
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    scores: dict[str, list[dict[str, dict[str, Any]]]] = {n: [] for n in names}
    order = [(seed, name) for seed in seeds for name in names]
    jobs = [
        (
            arm_rows[name],
            TrainConfig(**{**asdict(base_cfg), "seed": seed}),
            str(out / "arms" / name / f"seed-{seed}"),
        )
        for seed, name in order
    ]
    log(f"training {len(jobs)} models ({len(names)} arms × {len(seeds)} seeds)")
    t0 = time.perf_counter()
    t_eval = 0.0
    threads = torch.get_num_threads()
    # Scoring here overlaps the workers' training: one thread, so it does not starve them.
    torch.set_num_threads(1 if cfg.workers > 1 else threads)
    try:
        for (seed, name), rec in zip(
            order, train_jobs(pool.images, tokens, jobs, cfg.workers), strict=True
        ):
            t1 = time.perf_counter()
            model = f"arms/{name}/seed-{seed}"
            clip = load_clip(f"local-dir:{out / model}", device="cpu")
            scores[name].append(score_model(clip, bset))
            t_eval += time.perf_counter() - t1
            runs[name].append(
                {
                    "seed": seed,
                    "model": model,
                    "weights_sha256": clip.provenance.weights_sha256,
                    "samples_seen": rec["samples_seen"],
                    "epochs": rec["epochs"],
                    "train_seconds": rec["train_seconds"],
                    "train_cpu_seconds": rec["train_cpu_seconds"],
                    "final_loss": rec["final_loss"],
                }
            )
            log(
                f"{name} seed {seed}: {rec['samples_seen']} samples seen "
                f"({rec['epochs']} epochs of {rec['rows']}) in {rec['train_seconds']:.0f} s, "
                f"final loss {rec['final_loss']:.3f}"
            )
            del clip
    finally:
        torch.set_num_threads(threads)
    t_train = time.perf_counter() - t0
    spec = BootstrapSpec(n=cfg.bootstrap, seed=0)
    t0 = time.perf_counter()
    compared = compare_arms(scores, spec)
    t_compare = time.perf_counter() - t0

    by_name = {a.name: a for a in curated}
    arms_out: list[dict[str, Any]] = []
    for name in names:
        ids = arm_ids[name]
        entry: dict[str, Any] = {
            "name": name,
            "rules": by_name[name].rules if name in by_name else None,
            "kept": len(ids),
            "kept_share": len(ids) / len(pool.ids),
            "kept_issue_share": _issue_share(ids, pool.issues),
            "curation": by_name[name].stats if name in by_name else None,
            "scored_run": by_name[name].scored_run if name in by_name else None,
            "runs": runs[name],
            "train_seconds": round(sum(r["train_seconds"] for r in runs[name]), 1),
            "benchmarks": {
                b: {m: v["score"] for m, v in ms.items()} for b, ms in compared[name].items()
            },
        }
        if name != RAW_ARM:
            entry["difference_to_raw"] = {
                b: {m: v["difference"] for m, v in ms.items()} for b, ms in compared[name].items()
            }
        arms_out.append(entry)
    seen = {r["samples_seen"] for rs in runs.values() for r in rs}
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "config": {**asdict(cfg), "warmup": base_cfg.warmup},
        "pool": {
            "source": str(cfg.pool),
            "input": pool.n_input,
            "trainable": len(pool.ids),
            "skipped": pool.skipped,
            "planted_share": _issue_share(set(pool.ids), pool.issues),
        },
        "curation": {"model": cfg.curate_model, "scoring_seconds": scoring_seconds},
        "compute": {
            "arch": cfg.arch,
            "model_cfg": model_cfg,
            "image_size": image_size,
            "seeds": seeds,
            "samples_seen_per_model": min(seen) if len(seen) == 1 else sorted(seen),
            "equal_compute": len(seen) == 1,
        },
        "benchmarks": {
            "seed": bset.seed,
            "sizes": bset.sizes,
            "render_size": 256,
            "headline": [list(h) for h in HEADLINE],
        },
        "bootstrap": spec.describe("test item, paired across arms; seeds resampled for ci"),
        "arms": arms_out,
        "timings": {
            "pool_seconds": round(t_pool, 1),
            "curation_seconds": round(t_curate, 1),
            "benchmark_render_seconds": round(t_render, 1),
            "train_and_score_seconds": round(t_train, 1),
            "score_seconds": round(t_eval, 1),
            "bootstrap_seconds": round(t_compare, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1),
            # CPU seconds: what the run would take on idle cores, when the machine is shared.
            "main_process_cpu_seconds": round(time.process_time() - c_start, 1),
            "train_cpu_seconds": round(
                sum(r["train_cpu_seconds"] for rs in runs.values() for r in rs), 1
            ),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "train_workers": cfg.workers,
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }
    result["notes"] = _verdicts(arms_out, len(pool.ids))
    atomic_write_bytes(out / RESULTS_JSON, json.dumps(result, indent=2).encode())
    atomic_write_bytes(out / REPORT_MD, ablate_markdown(result).encode())
    return result
