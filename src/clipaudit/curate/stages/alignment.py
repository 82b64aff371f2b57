"""CLIP alignment: cosine of the L2-normalised image and caption embeddings.

Embeddings are left on the batch for the run writer (clip-retrieval layout), so a later
semantic dedup or retrieval needs no second pass through the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipaudit.curate.stages import FRAME_EMB, Batch, Stage, StageContext, register_stage
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.models.loader import LoadedClip


@register_stage("alignment")
class AlignmentStage(Stage):
    columns = ("alignment",)
    needs_model = True

    def __init__(self) -> None:
        self.clip: LoadedClip | None = None
        self.batch_size = 64
        # Caption → embedding within the current shard: web data repeats captions (stock
        # titles, alt text), and each distinct one is encoded once. Cleared per shard so a
        # resumed run computes every shard exactly as an uninterrupted one did.
        self._text_cache: dict[str, np.ndarray] = {}

    def begin_shard(self) -> None:
        self._text_cache = {}

    def setup(self, ctx: StageContext) -> None:
        self.clip = ctx.clip()
        self.batch_size = ctx.batch_size

    def prepare(self, sample: Sample, decoded: Decoded) -> Any:
        """The model's own preprocessing (resize, crop, normalise), on a worker thread."""
        return self.prepare_batch([sample], [decoded])[0]

    def prepare_batch(self, samples: list[Sample], decoded: list[Decoded]) -> list[Any]:
        """The whole batch preprocessed into one tensor; each sample gets its row (a view),
        a sample without an image gets None."""
        assert self.clip is not None, "setup() was not called"
        # A video sample contributes every sampled frame; its row is a (frames, C, H, W)
        # tensor, an image's a (C, H, W) one.
        rows = [
            (i, d.frames if d.frames else [d.image])
            for i, d in enumerate(decoded)
            if d.image is not None
        ]
        out: list[Any] = [None] * len(decoded)
        if rows:
            pixels = self.clip.preprocess_batch([im for _, ims in rows for im in ims])
            at = 0
            for i, ims in rows:
                out[i] = pixels[at] if not decoded[i].frames else pixels[at : at + len(ims)]
                at += len(ims)
        return out

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        assert self.clip is not None, "setup() was not called"
        n, dim = len(batch.samples), self.clip.provenance.embed_dim
        img = np.zeros((n, dim), np.float32)
        txt = np.zeros((n, dim), np.float32)
        prepared = self.prepared_for(batch)
        rows = [i for i, t in enumerate(prepared) if t is not None]
        if rows:
            # Frames of a video are embedded like images and averaged (renormalised): the
            # clip's embedding; its alignment is that embedding's cosine with the caption.
            parts = [prepared[i] if prepared[i].dim() == 4 else prepared[i][None] for i in rows]
            emb = self.clip.encode_pixels(torch.cat(parts))
            at = 0
            frame_emb: list[np.ndarray | None] = [None] * n
            for i, part in zip(rows, parts, strict=True):
                e = emb[at : at + len(part)]
                at += len(part)
                if prepared[i].dim() == 4:  # a video: phrase stages score each frame
                    frame_emb[i] = e
                if len(part) > 1:
                    e = e.mean(axis=0, keepdims=True)
                    e /= max(float(np.linalg.norm(e)), 1e-12)
                img[i] = e[0]
            batch.prepared[FRAME_EMB] = frame_emb
        caps = [i for i, s in enumerate(batch.samples) if (s.caption or "").strip()]
        texts = [batch.samples[i].caption or "" for i in caps]
        new = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if new:
            self._text_cache.update(zip(new, self.clip.encode_texts(new), strict=True))
        for i, t in zip(caps, texts, strict=True):
            txt[i] = self._text_cache[t]
        score: list[float | None] = [None] * n
        both = set(rows) & set(caps)
        for i in both:
            score[i] = float(img[i] @ txt[i])
        batch.arrays["img_emb"] = img
        batch.arrays["text_emb"] = txt
        return {"alignment": score}

    def provenance(self) -> dict[str, Any]:
        return self.clip.provenance.to_dict() if self.clip else {}
