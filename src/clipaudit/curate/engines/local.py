"""The local engine: shard after shard in this process, memory bounded by a shard.

Within a shard the work is split so both kinds of core time overlap: pool threads read the
shard in order, decode each image once and run every stage's batch preparation (vectorised
hashes, one stacked model input) a few batches ahead, while this thread runs the model and
the stages' scoring. A batch's bytes in, and so every signal, do not depend on the thread
count or the look-ahead (tests/test_throughput_pipeline.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from clipaudit.curate.engines import EngineJob, register_engine
from clipaudit.curate.rundir import RunDir
from clipaudit.curate.stages import Batch
from clipaudit.data.decode import decode_sample, held_pixels
from clipaudit.data.formats import Dataset, batched
from clipaudit.data.sample import Sample
from clipaudit.data.video import DEFAULT_POLICY, SamplingPolicy
from clipaudit.errors import DuplicateIdError

# A decoded, prepared batch and the pool-thread seconds per step that made it.
PreparedBatch = tuple[Batch, dict[str, float]]


def _signal_table(ids: list[str], rows: list[int], cols: dict[str, list[Any]]) -> pa.Table:
    data: dict[str, Any] = {"id": pa.array(ids, pa.string()), "row": pa.array(rows, pa.int64())}
    for name, values in cols.items():
        data[name] = pa.array(values)
    return pa.table(data)


def prepare_batch(
    samples: list[Sample], stages: list[Any], policy: SamplingPolicy = DEFAULT_POLICY
) -> PreparedBatch:
    """Decode each image of the batch once (a video's frames by ``policy``) and run every
    stage's batch preparation on it; runs on a pool thread. Returns the batch and the seconds
    spent per step."""
    c0, t0 = time.thread_time(), time.perf_counter()
    decoded = [decode_sample(s, policy) for s in samples]
    seconds = {"decode": time.perf_counter() - t0}
    prepared: dict[str, list[Any]] = {}
    for stage in stages:
        t1 = time.perf_counter()
        prepared[stage.name] = stage.prepare_batch(samples, decoded)
        seconds[stage.name] = time.perf_counter() - t1
    seconds["cpu"] = time.thread_time() - c0
    return Batch(samples, decoded, prepared=prepared), seconds


class _OrderedReader:
    """Hands a shard's batches to pool threads strictly in order: the job holding ticket n
    reads the n-th batch (a later ticket waits its turn). Reading the shard thus leaves the
    model's thread without reordering anything; the pool runs jobs first in, first out, so
    the ticket whose turn it is has always started."""

    def __init__(self, batches: Iterator[list[Sample]]) -> None:
        self._batches = batches
        self._turn = 0
        self._done = False
        self._cond = threading.Condition()

    def read(self, ticket: int) -> list[Sample] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._turn == ticket)
            try:
                samples = None if self._done else next(self._batches, None)
                self._done = samples is None
                return samples
            except BaseException:
                self._done = True  # later tickets get None; this one raises in order
                raise
            finally:
                self._turn += 1
                self._cond.notify_all()


def _read_and_prepare(
    reader: _OrderedReader, ticket: int, stages: list[Any], policy: SamplingPolicy
) -> PreparedBatch | None:
    samples = reader.read(ticket)
    return None if samples is None else prepare_batch(samples, stages, policy)


def _prepared_batches(
    batches: Iterator[list[Sample]],
    stages: list[Any],
    pool: ThreadPoolExecutor,
    depth: int,
    policy: SamplingPolicy = DEFAULT_POLICY,
) -> Iterator[PreparedBatch]:
    """The shard's batches, read, decoded and prepared on the pool, in order; ``depth``
    batches are in flight while the caller scores one (memory: depth + 1 batches)."""
    reader = _OrderedReader(batches)
    pending: deque[Future[PreparedBatch | None]] = deque(
        pool.submit(_read_and_prepare, reader, t, stages, policy) for t in range(depth)
    )
    ticket = depth
    while True:
        result = pending.popleft().result()
        if result is None:
            return
        pending.append(pool.submit(_read_and_prepare, reader, ticket, stages, policy))
        ticket += 1
        yield result


def score_shard(
    ds: Dataset,
    shard: str,
    k: int,
    stages: list[Any],
    run: RunDir,
    batch_size: int,
    pool: ThreadPoolExecutor,
    timings: dict[str, float],
    *,
    lookahead: int = 2,
    policy: SamplingPolicy = DEFAULT_POLICY,
    pixel_budget: int = 0,
) -> int:
    """Score one shard and write its files and marker; adds seconds per step to ``timings``:
    ``decode`` the wait on the pool, each stage's ``process`` by name, ``work.*`` pool-thread
    seconds per step, ``cpu.main`` / ``cpu.work`` CPU seconds of this thread / the pool.
    A batch holds at most ``batch_size`` samples and, where ``pixel_budget`` is set, about
    that many decoded pixels (what the headers declare): lookahead + 1 batches are held
    decoded at once, and 64 camera photos of 24 megapixels are 6 GB each time."""
    c0 = time.thread_time()
    ids: list[str] = []
    cols: dict[str, list[Any]] = {c: [] for s in stages for c in s.columns}
    arrays: dict[str, list[np.ndarray]] = {}
    meta: dict[str, list[Any]] = {"id": [], "caption": [], "url": []}
    seen: set[str] = set()
    for stage in stages:
        stage.begin_shard()
    cost = (lambda s: held_pixels(s, policy)) if pixel_budget > 0 else None
    prepared = _prepared_batches(
        batched(ds.read_shard(shard), batch_size, cost, pixel_budget),
        stages,
        pool,
        max(1, lookahead),
        policy,
    )
    while True:
        t0 = time.perf_counter()
        item = next(prepared, None)
        if item is None:
            break
        batch, work = item
        t1 = time.perf_counter()
        # Waiting on decoding and preparation (what the look-ahead did not hide).
        timings["decode"] = timings.get("decode", 0.0) + t1 - t0
        for name, sec in work.items():
            key = "cpu.work" if name == "cpu" else f"work.{name}"
            timings[key] = timings.get(key, 0.0) + sec
        for stage in stages:
            for name, values in stage.process(batch).items():
                cols[name].extend(values)
            t2 = time.perf_counter()
            timings[stage.name] = timings.get(stage.name, 0.0) + t2 - t1
            t1 = t2
        for name, arr in batch.arrays.items():
            arrays.setdefault(name, []).append(arr)
        for s in batch.samples:
            if s.id in seen:
                raise DuplicateIdError([s.id], f"shard {shard!r} of {ds.describe()}")
            seen.add(s.id)
            ids.append(s.id)
            meta["id"].append(s.id)
            meta["caption"].append(s.caption)
            meta["url"].append(s.url)
    table = _signal_table(ids, list(range(len(ids))), cols)
    merged = {n: np.concatenate(a) for n, a in arrays.items()}
    run.write_shard(k, table, merged, pa.table(meta) if merged else None)
    timings["cpu.main"] = timings.get("cpu.main", 0.0) + time.thread_time() - c0
    return len(ids)


@contextmanager
def model_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (None: leave torch's setting)."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@register_engine("local")
def score_local(job: EngineJob) -> int:
    """The local engine: shard after shard in this process; returns the samples scored."""
    done = len(job.shards) - len(job.todo)
    scored = 0
    threads = max(1, job.cfg.decode_threads)
    policy = SamplingPolicy.parse(job.cfg.video_sampling)
    with ThreadPoolExecutor(threads) as pool, model_threads(job.cfg.model_threads):
        for k in job.todo:
            scored += score_shard(
                job.ds,
                job.shards[k],
                k,
                job.stages,
                job.run,
                job.cfg.batch_size,
                pool,
                job.timings,
                lookahead=threads,
                policy=policy,
                pixel_budget=job.cfg.batch_megapixels * 1_000_000,
            )
            done += 1
            if job.progress:
                job.progress(done, len(job.shards), scored)
    return scored
