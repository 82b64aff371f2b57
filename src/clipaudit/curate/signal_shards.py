"""The run's signal shards as decide reads them: listed, checked, and read a shard or a few
columns at a time, so no step holds every signal of every sample."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.rundir import RunDir, resume_command
from clipaudit.errors import ClipauditError, DuplicateIdError


def values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy, the way every rule reads it. numpy would turn an integer column
    with nulls into float64 with NaN: 64-bit hashes would lose their low bits and nulls would
    slip past ``is None``. Keep ints and None."""
    if pa.types.is_integer(col.type) and col.null_count:
        return np.array(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def table_signals(table: pa.Table) -> dict[str, np.ndarray]:
    return {name: values(table.column(name)) for name in table.column_names}


class SignalShards:
    """``signals/shard-K.parquet`` of a run, each checked readable before any work starts."""

    def __init__(
        self,
        run: RunDir,
        resume: str | None = None,
        expected: int | None = None,
        partial: bool = False,
    ) -> None:
        """``resume``: the curate command that resumes the run (``rundir.resume_command``).
        ``expected``: the input's shard count (run.json); a shard of it left unscored is
        refused unless ``partial`` (then listed in ``unscored``)."""
        self.run = run
        self.resume = resume
        self.files: list[tuple[int, Path]] = sorted(
            (int(f.stem.split("-")[1]), f) for f in (run.path / "signals").glob("shard-*.parquet")
        )
        if (run.path / "markers").is_dir():
            # A shard is scored when its marker, written last, is there: a curate killed
            # between a shard's signals and its marker left a shard that decide counted as
            # scored (its embeddings missing) and curate scores again.
            self.files = [(k, f) for k, f in self.files if run.marker(k).is_file()]
        if not self.files:
            command = f": run `{resume}`" if resume else "; run curate first"
            raise ClipauditError(f"{str(run.path)!r} has no scored shards{command}.")
        self.rows: dict[int, int] = {}
        self.schemas: dict[int, pa.Schema] = {}
        for k, f in self.files:
            try:
                meta = pq.read_metadata(f)
                self.rows[k] = meta.num_rows
                self.schemas[k] = meta.schema.to_arrow_schema()
            except (OSError, pa.ArrowException) as exc:
                raise self.damaged(k, f, exc) from None
            if "id" not in self.schemas[k].names:
                raise self.damaged(k, f, "it has no id column")
        self._check_complete()
        self.unscored: list[int] = []
        if expected is not None:
            self.unscored = sorted(set(range(expected)) - set(self.rows))
            if self.unscored and not partial:
                raise self.unfinished(expected)

    def unfinished(self, expected: int) -> ClipauditError:
        """Deciding a run whose curate stopped part-way gave a decision table without the
        unscored shards' samples, and said nothing (11 of 60 shards: "adds up")."""
        first = self.unscored[0]
        more = len(self.unscored) - 1
        which = f"shard {first}" + (f" and {more} other{'s' * (more > 1)}" if more else "")
        return ClipauditError(
            f"{str(self.run.path)!r} has {len(self.rows)} of its input's {expected} shards "
            f"scored ({which} not): its curate stopped before it finished. Run "
            f"`{self.resume_command()}` to score the rest (it resumes from the scored shards; "
            "add the --rules and --against it was given, which are not part of the run), or "
            "pass --partial to decide on the scored shards alone."
        )

    @classmethod
    def of_run(cls, run: RunDir, partial: bool = False, reference: bool = False) -> SignalShards:
        """The shards of a run checked against what its run.json says the input holds.
        ``reference``: the run is an --against reference set (said so if unfinished)."""
        record = run.read_json("run.json") if (run.path / "run.json").is_file() else {}
        if not record.get("dataset"):
            return cls(run)
        expected = len(record["dataset"].get("shards") or [])
        try:
            return cls(run, resume_command(record, run.path), expected, partial)
        except ClipauditError as err:
            if not reference:
                raise
            shards = cls(run, resume_command(record, run.path), expected, partial=True)
            if not shards.unscored:
                raise
            # --partial is the decide's option, not the reference's: name the reference.
            raise ClipauditError(
                f"The reference run {str(run.path)!r} (--against) has {len(shards.rows)} of "
                f"its input's {expected} shards scored: finish it with "
                f"`{shards.resume_command()}`, or give its dataset to --against instead."
            ) from err

    @classmethod
    def read_one(cls, run: RunDir, k: int) -> pa.Table:
        """Shard ``k``'s signals alone: a map job reads its own shard without listing and
        checking every other one (that made decide quadratic in the shard count: 2,000
        shards of 5 rows ran past 10 minutes)."""
        f = run.path / "signals" / f"shard-{k:05d}.parquet"
        try:
            return pq.read_table(f)
        except (OSError, pa.ArrowException) as exc:
            bare = cls.__new__(cls)
            bare.run, bare.resume = run, None
            raise bare.damaged(k, f, exc) from None

    def resume_command(self) -> str:
        return self.resume or f"clipaudit curate DATASET --out {self.run.path}"

    def rescore_hint(self, k: int) -> str:
        return (
            f"delete it and {str(self.run.marker(k))!r}, then run "
            f"`{self.resume_command()}` to score that shard again"
        )

    def damaged(self, k: int, f: Path, why: object) -> ClipauditError:
        return ClipauditError(
            f"The signal shard {str(f)!r} is damaged ({why}); {self.rescore_hint(k)}."
        )

    def _check_complete(self) -> None:
        """A shard whose marker says done (or that the input has) but whose file is gone."""
        have = {k for k, _ in self.files}
        expected = {
            int(p.stem.split("-")[1]) for p in (self.run.path / "markers").glob("shard-*.done")
        }
        for k in sorted(expected - have):
            f = self.run.path / "signals" / f"shard-{k:05d}.parquet"
            raise ClipauditError(
                f"The signal shard {str(f)!r} is missing though shard {k} is marked scored; "
                f"{self.rescore_hint(k)}."
            )

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def has(self, name: str) -> bool:
        return any(name in s.names for s in self.schemas.values())

    def read(self, k: int, columns: Sequence[str] | None = None) -> pa.Table:
        f = dict(self.files)[k]
        cols = None if columns is None else [c for c in columns if c in self.schemas[k].names]
        try:
            return pq.read_table(f, columns=cols)
        except (OSError, pa.ArrowException) as exc:
            raise self.damaged(k, f, exc) from None

    def column(self, name: str, dtype: Any = None) -> np.ndarray:
        """One column over every shard (None where a shard lacks it), as numpy."""
        parts = []
        for k, _ in self.files:
            if name in self.schemas[k].names:
                col = self.read(k, [name]).column(name)
                parts.append(values(col) if dtype is None else _as(col, dtype))
            else:
                parts.append(
                    np.full(self.rows[k], None if dtype is None else np.nan, dtype=dtype or object)
                )
        return np.concatenate(parts) if parts else np.zeros(0)

    def check_unique_ids(self) -> None:
        """Each shard checks its own ids when scored; a repeat across shards shows up here."""
        ids = pa.chunked_array(
            [
                self.read(k, ["id"]).column("id").cast(pa.string()).combine_chunks()
                for k, _ in self.files
            ]
        )
        if len(pc.unique(ids)) == len(ids):
            return
        counts = pc.value_counts(ids).to_pylist()
        repeated = sorted(c["values"] for c in counts if c["counts"] > 1)
        raise DuplicateIdError(repeated, f"the input of {str(self.run.path)!r}")

    def __iter__(self) -> Iterator[int]:
        return iter(k for k, _ in self.files)


def _as(col: pa.ChunkedArray, dtype: Any) -> np.ndarray:
    """A numeric column as a float array with NaN for nulls (never object)."""
    return np.asarray(pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(), dtype=dtype)


def floats(col: np.ndarray) -> np.ndarray:
    """float64 with NaN for None, vectorised where the column is already numeric."""
    if col.dtype != object:
        return col.astype(np.float64)
    out = np.full(len(col), np.nan)
    mask = np.array([v is not None for v in col], dtype=bool)
    if mask.any():
        out[mask] = np.array([float(v) for v in col[mask]])
    return out
