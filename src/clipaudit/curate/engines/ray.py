"""The ``ray`` engine: score shards on a Ray cluster with Ray Data, write and decide here.

Shards are the blocks: a Ray Dataset holds one row per shard still to score, and an actor
pool maps it. Each actor sets up the stages once (one model load per actor, on a GPU of its
own when the cluster has GPUs and a stage needs the model) and scores each shard by running
the local engine on it: same batches, same stage order, same per-shard caches, and the
driver's torch thread count. That is what makes the run's files byte-identical to the local
engine's; splitting a shard's stages across processes would decode every image twice and let
batch boundaries differ. The actor sends back the shard's signal table, arrays and metadata;
the driver writes them through the run folder (marker last, so resume works as locally)
and then decides, so the dedup and percentile reduces run here over 8-byte hashes and
scalar scores.

Workers open the dataset by the same path as the driver, from the driver's working folder:
on a multi-node cluster the data and the run's rules and caches must be on a shared
filesystem, and clipaudit installed on every node.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clipaudit.curate.engines import EngineJob, Mapper, get_engine, register_engine
from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError

if TYPE_CHECKING:
    from clipaudit.curate.config import CurateConfig


@dataclass
class ShardJobSpec:
    """What an actor needs to rebuild the driver's stages and dataset: plain, picklable."""

    cfg: CurateConfig
    format: str
    model_spec: str | None
    device: str | None
    options: dict[str, Any]
    # The driver's torch intra-op threads, which the local engine starts from: a matrix
    # product summed over another number of threads differs in the last bits, and so would
    # the run's bytes (Ray caps an actor's threads at its CPUs unless told otherwise).
    torch_threads: int
    shards: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)


class _Capture(RunDir):
    """Stands in for the run folder inside an actor: keeps the shard instead of writing it."""

    def __init__(self) -> None:
        super().__init__(".")
        self.shard: tuple[pa.Table, dict[str, np.ndarray], pa.Table | None] | None = None

    def write_shard(
        self, k: int, signals: pa.Table, arrays: dict[str, np.ndarray], metadata: pa.Table | None
    ) -> None:
        self.shard = (signals, arrays, metadata)


class ShardScorer:
    """A Ray Data actor: stages set up once, then whole shards scored per call by the local
    engine itself, so each shard is computed exactly as ``--engine local`` computes it."""

    spec: ShardJobSpec

    def __init__(self) -> None:
        t0 = time.perf_counter()
        spec = self.spec
        os.environ.update(spec.env)
        if Path(spec.cwd).is_dir():
            os.chdir(spec.cwd)  # relative dataset, rules and cache paths mean what they did
        import torch

        from clipaudit.curate.stages import StageContext, make_stages
        from clipaudit.data.formats import open_dataset

        torch.set_num_threads(spec.torch_threads)
        self.ds = open_dataset(spec.cfg.dataset, format=spec.format, options=spec.cfg.read)
        self.stages = make_stages(spec.cfg.stages)
        self.ctx = StageContext(
            model_spec=spec.model_spec,
            device=spec.device,
            batch_size=spec.cfg.batch_size,
            options=spec.options,
        )
        for stage in self.stages:
            stage.setup(self.ctx)
        # Reported with this actor's first shard: imports, dataset and model loads.
        self.setup_seconds: float | None = time.perf_counter() - t0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        local = get_engine("local")
        out: dict[str, list[Any]] = {"k": [], "payload": []}
        for k in batch["k"].tolist():
            capture = _Capture()
            timings: dict[str, float] = {}
            if self.setup_seconds is not None:
                timings["ray_actor_setup"], self.setup_seconds = self.setup_seconds, None
            job = EngineJob(
                self.spec.cfg, self.ds, self.spec.shards, [k], self.stages, self.ctx,
                capture, None, timings,
            )  # fmt: skip
            out["k"].append(k)
            try:
                n = local.score(job)
            except ClipauditError as err:
                # A user's mistake (duplicate ids, a bad shard) goes back as its sentence:
                # Ray would wrap it in its own exception with a traceback as the message.
                out["payload"].append(pickle.dumps((0, None, {}, str(err))))
                return out
            out["payload"].append(pickle.dumps((n, capture.shard, timings, None)))
        return out


def _bound_scorer(spec: ShardJobSpec) -> type[ShardScorer]:
    """ShardScorer with the spec as a class attribute: the class travels pickled by value
    with the spec, so the actors need no constructor arguments in the object store."""
    return type("ShardScorer", (ShardScorer,), {"spec": spec})


def _clipaudit_env() -> dict[str, str]:
    """The CLIPAUDIT_* settings (offline mode, cache folders) the workers must share."""
    return {k: v for k, v in os.environ.items() if k.startswith("CLIPAUDIT_")}


def _reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nobody listens on: ``ray.init`` retries for minutes."""
    m = re.fullmatch(r"\[?([\w.:-]+?)\]?:(\d+)", address)
    if m is None:  # "auto", "ray://…" and the like: Ray resolves those itself
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except OSError as err:
        raise ClipauditError(
            f"Nothing answers at --ray-address {address!r} ({err.strerror or err}); give the "
            "head node's HOST:PORT (ray start --head prints it) or leave the option out."
        ) from None


def connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local one; True when this call connected
    (and so must disconnect). An already connected session is the caller's and is left alone;
    ``ray.shutdown`` stops only a cluster that ``ray.init`` started here, never one joined."""
    import ray

    if ray.is_initialized():
        return False
    # Quiet: Ray's warning-level notes (token auth is on, progress bars are off) say
    # nothing a curate user can act on; errors still show.
    common: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "runtime_env": {"env_vars": _clipaudit_env()},
    }
    if address:
        _reachable(address)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            # "local" always starts a fresh instance, never joins one found on the machine.
            ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1, **common)
    except ConnectionError as err:
        raise ClipauditError(
            f"Could not connect to the Ray cluster at {address!r} ({err}); check --ray-address "
            "or start the cluster with `ray start --head`."
        ) from None
    return True


def _plan(job: EngineJob, torch_threads: int) -> dict[str, Any]:
    """Actor count and resources per actor from what the cluster offers: one actor per GPU
    when a stage needs the model and there are GPUs, else as many actors as fit the CPUs at
    ``torch_threads`` CPUs each (on one machine: one actor, as the local engine)."""
    import ray

    res = ray.cluster_resources()
    cpus = max(1, int(res.get("CPU", 1)))
    gpus = int(res.get("GPU", 0))
    needs_model = any(s.needs_model for s in job.stages)
    use_gpu = needs_model and gpus > 0 and (job.cfg.device or "cuda").startswith("cuda")
    if use_gpu:
        actors = max(1, min(len(job.todo), gpus))
        return {"actors": actors, "num_gpus": 1, "num_cpus": max(1, cpus // actors)}
    per_actor = max(1, min(cpus, torch_threads))
    actors = max(1, min(len(job.todo), cpus // per_actor))
    return {"actors": actors, "num_gpus": 0, "num_cpus": per_actor}


def score_on_ray(job: EngineJob) -> int:
    """Score ``job.todo`` on Ray; writes each shard as it arrives; returns samples scored."""
    import ray
    import ray.data

    started = connect(job.cfg.ray_address)
    try:
        # Ray Data says at warning level that progress bars are off; that is the intent.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        import torch

        torch_threads = torch.get_num_threads()
        plan = _plan(job, torch_threads)
        # A GPU actor decodes on all the CPUs it was given (decoding is exact, so the
        # thread count changes no byte); a CPU actor keeps the local engine's split.
        cfg = job.cfg
        if plan["num_gpus"]:
            cfg = replace(cfg, decode_threads=max(cfg.decode_threads, plan["num_cpus"]))
        spec = ShardJobSpec(
            cfg=cfg,
            format=job.ds.format,
            model_spec=job.ctx.model_spec,
            device=job.cfg.device if plan["num_gpus"] == 0 else None,
            options=dict(job.ctx.options),
            torch_threads=torch_threads,
            shards=list(job.shards),
            cwd=os.getcwd(),
            env=_clipaudit_env(),
        )
        items = [{"k": k} for k in job.todo]
        scored_ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _bound_scorer(spec),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=plan["actors"]),
            num_cpus=plan["num_cpus"],
            num_gpus=plan["num_gpus"],
        )
        done = len(job.shards) - len(job.todo)
        scored = 0
        t0 = time.perf_counter()
        for row in scored_ds.iter_rows():
            n, shard, timings, error = pickle.loads(row["payload"])
            if error is not None:
                raise ClipauditError(error)
            signals, arrays, metadata = shard
            job.run.write_shard(int(row["k"]), signals, arrays, metadata)
            for name, secs in timings.items():
                # Summed over actors: worker-seconds, not wall time.
                job.timings[name] = job.timings.get(name, 0.0) + secs
            scored += n
            done += 1
            if job.progress:
                job.progress(done, len(job.shards), scored)
        job.timings["ray_actors"] = float(plan["actors"])
        job.timings["ray_gpus_per_actor"] = float(plan["num_gpus"])
        job.timings["ray_scoring_wall"] = time.perf_counter() - t0
        return scored
    finally:
        if started:
            ray.shutdown()


def ray_mapper(address: str | None) -> Mapper:
    """Decide's map steps as Ray tasks, one per shard (results in job order). The tasks read
    the signal shards and write their per-shard outputs in the run folder, so on a cluster
    the run folder must be on storage every node mounts, as the input dataset already is."""

    def run(fn: Callable[[Any], Any], jobs: list[Any], tick: Callable[[int], None]) -> list[Any]:
        import ray

        started = connect(address)
        try:
            task: Any = ray.remote(num_cpus=1)(fn)
            try:
                refs = [task.remote(j) for j in jobs]
                pending, done = list(refs), 0
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    done += len(ready)
                    tick(done)
                return list(ray.get(refs))
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, ClipauditError):
                    raise ClipauditError(str(cause)) from None
                raise
        finally:
            if started:
                ray.shutdown()

    return run


def _ray_installed() -> None:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ClipauditError(
            "--engine ray needs Ray, which is not installed; run pip install 'clipaudit[ray]'."
        ) from None


def _decide_on_ray(cfg: CurateConfig) -> Mapper:
    return ray_mapper(cfg.ray_address)


register_engine("ray", check=_ray_installed, decide_mapper=_decide_on_ray)(score_on_ray)
