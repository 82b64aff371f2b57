"""The NSFW cascade's audit sample: a seeded, per-sample choice.

Each sample is picked from its id alone (sha256 of seed and id below the rate), so the
choice does not depend on batching, shard order or resuming, and a rerun picks the same.
"""

from __future__ import annotations

import hashlib


def audit_pick(sample_id: str, seed: int, rate: float) -> bool:
    if rate <= 0:
        return False
    h = hashlib.sha256(f"clipaudit-nsfw-audit:{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") < rate * 2**64
