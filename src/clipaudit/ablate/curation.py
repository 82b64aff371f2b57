"""Curating the pool with each pack: score once per distinct scoring setup, decide per pack.

Scoring (the model, hashes, detectors) is the expensive part; deciding from stored signals
takes seconds. A few stages read their settings from the pack while scoring (the sections in
``SCORING_SECTIONS``), so packs that agree on those sections share one scored run and packs
that differ get their own: every arm's decisions are exactly what ``clipaudit curate`` with
that pack would write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipaudit.curate.decide import decide_signals, load_signals
from clipaudit.curate.decide.semdedup import load_image_embeddings
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.rundir import RunDir, table_bytes
from clipaudit.data.formats import atomic_write_bytes
from clipaudit.rules.schema import Pack, load_pack

# Pack sections that curate's stages read at scoring time (stages/nsfw.py, stages/optout.py and
# stages/watermark.py load them in setup); tests/test_ablate.py checks that this stays true.
SCORING_SECTIONS = ("nsfw", "optout", "watermark")
KEPT = ("keep", "flag")  # a flagged sample is kept for training, as in the kept dataset


@dataclass
class CuratedArm:
    name: str
    rules: str
    kept_ids: set[str]
    stats: dict[str, Any]
    scored_run: str  # the curate run folder its signals came from, relative to the out dir


def scoring_key(pack: Pack) -> str:
    dump = pack.model_dump(mode="json")
    blob = json.dumps({s: dump[s] for s in SCORING_SECTIONS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def curate_arms(
    dataset: str,
    fmt: str | None,
    arms: list[tuple[str, str]],
    out: Path,
    model: str,
    log: Callable[[str], None] = print,
) -> tuple[list[CuratedArm], dict[str, float]]:
    """Curate ``dataset`` for each ``(arm name, pack ref)``; returns the arms and the seconds
    spent scoring per scored run. Writes ``curate/<run>/`` and ``arms/<name>/decisions.parquet``."""
    import time

    packs = {name: load_pack(ref) for name, ref in arms}  # a bad pack fails before any work
    runs: dict[str, str] = {}  # scoring key → run folder name
    seconds: dict[str, float] = {}
    out_arms: list[CuratedArm] = []
    for name, ref in arms:
        key = scoring_key(packs[name])
        if key not in runs:
            run_name = f"scored-{len(runs) + 1}"
            log(f"curating with {ref!r} (scoring {run_name}, model {model})")
            t0 = time.perf_counter()
            curate(
                CurateConfig(
                    dataset=dataset,
                    out=str(out / "curate" / run_name),
                    rules=ref,
                    model=model,
                    format=fmt,
                )
            )
            seconds[run_name] = round(time.perf_counter() - t0, 1)
            runs[key] = run_name
        run = RunDir(out / "curate" / runs[key])
        record = run.read_json("run.json")
        model_spec = record.get("settings", {}).get("model")
        sig = load_signals(run)
        pack = packs[name]
        emb = (
            load_image_embeddings(run.path, sig["shard"])
            if pack.dedup.semantic_eps is not None
            else None
        )
        table, stats = decide_signals(sig, pack, model_spec, emb)
        arm_dir = out / "arms" / name
        arm_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(arm_dir / "decisions.parquet", table_bytes(table))
        decisions = np.asarray(table.column("decision").to_pylist(), dtype=object)
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        kept = {str(i) for i in ids[np.isin(decisions, KEPT)]}
        summary = {
            k: stats[k]
            for k in ("input", "kept", "flagged", "dropped", "errored", "by_reason_dropping")
        }
        summary["pack"] = stats["pack"]
        summary["thresholds"] = stats["thresholds"]
        atomic_write_bytes(arm_dir / "curation.json", json.dumps(summary, indent=2).encode())
        log(f"  {name}: kept {len(kept)} of {stats['input']}")
        out_arms.append(CuratedArm(name, ref, kept, summary, f"curate/{runs[key]}"))
    return out_arms, seconds
