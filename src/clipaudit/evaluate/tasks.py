"""The task registry: each evaluation task is a pure function plus its bootstrap statistics.

``stats(result)`` rebuilds the headline metrics as statistics over the result's units from
its per-sample rows, so comparing models needs only their result dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import Stat

Result = dict[str, Any]
StatsFn = Callable[[Result], tuple[dict[str, Stat], int]]
F = TypeVar("F", bound=Callable[..., Result])


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable[..., Result]
    stats: StatsFn


TASKS: dict[str, Task] = {}


def register_task(name: str, stats: StatsFn) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        TASKS[name] = Task(name, fn, stats)
        return fn

    return deco


def get_task(name: str) -> Task:
    # Importing the task modules fills the registry.
    from clipaudit.evaluate import classification, retrieval  # noqa: F401

    try:
        return TASKS[name]
    except KeyError:
        raise ClipauditError(
            f"Unknown evaluation task {name!r}; use one of: {', '.join(sorted(TASKS))}."
        ) from None
