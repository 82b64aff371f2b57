"""Scoring engines: who runs the stages over the shards still to score, by name.

``curate`` prepares the run (fingerprint, run.json, stage provenance), hands the shards
still to do to an engine, then decides on the driver. An engine only scores: it writes each
shard's signals, arrays and marker through the run directory, so every engine leaves the
same files and ``decide`` cannot tell them apart. ``local`` lives beside the pipeline;
``ray`` is imported only when asked for, so Ray stays an optional extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipaudit.errors import ClipauditError

if TYPE_CHECKING:
    from clipaudit.curate.pipeline import CurateConfig
    from clipaudit.curate.rundir import RunDir
    from clipaudit.curate.stage import Stage, StageContext
    from clipaudit.data.formats import Dataset


@dataclass
class EngineJob:
    """Everything an engine needs: the config, the opened dataset, the shards to score (by
    index into ``shards``), the driver's set-up stages and context, and the run folder."""

    cfg: CurateConfig
    ds: Dataset
    shards: list[str]
    todo: list[int]
    stages: list[Stage]
    ctx: StageContext
    run: RunDir
    progress: Callable[[int, int, int], None] | None
    # Seconds per step (decode, each stage), added to by the engine where it can measure.
    timings: dict[str, float]


@dataclass(frozen=True)
class Engine:
    name: str
    score: Callable[[EngineJob], int]  # returns the number of samples scored
    # Raises a one-sentence ClipauditError when the engine cannot run here (missing extra),
    # called before the run folder is touched.
    check: Callable[[], None]


ENGINES: dict[str, Engine] = {}


def _ok() -> None:
    return None


def register_engine(
    name: str, check: Callable[[], None] = _ok
) -> Callable[[Callable[[EngineJob], int]], Callable[[EngineJob], int]]:
    def deco(fn: Callable[[EngineJob], int]) -> Callable[[EngineJob], int]:
        ENGINES[name] = Engine(name, fn, check)
        return fn

    return deco


def get_engine(name: str) -> Engine:
    """The engine called ``name``, checked to be runnable here."""
    # The local engine registers itself when the pipeline is imported.
    from clipaudit.curate import pipeline  # noqa: F401

    engine = ENGINES.get(name)
    if engine is None:
        choices = ", ".join(sorted(ENGINES))
        raise ClipauditError(f"Unknown engine {name!r}; the engines are: {choices}.")
    engine.check()
    return engine


def _ray_installed() -> None:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ClipauditError(
            "--engine ray needs Ray, which is not installed; run pip install 'clipaudit[ray]'."
        ) from None


@register_engine("ray", check=_ray_installed)
def _score_ray(job: EngineJob) -> int:
    from clipaudit.curate.engine_ray import score_on_ray

    return score_on_ray(job)


def engine_names() -> list[str]:
    from clipaudit.curate import pipeline  # noqa: F401

    return list(ENGINES)
