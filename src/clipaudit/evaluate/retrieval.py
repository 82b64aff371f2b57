"""Zero-shot retrieval as a pure function, with CLIP_benchmark's recall@k.

S = texts · imagesᵀ (unit embeddings). text→image R@k: share of captions whose image is in
their top k images (clip-benchmark's ``image_retrieval_recall@k``); image→text R@k: share
of images with at least one of their captions in their top k captions
(``text_retrieval_recall@k``). The bootstrap resamples images, each with all its captions.
Recall@k is reported only for k below the number of candidates (images for text queries,
captions for image queries): at k ≥ that number every query hits by construction (and
clip-benchmark's ``topk`` fails above it), so such a k is left out with a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import BootstrapSpec, Stat, ratio_stat, summarise
from clipaudit.evaluate.images import Embedded, embed_images
from clipaudit.evaluate.ranking import top_k
from clipaudit.evaluate.results import dataset_block, record, skipped_note
from clipaudit.evaluate.retrievaldata import RetrievalData
from clipaudit.evaluate.tasks import register_task
from clipaudit.models.loader import LoadedClip

RECALL_KS = (1, 5, 10)
CLIP_BENCHMARK_NAMES = {
    f"{d}_recall@{k}": f"{cb}_retrieval_recall@{k}"
    for k in RECALL_KS
    for d, cb in (("text_to_image", "image"), ("image_to_text", "text"))
}
ROW_CHUNK = 256  # query rows scored at once: bounds memory at ~5 × ROW_CHUNK × gallery


def _scores(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return (torch.from_numpy(queries) @ torch.from_numpy(gallery).T).numpy()


def text_to_image_ranks(
    txt: np.ndarray, img: np.ndarray, caption_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each caption's own image, and each caption's top-5 images and scores."""
    ranks, tops, top_scores = [], [], []
    for lo in range(0, len(txt), ROW_CHUNK):
        s = _scores(txt[lo : lo + ROW_CHUNK], img)
        target = caption_image[lo : lo + ROW_CHUNK]
        own = s[np.arange(len(s)), target][:, None]
        cols = np.arange(s.shape[1])[None, :]
        ranks.append(((s > own) | ((s == own) & (cols < target[:, None]))).sum(axis=1))
        t = top_k(s, 5)
        tops.append(t)
        top_scores.append(np.take_along_axis(s, t, axis=1))
    return np.concatenate(ranks), np.concatenate(tops), np.concatenate(top_scores)


def image_to_text_ranks(
    txt: np.ndarray, img: np.ndarray, caption_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best rank among each image's captions (−1 for an image without any), top-5 captions."""
    best = np.full(len(img), -1, np.int64)
    tops, top_scores = [], []
    cols = np.arange(len(txt))[None, :]
    for lo in range(0, len(img), ROW_CHUNK):
        s = _scores(img[lo : lo + ROW_CHUNK], txt)
        pos = np.flatnonzero((caption_image >= lo) & (caption_image < lo + len(s)))
        rows = caption_image[pos] - lo
        own = s[rows, pos][:, None]
        r = ((s[rows] > own) | ((s[rows] == own) & (cols < pos[:, None]))).sum(axis=1)
        block = np.full(len(s), np.iinfo(np.int64).max)
        np.minimum.at(block, rows, r)
        has = block != np.iinfo(np.int64).max
        best[lo : lo + len(s)][has] = block[has]
        t = top_k(s, 5)
        tops.append(t)
        top_scores.append(np.take_along_axis(s, t, axis=1))
    return best, np.concatenate(tops), np.concatenate(top_scores)


def reported_ks(n_candidates: int) -> tuple[int, ...]:
    """The recall ks that mean something against ``n_candidates``: k < n_candidates."""
    return tuple(k for k in RECALL_KS if k < n_candidates)


def retrieval_stats(units: dict[str, np.ndarray]) -> dict[str, Stat]:
    """Recall@k as statistics over resampled images (a cluster bootstrap of captions), for
    the ks below each direction's number of candidates."""
    n_img = len(units["i2t_rank"])
    n_txt = len(units["t2i_rank"])
    counts = np.bincount(units["caption_image"], minlength=n_img)
    query = units["i2t_rank"] >= 0
    stats: dict[str, Stat] = {}
    for k in reported_ks(n_img):
        hits = np.bincount(units["caption_image"], weights=units["t2i_rank"] < k, minlength=n_img)
        stats[f"text_to_image_recall@{k}"] = ratio_stat(hits, counts)
    for k in reported_ks(n_txt):
        stats[f"image_to_text_recall@{k}"] = ratio_stat(query & (units["i2t_rank"] < k), query)
    return stats


def _left_out_note(direction: str, n: int, what: str) -> str | None:
    dropped = [f"@{k}" for k in RECALL_KS if k not in reported_ks(n)]
    if not dropped:
        return None
    ks = ", ".join(dropped[:-1]) + " and " + dropped[-1] if len(dropped) > 1 else dropped[0]
    return (
        f"{direction} recall{ks} {'are' if len(dropped) > 1 else 'is'} not reported: there "
        f"{'is' if n == 1 else 'are'} {n} {what if n != 1 else what[:-1]} to rank, and "
        f"recall@k with k ≥ {n} is 1 by construction."
    )


def _stats_of(result: dict[str, Any]) -> tuple[dict[str, Stat], int]:
    units = result["units"]
    return retrieval_stats(units), len(units["i2t_rank"])


@register_task("zeroshot_retrieval", stats=_stats_of)
def zeroshot_retrieval(
    clip: LoadedClip,
    data: RetrievalData,
    prompts: Any = None,
    *,
    boot: BootstrapSpec | None = None,
    embedded: Embedded | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Text→image and image→text recall@1/5/10 of ``data``; no I/O of its own."""
    boot = boot or BootstrapSpec()
    emb = embedded or embed_images(clip, data.images, batch_size=batch_size)
    keep = np.flatnonzero(emb.ok)
    if keep.size == 0:
        raise ClipauditError(f"No image of {data.name!r} could be decoded; nothing to evaluate.")
    # Captions of an undecodable image go too: their target is not in the gallery.
    new_index = np.full(len(emb.ok), -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    cap_keep = np.flatnonzero(new_index[data.caption_image] >= 0)
    caption_image = new_index[data.caption_image[cap_keep]]
    captions = [data.captions[i] for i in cap_keep]
    caption_ids = [data.caption_ids[i] for i in cap_keep]
    image_ids = [data.images.ids[i] for i in keep]
    img = emb.emb[keep]
    txt = clip.encode_texts(captions)
    t_rank, t_top, t_sc = text_to_image_ranks(txt, img, caption_image)
    i_rank, i_top, i_sc = image_to_text_ranks(txt, img, caption_image)
    units = {"t2i_rank": t_rank, "i2t_rank": i_rank, "caption_image": caption_image}
    stats = retrieval_stats(units)
    if not stats:
        raise ClipauditError(
            f"The dataset {data.name!r} has {len(img)} readable image and {len(captions)} "
            "caption: every recall@k is 1 by construction; add images and captions."
        )
    metrics = {name: summarise(stat, len(img), boot) for name, stat in stats.items()}
    queries = np.flatnonzero(i_rank >= 0)
    per_sample: dict[str, Any] = {
        "direction": ["text_to_image"] * len(captions) + ["image_to_text"] * len(queries),
        "id": caption_ids + [image_ids[i] for i in queries],
        "caption": captions + [None] * len(queries),
        "image_id": [image_ids[i] for i in caption_image] + [image_ids[i] for i in queries],
        "rank": np.concatenate([t_rank, i_rank[queries]]),
        # Rows hold min(5, candidates) entries: fewer images than captions, or the reverse,
        # gives the two directions different widths.
        "top5": [[image_ids[j] for j in row] for row in t_top]
        + [[caption_ids[j] for j in row] for row in i_top[queries]],
        "top5_scores": t_sc.tolist() + i_sc[queries].tolist(),
    }
    notes = [
        note
        for note in (
            skipped_note(
                emb.errors,
                "image",
                len(img),
                data.info.get("unreadable_captions", 0) + len(data.captions) - len(captions),
            ),
            _left_out_note("text→image", len(img), "images"),
            _left_out_note("image→text", len(captions), "captions"),
        )
        if note
    ]
    n_lonely = int((i_rank < 0).sum())
    if n_lonely:
        notes.append(
            f"{n_lonely} images have no caption: they are distractors for text queries but "
            "not image queries (clip-benchmark would count each as a miss)."
        )
    dupes = len(captions) - len(set(captions))
    if dupes:
        notes.append(
            f"{dupes} captions repeat another caption's text; a repeated caption counts only "
            "its own image as a hit, as in clip-benchmark."
        )
    body = {
        "metrics": metrics,
        "clip_benchmark_names": {m: CLIP_BENCHMARK_NAMES[m] for m in metrics},
        "notes": notes,
        "per_sample": per_sample,
    }
    out = record(
        task="zeroshot_retrieval",
        dataset=dataset_block(
            data.name,
            data.info,
            len(img),
            emb.errors,
            n_images=len(img),
            n_captions=len(captions),
        ),
        clip=clip,
        prompts=None,
        boot=boot,
        unit="image (with all its captions)",
        body=body,
    )
    out["units"] = units
    return out
