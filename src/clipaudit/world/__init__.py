"""The synthetic world: seeded scenes of objects and people, with planted truths.

Splits for training and held-out evaluation, and a noisy pool for curation, each written
with its ground truth (see :mod:`clipaudit.world.write`).
"""

from clipaudit.world.pool import PoolConfig, generate_pool
from clipaudit.world.splits import SPLITS, scenes
from clipaudit.world.write import WORLD_MARKER, write_world

__all__ = ["SPLITS", "WORLD_MARKER", "PoolConfig", "generate_pool", "scenes", "write_world"]
