"""Rules-pack sections for NSFW and watermark signals."""

from __future__ import annotations

from clipaudit.rules.base import Strict


class NsfwRules(Strict):
    """(to be filled by the signal that uses it)"""


class WatermarkRules(Strict):
    """(to be filled by the signal that uses it)"""
