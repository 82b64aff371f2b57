"""``clipaudit demo``: the whole curation loop on a world pool whose truths are known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.rundir import RunDir
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
    out = Path(out)
    pool = out / "pool"
    if not (pool / "world.json").is_file():
        log(f"writing a noisy world pool of {n} samples → {pool}")
        write_world(pool, split="pool", n=n, seed=seed, format="webdataset", shard_size=500)
    log("curating with bundled:world-clip")
    stats = curate(
        CurateConfig(
            dataset=str(pool / "data"),
            out=str(out / "run"),
            rules=rules,
            model="bundled:world-clip",
        )
    )
    pack = load_pack(rules)
    truth = score_run(
        out / "run",
        pool / "labels.jsonl",
        dedup=pack.dedup,
    )
    stats["truth_scores"] = truth
    saved = {k: v for k, v in stats.items() if k not in ("timings", "resumed")}
    RunDir(out / "run").write_json("stats.json", saved)
    return {"stats": stats, "truth": truth}
