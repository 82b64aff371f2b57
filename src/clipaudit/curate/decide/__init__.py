"""Decide: from stored signals to one decision per sample, at any size.

A map step applies the per-sample rules shard by shard (``rules``), a reduce step works on
compact columns only (duplicate groups: ``neardup`` search, ``keeper`` confirmation and the
keeper policy, ``semdedup``; references in ``against``; percentile cuts), and a second map
writes decisions and the kept dataset (``writer``). ``run.decide_run`` drives the three.
"""

from clipaudit.curate.decide.keeper import DUPLICATE_KINDS
from clipaudit.curate.decide.rules import ERROR_CODES, quality_reasons
from clipaudit.curate.decide.run import (
    decide_run,
    decide_signals,
    dedup,
    load_signals,
    near_duplicate_pairs,
)

__all__ = [
    "DUPLICATE_KINDS",
    "ERROR_CODES",
    "decide_run",
    "decide_signals",
    "dedup",
    "load_signals",
    "near_duplicate_pairs",
    "quality_reasons",
]
