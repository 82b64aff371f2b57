"""Pool workers that end with the process that started them.

A ``decide --workers N`` killed with SIGKILL (an out-of-memory kill, a scheduler's timeout)
left its spawned workers alive, reparented and idle, about 190 MB each, for good: nothing
ever wrote to their task queue again. Each worker watches its parent's pid and exits when
the parent is gone.
"""

from __future__ import annotations

import os
import threading
import time

# Seconds between looks at the parent: an orphan lingers at most this long.
POLL_S = 1.0


def exit_with_parent(parent: int | None = None) -> None:
    """Pool initializer: start a daemon thread that ends this process once ``parent`` (the
    pid that started it; default: the current parent) is no longer its parent."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)  # no cleanup to run: the parent that wanted the results is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
