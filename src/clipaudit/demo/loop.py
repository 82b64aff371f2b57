"""The loop both demos share: curate a world pool with the bundled model, score the run
against the pool's planted truths, and keep the scores in the run's ``stats.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.curate.config import DEFAULT_STAGES
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError

# (run folder, the pool's labels.jsonl) → truth scores
Scorer = Callable[[Path, Path], dict[str, Any]]


def world_pool(
    out: Path,
    write: Callable[[Path], None],
    what: str,
    log: Callable[[str], None],
    settings: dict[str, Any] | None = None,
) -> Path:
    """``out/pool``, written by ``write`` unless an earlier demo left it there with the same
    ``settings`` (``pool/demo.json``); one with other settings is an error, not reused: a
    second `demo --n 20` over a `--n 10` folder printed the 10-sample pool's figures."""
    pool = out / "pool"
    record = pool / "demo.json"
    if not (pool / "world.json").is_file():
        log(f"writing {what} → {pool}")
        write(pool)
        if settings is not None:
            record.write_text(json.dumps(settings, sort_keys=True))
        return pool
    if settings is not None and record.is_file():
        old = json.loads(record.read_text())
        if old != json.loads(json.dumps(settings)):
            raise ClipauditError(
                f"{str(out)!r} holds a demo made with {old}, not {settings}; choose a new "
                "--out or delete that folder."
            )
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
