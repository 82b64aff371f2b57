"""Registries for decide: per-signal rules (reason codes per row) and per-signal stats.

A signal module registers a rule that maps the stored signal columns and the pack to reason
codes, and optionally a stats function whose dict lands in ``stats.json`` under
``signals.NAME``. Decide calls every registered rule in name order on the rows that read
and decoded (errored rows carry only their error), so adding a signal never touches decide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack

Signals = dict[str, np.ndarray]
RuleFn = Callable[[Signals, "Pack"], list[list[str]]]
StatsFn = Callable[[Signals, "Pack", list[list[str]]], dict[str, Any]]

RULES: dict[str, RuleFn] = {}
SIGNAL_STATS: dict[str, StatsFn] = {}
F = TypeVar("F", bound=Callable[..., Any])


def register_rule(name: str) -> Callable[[F], F]:
    """``fn(sig, pack) -> reasons``: one list of reason codes per row of ``sig``."""

    def deco(fn: F) -> F:
        RULES[name] = fn
        return fn

    return deco


def register_stats(name: str) -> Callable[[F], F]:
    """``fn(sig, pack, reasons) -> dict`` for ``stats.json["signals"][name]``."""

    def deco(fn: F) -> F:
        SIGNAL_STATS[name] = fn
        return fn

    return deco


def column(sig: Signals, name: str) -> np.ndarray:
    """A signal column, or all-None when the run did not compute it."""
    n = len(sig["id"])
    return sig[name] if name in sig else np.full(n, None, dtype=object)
