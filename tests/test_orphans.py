"""A decide's pool workers end with it, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A parent that starts decide's kind of pool (spawn, the exit_with_parent initializer), has
# both workers report their pids, then waits to be killed.
PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from clipaudit.curate.orphans import exit_with_parent

def pid(_):
    time.sleep(0.5)  # both workers take a job
    return os.getpid()

if __name__ == "__main__":
    init = exit_with_parent if sys.argv[1] == "watched" else None
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=init,
                               initargs=(os.getpid(),) if init else ())
    print(*sorted(set(pool.map(pid, range(2)))), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # an unreaped zombie has ended


def _workers_after_kill(tmp_path: Path, mode: str) -> list[int]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and parent.pid not in pids
    assert all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    for p in left:  # never leave them behind, whatever the outcome
        os.kill(p, signal.SIGKILL)
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    assert _workers_after_kill(tmp_path, "watched") == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_without_the_watch_the_workers_outlive_a_killed_parent(tmp_path: Path) -> None:
    # The control: what the watch fixes is real here (two idle orphans).
    assert len(_workers_after_kill(tmp_path, "bare")) == 2
