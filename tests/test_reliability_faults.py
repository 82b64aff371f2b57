"""Faults: SIGKILL at random points then resume (byte-identical run), write errors at every
file of a run (clear error, no shard marked done that is not, same bytes after resuming),
real refusals from the operating system, and misbehaving opt-out servers (bounded time,
recorded unreachable)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipaudit.curate.rundir import RunDir
from tests.hostile import faults


@pytest.fixture(autouse=True, scope="module")
def _warm() -> None:
    # Forked trial workers inherit the loaded language model instead of each unpacking it.
    from clipaudit.curate.stages.quality import _identifier

    _identifier()


def _clean(res: faults.ClassResult) -> None:
    assert res.failed == 0 and not res.unexpected, "\n".join(res.unexpected)


def test_sigkill_then_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    res = faults.sigkill_trials(tmp_path, trials=2, seed=0, n=100)
    _clean(res)
    assert res.counts["ok"] == 2


@pytest.mark.slow
def test_sigkill_twenty_times_then_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    res = faults.sigkill_trials(tmp_path, trials=24, seed=11)
    _clean(res)
    assert res.counts["ok"] == 24


@pytest.mark.slow
def test_sigkill_of_the_cli_then_resume_gives_the_same_bytes(tmp_path: Path) -> None:
    res = faults.sigkill_trials(tmp_path, trials=3, seed=5, via="cli")
    _clean(res)
    assert res.counts["ok"] == 3


def test_a_write_error_at_any_file_is_clear_and_resumable(tmp_path: Path) -> None:
    res = faults.write_error_trials(tmp_path, every=6)  # every one: the slow test below
    _clean(res)
    assert res.counts["clear_error"] == res.cases >= 3


@pytest.mark.slow
def test_a_write_error_at_every_file_is_clear_and_resumable(tmp_path: Path) -> None:
    res = faults.write_error_trials(tmp_path, every=1)
    _clean(res)
    assert res.counts["clear_error"] == res.cases >= 11


def test_real_os_refusals_are_clear_and_resumable(tmp_path: Path) -> None:
    res = faults.real_write_errors(tmp_path, sizes=("160k",))
    _clean(res)
    assert res.counts["clear_error"] == res.cases >= 2


def test_a_killed_start_leaves_a_resumable_run(tmp_path: Path) -> None:
    """run.json is written before anything else, so a run killed right after it resumes,
    and temp files a kill left behind are removed on resume."""
    run = RunDir(tmp_path / "run")
    assert run.prepare({"fingerprint": "f"}) is False
    (tmp_path / "run" / "signals" / ".shard-00000.parquet.abc.tmp").write_bytes(b"half")
    os.makedirs(tmp_path / "run" / ".kept-xyz" / "data")
    assert run.prepare({"fingerprint": "f"}) is True
    left = sorted(p.name for p in (tmp_path / "run").rglob("*") if p.name.startswith("."))
    assert left == []


def test_misbehaving_optout_servers_end_bounded_and_unreachable(tmp_path: Path) -> None:
    res = faults.optout_servers(tmp_path)
    _clean(res)
    assert res.cases == 15 and res.counts["reason"] == 15


def test_a_body_shorter_than_its_length_is_unreachable() -> None:
    from clipaudit.optout import HttpSettings, http_get
    from tests.test_optout_support import serve

    with serve({"/robots.txt": faults._short_body}) as (origin, _):
        got = http_get(origin + "/robots.txt", HttpSettings(timeout=1, deadline=2))
    assert got.outcome == "unreachable" and got.body == b""
    assert "IncompleteRead" in (got.error or "")


def test_misbehaving_judge_servers_end_bounded_and_recorded(tmp_path: Path) -> None:
    res = faults.judge_servers(tmp_path)
    assert res.cases == 13
    assert res.unexpected == [], res.unexpected
    assert res.counts["reason"] == 13
