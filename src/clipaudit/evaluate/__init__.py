"""Zero-shot classification and retrieval: pure functions from (model, data, prompts) to
result dicts in one fixed shape (see :mod:`clipaudit.evaluate.results`), plus the world's
built-in benchmarks and the ``clipaudit eval`` sub-app in :mod:`clipaudit.evaluate.cli`.
"""

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
