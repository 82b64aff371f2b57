"""``curate``: score every sample shard by shard (resumable), then decide with a rules pack.

Scoring (``scoring.score``) checks and records the run and hands the shards still to do to
an engine (``engines/``: local or ray); deciding (``decide/``) reads the stored signals. This
module only composes the two, so neither the engines nor decide import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.curate.config import DEFAULT_STAGES, CurateConfig
from clipaudit.curate.decide.run import decide_run
from clipaudit.curate.rundir import release_run_lock
from clipaudit.curate.scoring import Scored, input_fingerprint, score

__all__ = ["DEFAULT_STAGES", "CurateConfig", "curate", "input_fingerprint"]


def curate(
    cfg: CurateConfig,
    progress: Callable[[int, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    decide_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Score (or resume scoring) ``cfg.dataset`` into ``cfg.out``, then decide; return stats."""
    done = score(cfg, progress, warn)  # takes the run folder's lock
    try:
        return _decide(cfg, done, decide_progress)
    finally:
        release_run_lock(done.run.path)


def _decide(
    cfg: CurateConfig, done: Scored, decide_progress: Callable[[str, int, int], None] | None
) -> dict[str, Any]:
    if not cfg.decide:
        return {"scored": done.scored, "resumed": done.resumed, "shards": done.shards}
    t_decide = time.perf_counter()
    stats = decide_run(
        done.run.path,
        cfg.rules,
        dataset=done.ds,
        gates=cfg.gates,
        mapper=done.engine.decide_mapper(cfg),  # ray: decide's map and write steps as tasks
        progress=decide_progress,
        against_paths=cfg.against,
        against_cache=Path(cfg.against_cache) if cfg.against_cache else None,
    )
    # Returned, never written: the run's files must not depend on how fast the machine was.
    stats["resumed"] = done.resumed
    stats["timings"] = {
        **{k: round(v, 3) for k, v in done.timings.items()},
        "scoring_wall": round(done.wall, 3),
        "decide_wall": round(time.perf_counter() - t_decide, 3),
        "scored_samples": done.scored,
    }
    return stats
