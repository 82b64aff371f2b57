"""``clipaudit demo``: the whole curation loop on a world pool whose truths are known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.demo.loop import curate_and_score, world_pool
from clipaudit.demo.truth import score_run
from clipaudit.rules.schema import load_pack
from clipaudit.world import write_world


def run_demo(
    out: str | Path,
    n: int = 2000,
    rules: str = "default",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The image demo: a noisy world pool of ``n`` samples, curated and scored (``out/``)."""
    out = Path(out)

    def write(pool: Path) -> None:
        write_world(pool, split="pool", n=n, seed=seed, format="webdataset", shard_size=500)

    pool = world_pool(out, write, f"a noisy world pool of {n} samples", log, {"n": n, "seed": seed})
    log("curating with bundled:world-clip")
    dedup = load_pack(rules).dedup
    return curate_and_score(out, pool, rules, lambda run, labels: score_run(run, labels, dedup))
