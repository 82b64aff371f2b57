"""The world benchmarks, rendered once and scored for every model of the ablation.

The scenes and their labels come from :mod:`clipaudit.evaluate.world` (the same data as
``clipaudit eval world-*``), and scoring calls the same task functions; only the pixels are
prepared once here (rendered at the benchmarks' 256 px, then resized and cropped to the
model input as open_clip's preprocess does) instead of once per model.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clipaudit.ablate.pooldata import to_input
from clipaudit.evaluate.bootstrap import BootstrapSpec
from clipaudit.evaluate.classification import zeroshot_classification
from clipaudit.evaluate.heads import HeadCache
from clipaudit.evaluate.images import Embedded
from clipaudit.evaluate.prompts import Prompts
from clipaudit.evaluate.retrieval import zeroshot_retrieval
from clipaudit.evaluate.world import DEFAULT_SIZE, WORLD_BENCHMARKS
from clipaudit.models.loader import LoadedClip

# The headline metric(s) of each benchmark, in the report's order.
HEADLINE: list[tuple[str, str]] = [
    ("world-colors", "acc1"),
    ("world-shapes", "acc1"),
    ("world-occupations", "acc1"),
    ("world-retrieval", "text_to_image_recall@1"),
    ("world-retrieval", "image_to_text_recall@1"),
]


@dataclass
class Bench:
    name: str
    task: str
    split: str
    data: Any
    prompts: Prompts | None


@dataclass
class WorldBenchSet:
    benches: list[Bench]
    pixels: dict[str, torch.Tensor]  # split → uint8 N × 3 × S × S at the model input size
    seed: int
    sizes: dict[str, int]


def _render(args: tuple[str, int, int, int, int, int]) -> np.ndarray:
    from clipaudit.world.splits import scenes

    split, n, seed, start, count, size = args
    out = [
        to_input(s.render(DEFAULT_SIZE), size)
        for i, s in enumerate(scenes(split, n, seed=seed))
        if start <= i < start + count
    ]
    return np.stack(out)


def render_split(split: str, n: int, seed: int, size: int, workers: int) -> torch.Tensor:
    chunk = max(1, -(-n // max(1, workers)))
    jobs = [(split, n, seed, s, min(chunk, n - s), size) for s in range(0, n, chunk)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_render, jobs))
    else:
        parts = [_render(j) for j in jobs]
    return torch.from_numpy(np.concatenate(parts)).permute(0, 3, 1, 2).contiguous()


def build_benchmarks(
    sizes: dict[str, int], seed: int, image_size: int, workers: int = 2
) -> WorldBenchSet:
    benches: list[Bench] = []
    for name, wb in WORLD_BENCHMARKS.items():
        data, prompts = wb.build(sizes[wb.split], seed, DEFAULT_SIZE)
        benches.append(Bench(name, wb.task, wb.split, data, prompts))
    pixels = {
        split: render_split(split, sizes[split], seed, image_size, workers)
        for split in sorted({b.split for b in benches})
    }
    return WorldBenchSet(benches, pixels, seed, dict(sizes))


def embed_pixels(clip: LoadedClip, pixels: torch.Tensor, batch_size: int = 256) -> Embedded:
    """Unit image embeddings of uint8 pixels, normalised with the model's mean and std."""
    mean = torch.tensor(clip.provenance.mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.provenance.std).view(1, 3, 1, 1)
    parts = [
        clip.encode_pixels((pixels[i : i + batch_size].float().div(255) - mean) / std)
        for i in range(0, len(pixels), batch_size)
    ]
    emb = np.concatenate(parts)
    return Embedded(emb, np.ones(len(emb), bool), {})


def score_model(
    clip: LoadedClip, bset: WorldBenchSet, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Every benchmark's result dict for one model (intervals are computed later, paired)."""
    embedded = {split: embed_pixels(clip, px) for split, px in bset.pixels.items()}
    heads = HeadCache()
    no_boot = BootstrapSpec(n=0)
    out: dict[str, dict[str, Any]] = {}
    for b in bset.benches:
        if b.task == "zeroshot_retrieval":
            result = zeroshot_retrieval(clip, b.data, boot=no_boot, embedded=embedded[b.split])
        else:
            assert b.prompts is not None
            result = zeroshot_classification(
                clip, b.data, b.prompts, boot=no_boot, heads=heads, embedded=embedded[b.split]
            )
        result["dataset"]["benchmark"] = b.name
        out[b.name] = result
    return out
