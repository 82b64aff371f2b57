"""The batched hashes and batched preprocessing equal the per-image originals bit for bit."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.curate.stages.hashes import (
    HashStage,
    bits_to_int64,
    perceptual_hashes,
    pixel_hash,
    rows_to_int64,
)
from clipaudit.data.decode import decode_image
from clipaudit.models.batch_preprocess import BatchPreprocess
from clipaudit.models.loader import LoadedClip, load_clip
from tests.conftest import photo_like


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    ims = [Image.fromarray(photo_like(w, h, seed=w + h)) for w, h in [(256, 256), (120, 80)]]
    for w, h in [(1, 1), (2, 300), (300, 2), (9, 8), (31, 33), (640, 480)]:
        ims.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    ims.append(Image.new("RGB", (50, 40), (7, 7, 7)))  # flat: every DCT term but DC is 0
    ims.append(Image.fromarray(photo_like(64, 64)).convert("L").convert("RGB"))
    return ims


def test_batched_phash_dhash_equal_imagehash() -> None:
    ims = _images()
    phash, dhash = perceptual_hashes(ims)
    assert phash == [bits_to_int64(imagehash.phash(im).hash) for im in ims]
    assert dhash == [bits_to_int64(imagehash.dhash(im).hash) for im in ims]
    assert len(set(phash)) > len(ims) // 2  # real, varied hashes, not one constant
    assert perceptual_hashes([]) == ([], [])


def test_rows_to_int64_matches_the_bit_loop() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (50, 8, 8)).astype(bool)
    bits[0] = True  # all ones: -1
    bits[1] = False
    bits[2] = False
    bits[2, 0, 0] = True  # only the sign bit
    got = rows_to_int64(bits)
    assert got == [bits_to_int64(b) for b in bits]
    assert got[0] == -1 and got[1] == 0 and got[2] == -(1 << 63)


def test_hash_stage_batch_equals_per_sample(zoo_samples: list) -> None:
    stage = HashStage()
    decoded = [decode_image(s.image) for s in zoo_samples]
    batch = stage.prepare_batch(zoo_samples, decoded)
    assert [tuple(r) for r in batch] == [
        stage.prepare(s, d) for s, d in zip(zoo_samples, decoded, strict=True)
    ]
    for row, d in zip(batch, decoded, strict=True):
        if d.image is None:
            assert row == (None,) * len(HashStage.columns)
        else:
            assert row[0] == bits_to_int64(imagehash.phash(d.image).hash)
            assert row[2] == pixel_hash(d.image)
            assert len(row[3]) == 32 * 32 * 3
            mirror = d.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            assert row[5] == bits_to_int64(imagehash.phash(mirror).hash)
    assert sum(d.image is None for d in decoded) >= 1  # the zoo's broken files are covered


@pytest.fixture(scope="module")
def clip() -> LoadedClip:
    return load_clip("bundled:world-clip")


def test_batch_preprocess_equals_stacked_per_image(clip: LoadedClip) -> None:
    rng = np.random.default_rng(3)
    ims = [
        *_images(),
        Image.fromarray(rng.integers(0, 256, (10, 2000, 3), dtype=np.uint8)),  # cut to 16:1
        Image.fromarray(photo_like(90, 70)).convert("L"),  # converted to RGB by the steps
    ]
    fast = clip.preprocess_batch(ims)
    assert (
        clip._batch_preprocess is not None and clip._batch_preprocess._split is not None
    )  # the batched path, not the fallback
    slow = torch.stack([clip.preprocess(im) for im in ims])
    assert fast.shape == slow.shape == (len(ims), 3, 64, 64)
    assert torch.equal(fast, slow) and fast.is_contiguous()
    emb = clip.encode_images(ims)
    assert np.array_equal(emb, clip.encode_pixels(slow))
    # The embedding path runs the conv tower channels-last (faster on CPU): within 1e-5 of
    # the model's own encode_image, and the same on every call.
    with torch.inference_mode():
        ref = clip.model.encode_image(slow, normalize=True).numpy()
    assert np.abs(emb - ref).max() < 1e-5
    assert clip._fast_visual is not False  # the bundled ResNet tower takes the fast path


def test_unknown_preprocess_shape_falls_back_per_image() -> None:
    def prep(im: Image.Image) -> torch.Tensor:
        return torch.full((1, 2, 2), float(im.size[0]))

    bp = BatchPreprocess(prep)
    assert bp._split is None
    out = bp([Image.new("RGB", (3, 3)), Image.new("RGB", (5, 3))])
    assert out[:, 0, 0, 0].tolist() == [3.0, 5.0]
