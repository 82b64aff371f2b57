"""Imports every stage module, so each registers its stage, rules and stats by name."""

from __future__ import annotations

from clipaudit.curate import (  # noqa: F401
    stages_alignment,
    stages_hashes,
    stages_nsfw,
    stages_optout,
    stages_quality,
    stages_rights,
    stages_visible,
    stages_watermark,
)
