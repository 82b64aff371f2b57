"""Bias probes for CLIP-style models: retrieval skew, harmful labels, association and
performance disparity, as pure functions over embedded images with demographic columns.
``clipaudit eval bias`` in :mod:`clipaudit.evaluate.cli` runs them.
"""

from clipaudit.evaluate.bias.data import LAYOUTS, BiasData, detect_layout, load_bias_data
from clipaudit.evaluate.bias.promptsets import PromptSet, builtin_prompt_sets, load_prompt_set
from clipaudit.evaluate.bias.registry import PROBES, get_probes
from clipaudit.evaluate.bias.run import run_bias, write_bias_result

__all__ = [
    "LAYOUTS",
    "PROBES",
    "BiasData",
    "PromptSet",
    "builtin_prompt_sets",
    "detect_layout",
    "get_probes",
    "load_bias_data",
    "load_prompt_set",
    "run_bias",
    "write_bias_result",
]
