"""Scoring engines: who runs the stages over the shards still to score, by name.

``scoring.score`` prepares the run (fingerprint, run.json, stage provenance) and hands the
shards still to do to an engine as an ``EngineJob``; ``pipeline.curate`` then decides on the
driver. An engine only scores: it writes each shard's signals, arrays and marker through the
run directory, so every engine leaves the same files and ``decide`` cannot tell them apart.
Each engine is a module of this package that registers itself when imported; an engine's
module is imported only when that engine is asked for, so Ray stays an optional extra. No
engine imports the pipeline: everything it needs comes in the job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clipaudit.errors import ClipauditError

if TYPE_CHECKING:
    from clipaudit.curate.config import CurateConfig
    from clipaudit.curate.rundir import RunDir
    from clipaudit.curate.stages import Stage, StageContext
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


# Runs ``fn`` over ``jobs`` (results in job order), calling ``tick(done)`` as jobs finish.
Mapper = Callable[[Callable[[Any], Any], list[Any], Callable[[int], None]], list[Any]]


def _ok() -> None:
    return None


def _no_mapper(cfg: CurateConfig) -> Mapper | None:
    return None


@dataclass(frozen=True)
class Engine:
    name: str
    score: Callable[[EngineJob], int]  # returns the number of samples scored
    # Raises a one-sentence ClipauditError when the engine cannot run here (missing extra),
    # called before the run folder is touched.
    check: Callable[[], None] = _ok
    # How decide's map and write steps run after this engine scored (None: in this process).
    decide_mapper: Callable[[CurateConfig], Mapper | None] = _no_mapper


ENGINES: dict[str, Engine] = {}
# Engine name → the module that registers it.
ENGINE_MODULES = {"local": f"{__name__}.local", "ray": f"{__name__}.ray"}


def register_engine(
    name: str,
    check: Callable[[], None] = _ok,
    decide_mapper: Callable[[CurateConfig], Mapper | None] = _no_mapper,
) -> Callable[[Callable[[EngineJob], int]], Callable[[EngineJob], int]]:
    def deco(fn: Callable[[EngineJob], int]) -> Callable[[EngineJob], int]:
        ENGINES[name] = Engine(name, fn, check, decide_mapper)
        return fn

    return deco


def get_engine(name: str) -> Engine:
    """The engine called ``name``, checked to be runnable here."""
    if name in ENGINE_MODULES and name not in ENGINES:
        importlib.import_module(ENGINE_MODULES[name])
    engine = ENGINES.get(name)
    if engine is None:
        choices = ", ".join(sorted(ENGINE_MODULES))
        raise ClipauditError(f"Unknown engine {name!r}; the engines are: {choices}.")
    engine.check()
    return engine


def engine_names() -> list[str]:
    return list(ENGINE_MODULES)
