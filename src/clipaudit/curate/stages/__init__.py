"""The Stage contract: one small class per signal, registered by name.

One module per signal family lives beside this file (``alignment``, ``hashes``, ``nsfw``,
``optout``, ``quality``, ``rights``, ``video``, ``visible``, ``watermark``); each registers its
stage here and, through ``reasons``, the rules and stats decide applies to its columns.

A stage declares the columns it writes, loads heavy things in ``setup`` (so it is cheap to
construct and to pickle), and scores a whole batch at once. It never drops a sample: a
sample it cannot score gets nulls in its columns, and the reason stays in the decode error.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError

# Per-frame image embeddings of video samples (None for images), left in ``Batch.prepared`` by
# the alignment stage for the phrase stages: a mark on a few frames is diluted in the mean.
FRAME_EMB = "alignment.frame_emb"


@dataclass
class Batch:
    """Samples with their images decoded once, shared by every stage of the run."""

    samples: list[Sample]
    decoded: list[Decoded]
    # Extra per-batch arrays a stage leaves for the writer (e.g. embeddings).
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # stage name → one value per sample from that stage's ``prepare`` (run on worker threads).
    prepared: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class StageContext:
    """What every stage of a run shares: the model spec, the device, the batch size and
    run options (``rules``: the pack reference; others set by commands, e.g. a cache dir)."""

    model_spec: str | None = None
    device: str | None = None
    batch_size: int = 64
    options: dict[str, Any] = field(default_factory=dict)
    _clip: Any = field(default=None, repr=False)

    def clip(self) -> Any:
        """The run's CLIP model (a ``LoadedClip``), loaded once and shared by every stage."""
        if self._clip is None:
            from clipaudit.models import load_clip

            self._clip = load_clip(self.model_spec or "bundled:world-clip", device=self.device)
        return self._clip


class Stage(ABC):
    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    needs_model: ClassVar[bool] = False

    def setup(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """Load what the stage needs (models, tables); called once per worker."""

    def prepare(self, sample: Sample, decoded: Decoded) -> Any:
        """Per-sample work that can run on a worker thread beside the model (hashing,
        resizing); its result reaches ``process`` in ``batch.prepared[self.name]``."""
        return None

    def prepare_batch(self, samples: list[Sample], decoded: list[Decoded]) -> list[Any]:
        """``prepare`` for several samples at once, one result per sample; a stage overrides
        it where whole-batch work is cheaper (vectorised hashes, one stacked tensor)."""
        return [self.prepare(s, d) for s, d in zip(samples, decoded, strict=True)]

    def prepared_for(self, batch: Batch) -> list[Any]:
        """This stage's ``prepare`` results for the batch; computed here, on this thread, when
        the pipeline did not prepare them (a caller that builds its own Batch)."""
        return batch.prepared.get(self.name) or self.prepare_batch(batch.samples, batch.decoded)

    def begin_shard(self) -> None:  # noqa: B027 - optional hook
        """Reset per-shard state (caches); called before each shard is scored."""

    @abstractmethod
    def process(self, batch: Batch) -> dict[str, list[Any]]:
        """Return one list per declared column, one value per sample of the batch."""

    def provenance(self) -> dict[str, Any]:
        return {}


# Stage modules that register decide's rules and stats; decide (and each of its map workers)
# imports only these, so it starts without torch, which the scoring-only modules load.
RULE_MODULES = ("hashes", "nsfw", "optout", "quality", "rights", "video", "visible", "watermark")
SCORING_ONLY_MODULES = ("alignment",)

STAGES: dict[str, type[Stage]] = {}
S = TypeVar("S", bound=type[Stage])


def register_stage(name: str) -> Callable[[S], S]:
    def deco(cls: S) -> S:
        cls.name = name
        STAGES[name] = cls
        return cls

    return deco


def load_stage_modules(scoring: bool = True) -> None:
    """Import the stage modules so each registers its stage, rules and stats by name; with
    ``scoring`` False, only the modules decide needs."""
    for name in RULE_MODULES + (SCORING_ONLY_MODULES if scoring else ()):
        importlib.import_module(f"{__name__}.{name}")


def plan_stages(names: list[str]) -> list[str]:
    """The stages a run scores, in the default stages' order: each named once, and
    ``quality`` always. It alone records the reader's and decoder's reason code (``error``)
    and the caption counts the input gate reads: without it a corrupt file was decided
    ``keep`` and written to ``kept/``, and the gate read every caption as missing."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ClipauditError(f"--stages lists {twice[0]!r} twice; name each stage once.")
    names = names if "quality" in names else ["quality", *names]
    # One order, whatever order they were typed in: `hashes,quality` and `quality,hashes`
    # were two different runs (a refused resume) for the same signals. The default order
    # puts the model stages first, whose embeddings the phrase scores after them reuse.
    from clipaudit.curate.config import DEFAULT_STAGES

    rank = {n: i for i, n in enumerate(DEFAULT_STAGES)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def make_stages(names: list[str]) -> list[Stage]:
    load_stage_modules()
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ClipauditError(
            f"Unknown stage {unknown[0]!r}; the stages are: {', '.join(sorted(STAGES))}."
        )
    return [STAGES[n]() for n in names]
