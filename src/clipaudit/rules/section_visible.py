"""Rules-pack section for the trained visible-watermark detector."""

from __future__ import annotations

from clipaudit.rules.base import Strict


class VisibleWatermarkRules(Strict):
    """(to be filled by the signal that uses it)"""
