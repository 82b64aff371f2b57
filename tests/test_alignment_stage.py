from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from clipaudit.curate.stages import Batch
from clipaudit.curate.stages.alignment import AlignmentStage
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample


class CountingClip:
    """Stands in for LoadedClip: embeddings are a hash of the text, calls are counted."""

    def __init__(self) -> None:
        self.provenance = SimpleNamespace(embed_dim=4)
        self.encoded: list[str] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=4) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return np.tile(np.array([[1.0, 0, 0, 0]], np.float32), (len(pixels), 1))


def _batch(captions: list[str | None]) -> Batch:
    samples = [Sample(id=str(i), image=None, caption=c) for i, c in enumerate(captions)]
    return Batch(samples, [decode_image(None) for _ in samples])


def test_repeated_captions_are_encoded_once_per_shard() -> None:
    stage = AlignmentStage()
    clip = CountingClip()
    stage.clip = clip  # type: ignore[assignment]
    stage.begin_shard()
    b1 = _batch(["a red circle", "a blue star", "a red circle", None, "  "])
    stage.process(b1)
    b2 = _batch(["a blue star", "a green square"])
    stage.process(b2)
    assert clip.encoded == ["a red circle", "a blue star", "a green square"]
    t1, t2 = b1.arrays["text_emb"], b2.arrays["text_emb"]
    assert np.array_equal(t1[0], t1[2]) and np.array_equal(t1[1], t2[0])
    assert not t1[3].any() and not t1[4].any()  # no caption, no embedding
    # A new shard starts from nothing, as a resumed run would.
    stage.begin_shard()
    stage.process(_batch(["a red circle"]))
    assert clip.encoded[-1] == "a red circle" and len(clip.encoded) == 4
