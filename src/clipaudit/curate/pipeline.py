"""``curate``: score every sample shard by shard (resumable), then decide with a rules pack.

The local engine streams one shard at a time (memory bounded by a shard) and marks each
finished shard so that a killed run resumes where it stopped and ends with the same bytes.
Within a shard the work is split so both kinds of core time overlap: pool threads read the
shard in order, decode each image once and run every stage's batch preparation (vectorised
hashes, one stacked model input) a few batches ahead, while this thread runs the model and
the stages' scoring. A batch's bytes in, and so every signal, do not depend on the thread
count or the look-ahead (tests/test_throughput_pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clipaudit import __version__
from clipaudit.curate import all_stages  # noqa: F401  (registers every stage)
from clipaudit.curate.engines import EngineJob, get_engine, register_engine
from clipaudit.curate.rundir import RunDir
from clipaudit.curate.stage import Batch, StageContext, make_stages
from clipaudit.data.decode import decode_sample
from clipaudit.data.formats import Dataset, ReadOptions, batched, open_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import DuplicateIdError
from clipaudit.models.provenance import library_versions

# Model stages first: the phrase scores of nsfw and watermark reuse alignment's embeddings.
DEFAULT_STAGES = [
    "quality",
    "hashes",
    "alignment",
    "rights",
    "c2pa",
    "optout",
    "watermark",
    "visible_watermark",
    "nsfw",
    "video",
]


# A decoded, prepared batch and the pool-thread seconds per step that made it.
PreparedBatch = tuple[Batch, dict[str, float]]


@dataclass
class CurateConfig:
    dataset: str
    out: str
    rules: str = "default"
    model: str = "bundled:world-clip"
    format: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    batch_size: int = 64
    device: str | None = None
    out_format: str | None = None
    decode_threads: int = 2
    # Intra-op threads of the model (None: torch's default, one per core). On a small or
    # shared machine 1 is much faster, as the decode threads need the other cores and
    # torch's waiting threads spin; but a batch under 16 images then embeds differently in
    # the last bit (<= 5e-8) than with several threads, so it is a recorded setting.
    model_threads: int | None = None
    gates: bool = True
    # Who scores the shards: "local" (this process) or "ray" (see curate/engines.py); the
    # engine never changes the run's files, so it is not part of the run's fingerprint.
    engine: str = "local"
    ray_address: str | None = None
    # Extra stage options (e.g. ``optout_cache``); ``rules`` is added from the field above.
    options: dict[str, Any] = field(default_factory=dict)
    # Reference sets whose copies are dropped (runs or datasets; curate/against.py), and
    # where a dataset's hashes are cached. Decide-time settings: not in the fingerprint.
    against: list[str] = field(default_factory=list)
    against_cache: str | None = None
    # False: score only (a reference set's hashes, say); no decisions, no kept dataset.
    decide: bool = True


def input_fingerprint(ds: Dataset) -> str:
    """Shard names with their sizes and times: enough to refuse resuming onto other data."""
    h = hashlib.sha256(f"{ds.format}|{ds.describe()}".encode())
    for shard in ds.shards():
        h.update(shard.encode())
        path = getattr(ds, "_files", {}).get(shard)
        if path is not None and Path(path).exists():
            st = Path(path).stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def _signal_table(ids: list[str], rows: list[int], cols: dict[str, list[Any]]) -> pa.Table:
    data: dict[str, Any] = {"id": pa.array(ids, pa.string()), "row": pa.array(rows, pa.int64())}
    for name, values in cols.items():
        data[name] = pa.array(values)
    return pa.table(data)


def prepare_batch(samples: list[Sample], stages: list[Any]) -> PreparedBatch:
    """Decode each image of the batch once and run every stage's batch preparation on it;
    runs on a pool thread. Returns the batch and the seconds spent per step."""
    c0, t0 = time.thread_time(), time.perf_counter()
    decoded = [decode_sample(s) for s in samples]
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
    reader: _OrderedReader, ticket: int, stages: list[Any]
) -> PreparedBatch | None:
    samples = reader.read(ticket)
    return None if samples is None else prepare_batch(samples, stages)


def _prepared_batches(
    batches: Iterator[list[Sample]], stages: list[Any], pool: ThreadPoolExecutor, depth: int
) -> Iterator[PreparedBatch]:
    """The shard's batches, read, decoded and prepared on the pool, in order; ``depth``
    batches are in flight while the caller scores one (memory: depth + 1 batches)."""
    reader = _OrderedReader(batches)
    pending: deque[Future[PreparedBatch | None]] = deque(
        pool.submit(_read_and_prepare, reader, t, stages) for t in range(depth)
    )
    ticket = depth
    while True:
        result = pending.popleft().result()
        if result is None:
            return
        pending.append(pool.submit(_read_and_prepare, reader, ticket, stages))
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
) -> int:
    """Score one shard and write its files and marker; adds seconds per step to ``timings``:
    ``decode`` the wait on the pool, each stage's ``process`` by name, ``work.*`` pool-thread
    seconds per step, ``cpu.main`` / ``cpu.work`` CPU seconds of this thread / the pool."""
    c0 = time.thread_time()
    ids: list[str] = []
    cols: dict[str, list[Any]] = {c: [] for s in stages for c in s.columns}
    arrays: dict[str, list[np.ndarray]] = {}
    meta: dict[str, list[Any]] = {"id": [], "caption": [], "url": []}
    seen: set[str] = set()
    for stage in stages:
        stage.begin_shard()
    prepared = _prepared_batches(
        batched(ds.read_shard(shard), batch_size), stages, pool, max(1, lookahead)
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
            )
            done += 1
            if job.progress:
                job.progress(done, len(job.shards), scored)
    return scored


def curate(
    cfg: CurateConfig,
    progress: Callable[[int, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    decide_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Score (or resume scoring) ``cfg.dataset`` into ``cfg.out``, then decide; return stats."""
    from clipaudit.curate.decide import decide_run
    from clipaudit.rules.schema import load_pack

    engine = get_engine(cfg.engine)  # an unknown or uninstalled engine fails before any work
    ds = open_dataset(cfg.dataset, format=cfg.format, options=cfg.read)
    if warn and "alignment" in cfg.stages:
        from clipaudit.models.domain import domain_warning

        note = domain_warning(cfg.model, ds)
        if note:
            warn(note)
    load_pack(cfg.rules)  # fail on a bad pack before any scoring work
    stages = make_stages(cfg.stages)
    ctx = StageContext(
        model_spec=cfg.model,
        device=cfg.device,
        batch_size=cfg.batch_size,
        options={**cfg.options, "rules": cfg.rules},
    )
    settings = {
        "stages": cfg.stages,
        "model": cfg.model if any(s.needs_model for s in stages) else None,
        "batch_size": cfg.batch_size,
        "read": asdict(cfg.read),
        "options": cfg.options,
    }
    if cfg.model_threads is not None:  # absent by default: earlier runs keep their fingerprint
        settings["model_threads"] = cfg.model_threads
    fingerprint = hashlib.sha256(
        (input_fingerprint(ds) + json.dumps(settings, sort_keys=True)).encode()
    ).hexdigest()
    record = {
        "clipaudit": __version__,
        "dataset": {"source": str(cfg.dataset), "format": ds.format, "shards": ds.shards()},
        "settings": settings,
        "fingerprint": fingerprint,
        "versions": library_versions(),
        "out_format": cfg.out_format or ds.format,
    }
    run = RunDir(cfg.out)
    resumed = run.prepare(record)
    shards = ds.shards()
    todo = [k for k in range(len(shards)) if not run.shard_done(k)]
    if todo:
        for stage in stages:
            stage.setup(ctx)
        prov = {s.name: s.provenance() for s in stages}
        run.write_json("run.json", {**record, "stage_provenance": prov})
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    job = EngineJob(cfg, ds, shards, todo, stages, ctx, run, progress, timings)
    scored = engine.score(job) if todo else 0
    t_scored = time.perf_counter()
    if not cfg.decide:
        return {"scored": scored, "resumed": resumed, "shards": len(shards)}
    mapper = None
    if cfg.engine == "ray":  # decide's map and write steps as Ray tasks too
        from clipaudit.curate.engine_ray import ray_mapper

        mapper = ray_mapper(cfg.ray_address)
    stats = decide_run(
        run.path,
        cfg.rules,
        dataset=ds,
        gates=cfg.gates,
        mapper=mapper,
        progress=decide_progress,
        against_paths=cfg.against,
        against_cache=Path(cfg.against_cache) if cfg.against_cache else None,
    )
    # Returned, never written: the run's files must not depend on how fast the machine was.
    stats["resumed"] = resumed
    stats["timings"] = {
        **{k: round(v, 3) for k, v in timings.items()},
        "scoring_wall": round(t_scored - t_start, 3),
        "decide_wall": round(time.perf_counter() - t_scored, 3),
        "scored_samples": scored,
    }
    return stats
