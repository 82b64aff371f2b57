"""Rules-pack sections for embedded rights metadata, C2PA, sources and licences signals."""

from __future__ import annotations

from clipaudit.rules.base import Strict


class RightsRules(Strict):
    """(to be filled by the signal that uses it)"""


class SourcesRules(Strict):
    """(to be filled by the signal that uses it)"""
