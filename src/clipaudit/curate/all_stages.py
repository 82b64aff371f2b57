"""Imports every stage module, so each registers its stage, rules and stats by name."""

from __future__ import annotations

from clipaudit.curate import rule_modules, stages_alignment  # noqa: F401
