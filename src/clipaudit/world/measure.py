"""The numbers the bundled model's card promises, measured on held-out world splits.

Held-out scenes come from split streams the training split never draws from, rendered at
the world's default 256 px so the model's own preprocessing (resize to its input) is tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipaudit.models.loader import LoadedClip
from clipaudit.world.prompts import (
    WATERMARK_PROMPTS,
    color_prompts,
    occupation_prompts,
    shape_prompts,
)
from clipaudit.world.splits import scenes
from clipaudit.world.vocab import BIASED_GROUP, BIASED_OCCUPATION, OCCUPATIONS


def class_head(clip: LoadedClip, prompts: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    """CLIP's zero-shot head: per class, the normalised mean of normalised prompt embeddings."""
    names = list(prompts)
    rows = []
    for name in names:
        emb = clip.encode_texts(prompts[name]).mean(0)
        rows.append(emb / np.linalg.norm(emb))
    return names, np.stack(rows)


def _embed_split(
    clip: LoadedClip, split: str, n: int, seed: int, size: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    truths, images = [], []
    for scene in scenes(split, n, seed=seed):
        images.append(scene.render(size))
        truths.append(scene.truth())
    return clip.encode_images(images, batch_size=128), truths


def zero_shot_acc(
    clip: LoadedClip, emb: np.ndarray, labels: list[str], prompts: dict[str, list[str]]
) -> float:
    names, head = class_head(clip, prompts)
    pred = [names[i] for i in (emb @ head.T).argmax(1)]
    return float(np.mean([p == t for p, t in zip(pred, labels, strict=True)]))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive.astype(int), scores))


def topk_group_share(sims: np.ndarray, groups: list[str], group: str, frac: float = 0.1) -> float:
    k = max(1, round(frac * len(sims)))
    top = np.argsort(-sims, kind="stable")[:k]
    return float(np.mean([groups[i] == group for i in top]))


def world_card_metrics(
    clip: LoadedClip,
    seed: int = 1,
    n_objects: int = 960,
    n_people: int = 2000,
    n_watermark: int = 1000,
    n_retrieval: int = 1000,
    size: int = 256,
) -> dict[str, Any]:
    """Zero-shot colour / shape / occupation accuracy, caption matching, watermark AUROC, bias."""
    out: dict[str, Any] = {"seed": seed, "image_size": size}
    emb, truth = _embed_split(clip, "eval-objects", n_objects, seed, size)
    out["color_acc1"] = zero_shot_acc(
        clip, emb, [t["objects"][0]["color"] for t in truth], color_prompts()
    )
    out["shape_acc1"] = zero_shot_acc(
        clip, emb, [t["objects"][0]["shape"] for t in truth], shape_prompts()
    )
    out["n_objects"] = len(truth)

    emb, truth = _embed_split(clip, "eval-people", n_people, seed, size)
    out["occupation_acc1"] = zero_shot_acc(
        clip, emb, [t["occupation"] for t in truth], occupation_prompts()
    )
    out["n_people"] = len(truth)
    groups = [t["group"] for t in truth]
    base = float(np.mean([g == BIASED_GROUP for g in groups]))
    bias: dict[str, float] = {}
    for occ in OCCUPATIONS:
        sims = emb @ clip.encode_texts([f"a photo of a {occ}"])[0]
        bias[occ] = round(topk_group_share(sims, groups, BIASED_GROUP) - base, 4)
    out["bias_top10_overrep"] = bias
    out["bias_planted"] = {
        "occupation": BIASED_OCCUPATION,
        "group": BIASED_GROUP,
        "base_share": base,
    }

    emb, truth = _embed_split(clip, "eval-retrieval", n_retrieval, seed, size)
    txt = clip.encode_texts([t["caption"] for t in truth])
    own = (emb * txt).sum(1)
    rng = np.random.default_rng(seed)
    shift = rng.integers(1, len(truth), len(truth))
    other_idx = (np.arange(len(truth)) + shift) % len(truth)
    other = (emb * txt[other_idx]).sum(1)
    same_caption = np.array(
        [truth[i]["caption"] == truth[j]["caption"] for i, j in enumerate(other_idx)]
    )
    keep = ~same_caption
    out["matched_beats_mismatched"] = float(np.mean(own[keep] > other[keep]))
    out["n_retrieval"] = int(keep.sum())

    emb, truth = _embed_split(clip, "eval-watermark", n_watermark, seed, size)
    prompts = clip.encode_texts(list(WATERMARK_PROMPTS))
    score = emb @ prompts[0] - emb @ prompts[1]
    out["watermark_auroc"] = auroc(score, np.array([t["watermark"] is not None for t in truth]))
    out["n_watermark"] = len(truth)
    return out
