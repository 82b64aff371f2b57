"""Zero-shot class heads, computed the way CLIP_benchmark does and cached by fingerprint.

W_c = normalise(mean_t normalise(encode_text(prompt_t(c)))), in torch float32 like
``clip_benchmark.metrics.zeroshot_classification.zero_shot_classifier``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from clipaudit.evaluate.prompts import Prompts
from clipaudit.models.loader import LoadedClip


def model_fingerprint(clip: LoadedClip) -> str:
    """Weights plus what shapes inputs: two specs of the same weights share heads."""
    p = clip.provenance
    return hashlib.sha256(f"{p.weights_sha256}|{p.arch}|{p.context_length}".encode()).hexdigest()


def compute_head(clip: LoadedClip, prompts: Prompts) -> np.ndarray:
    """(C, D) float32 head, one unit row per class in ``prompts.classnames`` order."""
    flat = [t for texts in prompts.texts for t in texts]
    # One batched pass over every prompt; each row is normalised, as clip-benchmark does.
    emb = torch.from_numpy(clip.encode_texts(flat))
    rows, start = [], 0
    for texts in prompts.texts:
        mean = emb[start : start + len(texts)].mean(dim=0)
        rows.append(mean / mean.norm())
        start += len(texts)
    return torch.stack(rows).numpy()


class HeadCache:
    """Heads by (model, prompts) fingerprint, in memory and optionally in a folder."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self._mem: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0

    def get(self, clip: LoadedClip, prompts: Prompts) -> np.ndarray:
        key = (model_fingerprint(clip), prompts.fingerprint)
        if key in self._mem:
            return self._mem[key]
        path = self.folder / f"head-{key[0][:16]}-{key[1][:16]}.npy" if self.folder else None
        if path is not None and path.is_file():
            head = np.load(path, allow_pickle=False)
        else:
            head = compute_head(clip, prompts)
            self.computed += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, head, allow_pickle=False)
        self._mem[key] = head
        return head


DEFAULT_HEADS = HeadCache()
