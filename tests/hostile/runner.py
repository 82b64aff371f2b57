"""Run hostile cases through the real ``curate`` and sort each sample's fate into one of:

``ok``           decoded and decided by the rules like any other sample;
``reason``       ended with the reason code that names its problem (an ``error`` decision or a
                 rights/provenance code);
``clear_error``  the run stopped with one ``ClipauditError`` sentence (expected for cases such
                 as duplicate ids, where one bad row makes the whole input ambiguous);
``crash``        any other exception (a bug);
``hang``         the run exceeded its time limit;
``lost``         the run finished but the sample has no decision, or the kept dataset disagrees.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clipaudit.errors import ClipauditError

CATEGORIES = ("ok", "reason", "clear_error", "crash", "hang", "lost")
# Model-free stages that read every byte hostile inputs can carry; ``alignment`` adds the
# model's own resize (where absurd aspect ratios used to cost gigabytes).
FAST_STAGES = ["quality", "hashes", "rights", "c2pa"]
FULL_STAGES = ["quality", "hashes", "alignment", "rights", "c2pa", "watermark", "nsfw"]
TEST_MODEL = "random:clipaudit-tiny"


class Hang(Exception):
    """Raised by the alarm when a case runs past its limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds:g}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """How one case ended: a category plus what it ended with (a reason code, a message)."""

    category: str
    detail: str = ""
    seconds: float = 0.0

    def matches(self, expect: frozenset[str]) -> bool:
        """``expect`` holds ``ok``, reason codes, or ``clear_error``."""
        if self.category == "ok":
            return "ok" in expect
        if self.category == "reason":
            return self.detail in expect
        if self.category == "clear_error":
            return "clear_error" in expect
        return False


@dataclass
class RunResult:
    """A whole curate run: either an error category for the run or one outcome per id."""

    error: Outcome | None
    per_id: dict[str, Outcome] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def call_guarded(fn: Callable[[], Any], limit_s: float) -> tuple[Any, Outcome | None, float]:
    """Run ``fn`` under a time limit; (result, None) or (None, the failure as an Outcome)."""
    t0 = time.perf_counter()
    try:
        with time_limit(limit_s):
            result = fn()
    except Hang as exc:
        return None, Outcome("hang", str(exc)), time.perf_counter() - t0
    except ClipauditError as exc:
        return None, Outcome("clear_error", str(exc)), time.perf_counter() - t0
    except Exception as exc:  # a bug: keep where it happened for the report
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        return None, Outcome("crash", f"{type(exc).__name__} at {where}: {exc}"[:300]), 0.0
    return result, None, time.perf_counter() - t0


def curate_and_account(
    dataset: Path,
    out: Path,
    expected_ids: list[str] | None,
    stages: list[str],
    fmt: str | None = None,
    rules: str = "default",
    limit_s: float = 300.0,
    reason_codes: Callable[[dict[str, Any]], str | None] | None = None,
) -> RunResult:
    """Curate ``dataset`` and sort every expected id into a category."""
    from clipaudit.curate.pipeline import CurateConfig, curate

    cfg = CurateConfig(
        dataset=str(dataset),
        out=str(out),
        rules=rules,
        model=TEST_MODEL,
        format=fmt,
        stages=list(stages),
        gates=False,
        batch_size=16,
    )
    stats, failure, seconds = call_guarded(lambda: curate(cfg), limit_s)
    if failure is not None:
        return RunResult(failure, seconds=seconds)
    rows = {r["id"]: r for r in pq.read_table(out / "decisions.parquet").to_pylist()}
    kept_ids = [r["id"] for r in rows.values() if r["decision"] in ("keep", "flag")]
    kept_read = read_ids(out / "kept", cfg.out_format or _format_of(out)) if kept_ids else []
    problems = []
    if not stats.get("adds_up", False):
        problems.append("stats do not add up")
    if sorted(kept_read) != sorted(kept_ids):
        problems.append("kept dataset differs from the keep/flag decisions")
    per_id: dict[str, Outcome] = {}
    for sample_id in expected_ids if expected_ids is not None else list(rows):
        row = rows.get(sample_id)
        if row is None:
            per_id[sample_id] = Outcome("lost", "no decision row")
            continue
        if problems:
            per_id[sample_id] = Outcome("lost", "; ".join(problems))
            continue
        code = reason_codes(row) if reason_codes else None
        if row["decision"] == "error":
            per_id[sample_id] = Outcome("reason", (row["reasons"] or ["?"])[0])
        elif code:
            per_id[sample_id] = Outcome("reason", code)
        else:
            per_id[sample_id] = Outcome("ok", row["decision"])
    return RunResult(None, per_id, rows, seconds)


def _format_of(run: Path) -> str:
    import json

    return str(json.loads((run / "run.json").read_text())["out_format"])


def read_ids(path: Path, fmt: str) -> list[str]:
    from clipaudit.data import open_dataset

    ds = open_dataset(path, format=fmt)
    return [s.id for shard in ds.shards() for s in ds.read_shard(shard)]


@dataclass
class ClassResult:
    """One row of the reliability table."""

    name: str
    kind: str  # input | fault | configuration
    cases: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: str = ""

    def add(self, case: str, outcome: Outcome, expect: frozenset[str] | None) -> None:
        self.cases += 1
        self.counts[outcome.category] += 1
        if outcome.category in ("crash", "hang", "lost") or (
            expect is not None and not outcome.matches(expect)
        ):
            got = f"{outcome.category}:{outcome.detail}" if outcome.detail else outcome.category
            self.unexpected.append(f"{case} → {got[:240]}")

    @property
    def failed(self) -> int:
        return sum(self.counts[c] for c in ("crash", "hang", "lost"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "kind": self.kind,
            "cases": self.cases,
            "outcomes": {c: self.counts.get(c, 0) for c in CATEGORIES},
            "as_expected": self.cases - len(self.unexpected),
            "unexpected": self.unexpected,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="clipaudit-hostile-")
