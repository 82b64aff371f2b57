"""Imports the stage modules that register decide's rules and stats, and no other: decide
(and each of its map workers) then starts without torch or a model library, which the
scoring-only stages (alignment) would load."""

from __future__ import annotations

from clipaudit.curate import (  # noqa: F401
    stages_hashes,
    stages_nsfw,
    stages_optout,
    stages_quality,
    stages_rights,
    stages_video,
    stages_visible,
    stages_watermark,
)
