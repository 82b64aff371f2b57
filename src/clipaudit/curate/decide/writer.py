"""The kept dataset, written from the decided shards.

Output shards hold ``KEPT_SHARD_SIZE`` kept samples each, in input order, so their
boundaries do not follow the input's. Where the output format's shards are self-contained
files (webdataset, parquet: ``DatasetFormat.shard_file``), each input shard's job writes the
output shards that start inside it — reading on into the next input shards for the last one —
in parallel processes or Ray tasks, byte-identical to the serial write. Other formats
(image folders with one metadata file, Hugging Face datasets) are written serially. Either
way one input shard's kept ids are in memory at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clipaudit.curate.rundir import recorded_source
from clipaudit.data.formats import Dataset, ReadOptions, get_format, open_dataset, write_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError

KEPT_SHARD_SIZE = 1000


def kept_ids(decisions: Path) -> set[str]:
    t = pq.read_table(decisions, columns=["id", "decision"])
    mask = pc.is_in(t.column("decision"), pa.array(["keep", "flag"]))
    return set(t.column("id").filter(mask).to_pylist())


def kept_count(decisions: Path) -> int:
    t = pq.read_table(decisions, columns=["decision"])
    return int(pc.sum(pc.is_in(t.column("decision"), pa.array(["keep", "flag"]))).as_py() or 0)


def _kept_samples(ds: Dataset, parts: dict[int, Path], start: int) -> Iterator[Sample]:
    """Kept samples of input shards ``start``, ``start + 1``, … in order. A kept sample the
    input no longer holds where the run found it is an error, not a shorter kept dataset."""
    shards = ds.shards()
    beyond = sorted(k for k in parts if k >= len(shards))
    if beyond:
        raise _changed(ds, f"has {len(shards)} shards where the run scored {max(beyond) + 1}")
    for k in range(start, len(shards)):
        if k in parts:
            yield from _every(ds, shards[k], kept_ids(parts[k]), "the run kept")


def _every(ds: Dataset, shard: str, wanted: set[str], what: str) -> Iterator[Sample]:
    """The samples of ``shard`` whose ids are ``wanted``, in order; all of them or an error."""
    found = 0
    for s in ds.read_shard(shard):
        if s.id in wanted:
            found += 1
            yield s
    if found != len(wanted):
        raise _changed(ds, f"shard {shard!r} holds {found} of the {len(wanted)} samples {what}")


def _changed(ds: Dataset, what: str) -> ClipauditError:
    return ClipauditError(
        f"The dataset {ds.describe()!r} {what}: it changed since the run was scored (or was "
        "opened otherwise); curate it again, or decide with --no-kept."
    )


@contextmanager
def _as_stored(ds: Dataset, fmt: str) -> Iterator[None]:
    """Within: ``ds`` hands each row as stored to the writer where ``fmt`` is its own format,
    so a parquet or hf kept dataset keeps the input's columns and types."""
    before = ds.keep_rows
    ds.keep_rows = fmt == ds.format
    try:
        yield
    finally:
        ds.keep_rows = before


def write_serial(ds: Dataset, parts: dict[int, Path], out: Path, fmt: str) -> None:
    with _as_stored(ds, fmt):
        write_dataset(_kept_samples(ds, parts, 0), out, fmt, shard_size=_size())


def routed_ids(decisions: Path, route: str) -> set[str]:
    """Kept (or flagged) ids whose first route is ``route``."""
    t = pq.read_table(decisions, columns=["id", "decision", "route"])
    mask = pc.and_(
        pc.is_in(t.column("decision"), pa.array(["keep", "flag"])),
        pc.fill_null(pc.equal(t.column("route"), route), False),
    )
    return set(t.column("id").filter(mask).to_pylist())


def write_route(ds: Dataset, parts: dict[int, Path], out: Path, fmt: str, route: str) -> int:
    """The kept samples routed to ``route``, in input order; returns how many. One pass over
    the input a route: routes are few, and each pass reads only the shards that hold one."""
    shards = ds.shards()
    written = 0

    def samples() -> Iterator[Sample]:
        nonlocal written
        for k in sorted(parts):
            want = routed_ids(parts[k], route)
            if not want:
                continue
            if k >= len(shards):
                raise _changed(ds, f"has {len(shards)} shards where the run scored {k + 1}")
            yield from _every(ds, shards[k], want, f"routed to {route!r}")
            written += len(want)

    with _as_stored(ds, fmt):
        write_dataset(samples(), out, fmt, shard_size=_size())
    return written


def _size() -> int:
    return KEPT_SHARD_SIZE  # read at call time: tests shrink it to get many output shards


@dataclass(frozen=True)
class KeptJob:
    """Write output shards ``first``..``last`` (inclusive), which start inside input shard
    ``k``; the first of them starts at ``skip`` kept samples into it."""

    source: str
    in_format: str
    read: dict[str, Any]
    parts: dict[int, str]
    k: int
    skip: int
    first: int
    last: int
    out: str
    fmt: str
    shard_size: int


def write_part(job: KeptJob) -> int:
    ds = open_dataset(job.source, format=job.in_format, options=ReadOptions(**job.read))
    ds.keep_rows = job.fmt == ds.format
    writer = get_format(job.fmt)
    assert writer.shard_file is not None
    parts = {k: Path(p) for k, p in job.parts.items()}
    samples = _kept_samples(ds, parts, job.k)
    for _ in range(job.skip):
        next(samples)
    written = 0
    for j in range(job.first, job.last + 1):
        batch = [s for _, s in zip(range(job.shard_size), samples, strict=False)]
        if not batch:
            break
        tmp = Path(tempfile.mkdtemp(prefix=f".part-{j}-", dir=job.out))
        try:
            writer.write(batch, tmp, len(batch))
            (tmp / writer.shard_file.format(n=0)).replace(
                Path(job.out) / writer.shard_file.format(n=j)
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        written += len(batch)
    return written


def plan(counts: dict[int, int], size: int) -> list[tuple[int, int, int, int]]:
    """(input shard, kept samples to skip in it, first, last output shard) per job: output
    shard j goes to the input shard holding its first sample."""
    ks = sorted(counts)
    offsets = np.cumsum([0, *(counts[k] for k in ks)])
    total = int(offsets[-1])
    n_out = -(-total // size)
    jobs: dict[int, list[int]] = {}
    for j in range(n_out):
        at = int(np.searchsorted(offsets, j * size, side="right")) - 1
        jobs.setdefault(at, []).append(j)
    out = []
    for at, js in sorted(jobs.items()):
        k = ks[at]
        out.append((k, js[0] * size - int(offsets[at]), js[0], js[-1]))
    return out


def write_parallel(
    record: dict[str, Any],
    parts: dict[int, Path],
    out: Path,
    fmt: str,
    mapper: Callable[..., list[Any]],
    tick: Callable[[int], None],
) -> None:
    counts = {k: kept_count(p) for k, p in parts.items()}
    out.mkdir(parents=True, exist_ok=True)
    ds_rec = record["dataset"]
    read = dict(record.get("settings", {}).get("read") or {})
    jobs = [
        KeptJob(
            source=recorded_source(record),
            in_format=str(ds_rec["format"]),
            read=read,
            parts={k: str(p) for k, p in parts.items()},
            k=k,
            skip=skip,
            first=first,
            last=last,
            out=str(out),
            fmt=fmt,
            shard_size=_size(),
        )
        for k, skip, first, last in plan(counts, _size())
    ]
    mapper(write_part, jobs, tick)
