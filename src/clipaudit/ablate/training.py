"""One arm, one seed: a fresh model of the ablation config trained on the arm's rows.

Jobs run in ``workers`` processes with one torch thread each: the models are so small that
two threads mostly wait on each other (and spin badly when the cores are shared), and a
fixed thread count keeps every model bit-for-bit reproducible on any machine. The workers
are forked (where the platform can), so they share the pool's pixels and tokens unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipaudit.models.train import TrainConfig, fit, new_model, save_model


def train_arm(
    images: torch.Tensor,
    tokens: torch.Tensor,
    rows: np.ndarray,
    cfg: TrainConfig,
    out_dir: Path,
) -> dict[str, Any]:
    """Train on ``images[rows]`` for ``cfg.steps`` batches, write the model to ``out_dir``.

    The init depends only on ``cfg.seed`` and the batches only on the seed and the number of
    rows, so two arms with the same rows and seed train the very same model.
    """
    model, model_cfg, _ = new_model(cfg)
    lines: list[str] = []
    idx = torch.from_numpy(rows)
    t0, c0 = time.perf_counter(), time.process_time()
    history, seen = fit(model, images[idx], tokens[idx], cfg, log=lines.append)
    seconds = time.perf_counter() - t0
    # CPU seconds tell what the run costs on idle cores when the machine is shared.
    cpu_seconds = time.process_time() - c0
    save_model(model, model_cfg, out_dir)
    record = {
        "config": asdict(cfg),
        "rows": len(rows),
        "samples_seen": seen,
        "epochs": round(seen / len(rows), 2),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "threads": torch.get_num_threads(),
        "final_loss": history[-1]["loss"] if history else None,
        "history": history,
    }
    (out_dir / "train.json").write_text(json.dumps(record, indent=2))
    return record


Job = tuple[np.ndarray, TrainConfig, str]
_SHARED: dict[str, torch.Tensor] = {}


def _init_worker(images: torch.Tensor, tokens: torch.Tensor) -> None:
    import logging

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # open_clip warns on every untrained model it builds
    _SHARED["images"], _SHARED["tokens"] = images, tokens


def _run_job(job: Job) -> dict[str, Any]:
    rows, cfg, out_dir = job
    return train_arm(_SHARED["images"], _SHARED["tokens"], rows, cfg, Path(out_dir))


def train_jobs(
    images: torch.Tensor, tokens: torch.Tensor, jobs: list[Job], workers: int
) -> Iterator[dict[str, Any]]:
    """Train every job, yielding records in job order as they finish."""
    if workers <= 1 or len(jobs) <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for rows, cfg, out_dir in jobs:
                yield train_arm(images, tokens, rows, cfg, Path(out_dir))
        finally:
            torch.set_num_threads(threads)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Fork where there is one: the workers inherit the pixels and never re-import the
    # caller's script (a spawned worker of a script without a __main__ guard would run the
    # whole ablation again). They set one thread before any torch op, so the parent's
    # thread pool is never used across the fork. Elsewhere spawn, with shared memory.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    if method == "spawn":
        from torch import multiprocessing as _torch_mp  # noqa: F401  (shared-memory pickling)

        images.share_memory_()
        tokens.share_memory_()
    # A worker that dies fails the run (BrokenProcessPool) instead of being replaced.
    with ProcessPoolExecutor(
        min(workers, len(jobs)),
        mp_context=mp.get_context(method),
        initializer=_init_worker,
        initargs=(images, tokens),
    ) as ex:
        yield from ex.map(_run_job, jobs)
