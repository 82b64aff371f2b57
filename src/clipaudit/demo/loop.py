"""The loop both demos share: curate a world pool with the bundled model, score the run
against the pool's planted truths, and keep the scores in the run's ``stats.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.curate.config import DEFAULT_STAGES
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.rundir import RunDir

# (run folder, the pool's labels.jsonl) → truth scores
Scorer = Callable[[Path, Path], dict[str, Any]]


def world_pool(
    out: Path, write: Callable[[Path], None], what: str, log: Callable[[str], None]
) -> Path:
    """``out/pool``, written by ``write`` unless an earlier demo left it there."""
    pool = out / "pool"
    if not (pool / "world.json").is_file():
        log(f"writing {what} → {pool}")
        write(pool)
    return pool


def curate_and_score(
    out: Path, pool: Path, rules: str, score: Scorer, stages: list[str] | None = None
) -> dict[str, Any]:
    """Curate ``pool/data`` into ``out/run`` and score it; returns the stats and truth."""
    stats = curate(
        CurateConfig(
            dataset=str(pool / "data"),
            out=str(out / "run"),
            rules=rules,
            model="bundled:world-clip",
            stages=list(stages or DEFAULT_STAGES),
        )
    )
    truth = score(out / "run", pool / "labels.jsonl")
    stats["truth_scores"] = truth
    # Timings depend on the machine and the run's files must not.
    saved = {k: v for k, v in stats.items() if k not in ("timings", "resumed")}
    RunDir(out / "run").write_json("stats.json", saved)
    return {"stats": stats, "truth": truth}
