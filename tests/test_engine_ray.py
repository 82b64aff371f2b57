"""The ray engine writes the same run as the local one, on a local Ray instance."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.errors import ClipauditError
from tests.conftest import WorldRun, write_pool

STAGES = ["quality", "hashes", "alignment"]
# A percentile cut: the threshold is a reduce over every shard's scores, on the driver.
PACK = "name: pct\nextends: default\nalignment:\n  min: null\n  min_percentile: 25\n"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "phases.json"  # decide's timings: machine-dependent
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldRun:
    return write_pool(
        tmp_path_factory.mktemp("rayworld"),
        n=36,
        shard_size=12,
        rates={"exact_duplicate": 0.1, "near_duplicate": 0.1, "misaligned": 0.2},
        pack_yaml=PACK,
    )


def _cfg(world: WorldRun, name: str, engine: str) -> CurateConfig:
    return world.config(
        name,
        stages=list(STAGES),
        model="random:clipaudit-tiny",  # random weights: loads in a second in each actor
        batch_size=8,
        engine=engine,
    )


def test_ray_engine_writes_the_local_engines_bytes(world: WorldRun) -> None:
    ray = pytest.importorskip("ray")
    local = curate(_cfg(world, "local", "local"))
    seen: list[tuple[int, int, int]] = []
    remote = curate(_cfg(world, "ray", "ray"), progress=lambda *a: seen.append(a))
    # The engine started its own local instance and stopped it again.
    assert not ray.is_initialized()
    assert remote["timings"]["ray_actors"] >= 1
    assert sorted(seen)[-1] == (3, 3, 36)
    a, b = _files(world.root / "local"), _files(world.root / "ray")
    # Every file the local run wrote, byte for byte: decisions, kept dataset, signals,
    # embeddings, stats and markers (run.json records provenance and matches too).
    assert sorted(a) == sorted(b)
    assert "decisions.parquet" in a and any(k.startswith("kept/") for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    for key in ("input", "kept", "dropped", "by_reason"):
        assert local[key] == remote[key]
    assert local["by_reason"].get("exact_duplicate", 0) > 0
    assert local["by_reason"].get("low_alignment", 0) >= 36 // 4 - 3  # the 25th percentile


def test_without_ray_the_error_says_how_to_install(
    world: WorldRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ClipauditError, match=r"pip install 'clipaudit\[ray\]'"):
        curate(_cfg(world, "noray", "ray"))
    assert not (world.root / "noray").exists()  # failed before touching the run folder


def test_an_address_nobody_answers_fails_at_once(world: WorldRun) -> None:
    pytest.importorskip("ray")
    cfg = _cfg(world, "badaddr", "ray")
    cfg.ray_address = "127.0.0.1:1"  # nothing listens on port 1: refused, no retries
    with pytest.raises(ClipauditError, match=r"Nothing answers at --ray-address '127.0.0.1:1'"):
        curate(cfg)


def test_unknown_engine_names_the_choices(world: WorldRun) -> None:
    with pytest.raises(ClipauditError, match=r"Unknown engine 'spark'.*local, ray"):
        curate(_cfg(world, "spark", "spark"))


@pytest.mark.parametrize(
    ("resources", "device", "threads", "plan"),
    [
        # One actor per GPU, the CPUs shared out among them.
        ({"CPU": 32.0, "GPU": 4.0}, None, 8, {"actors": 4, "num_gpus": 1, "num_cpus": 8}),
        # --device cpu keeps the model off the GPUs: CPU actors at the driver's threads.
        ({"CPU": 32.0, "GPU": 4.0}, "cpu", 8, {"actors": 4, "num_gpus": 0, "num_cpus": 8}),
        # No GPU: as many actors as fit, never more than shards to score.
        ({"CPU": 64.0}, None, 4, {"actors": 10, "num_gpus": 0, "num_cpus": 4}),
        ({"CPU": 2.0}, None, 2, {"actors": 1, "num_gpus": 0, "num_cpus": 2}),
    ],
)
def test_actor_plan_follows_the_cluster(
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, float],
    device: str | None,
    threads: int,
    plan: dict[str, int],
) -> None:
    ray = pytest.importorskip("ray")
    from clipaudit.curate.engines.ray import _plan

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    job = SimpleNamespace(
        stages=[SimpleNamespace(needs_model=True)],
        cfg=SimpleNamespace(device=device),
        todo=list(range(10)),
    )
    assert _plan(job, threads) == plan
