"""Zero-shot classification and retrieval: pure functions from (model, data, prompts) to
result dicts in one fixed shape (see :mod:`clipaudit.evaluate.results`), plus the world's
built-in benchmarks and the ``clipaudit eval`` sub-app in :mod:`clipaudit.evaluate.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.evaluate.classdata import ClassificationData, load_classification
    from clipaudit.evaluate.classification import zeroshot_classification
    from clipaudit.evaluate.compare import compare_results
    from clipaudit.evaluate.prompts import TEMPLATE_SETS, Prompts, build_prompts, load_templates
    from clipaudit.evaluate.results import write_result
    from clipaudit.evaluate.retrieval import zeroshot_retrieval
    from clipaudit.evaluate.retrievaldata import RetrievalData, load_retrieval
    from clipaudit.evaluate.world import (
        WORLD_BENCHMARKS,
        run_world_benchmark,
        world_benchmark_metrics,
    )

# Names load on first use (PEP 562): ``clipaudit.evaluate.cli`` is imported by every command
# of the main app, and importing these eagerly pulled torch into ``clipaudit decide`` (6 s
# and ~750 MiB more in the driver and in every worker) which promises to start without it.
_WHERE = {
    "BootstrapSpec": "bootstrap",
    "ClassificationData": "classdata",
    "load_classification": "classdata",
    "zeroshot_classification": "classification",
    "compare_results": "compare",
    "TEMPLATE_SETS": "prompts",
    "Prompts": "prompts",
    "build_prompts": "prompts",
    "load_templates": "prompts",
    "write_result": "results",
    "zeroshot_retrieval": "retrieval",
    "RetrievalData": "retrievaldata",
    "load_retrieval": "retrievaldata",
    "WORLD_BENCHMARKS": "world",
    "run_world_benchmark": "world",
    "world_benchmark_metrics": "world",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "TEMPLATE_SETS",
    "WORLD_BENCHMARKS",
    "BootstrapSpec",
    "ClassificationData",
    "Prompts",
    "RetrievalData",
    "build_prompts",
    "compare_results",
    "load_classification",
    "load_retrieval",
    "load_templates",
    "run_world_benchmark",
    "world_benchmark_metrics",
    "write_result",
    "zeroshot_classification",
    "zeroshot_retrieval",
]
