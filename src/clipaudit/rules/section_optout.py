"""Rules-pack sections for machine-readable opt-out signals."""

from __future__ import annotations

from clipaudit.rules.base import Strict


class OptoutRules(Strict):
    """(to be filled by the signal that uses it)"""
