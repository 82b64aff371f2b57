from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipaudit.data import Sample, decode_image, open_dataset, write_dataset
from clipaudit.data.example import example_samples
from clipaudit.errors import DatasetError
from clipaudit.models import load_clip
from clipaudit.models.embed import embed_dataset


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return load_clip("random:clipaudit-tiny")


def _read(out: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    n = len(list((out / "img_emb").glob("*.npy")))
    img = np.concatenate([np.load(out / "img_emb" / f"img_emb_{i}.npy") for i in range(n)])
    txt = np.concatenate([np.load(out / "text_emb" / f"text_emb_{i}.npy") for i in range(n)])
    rows: list[dict] = []
    for i in range(n):
        rows += pq.read_table(out / "metadata" / f"metadata_{i}.parquet").to_pylist()
    return img, txt, rows


def test_embed_1000_images_row_aligned_normalised_and_reproducible(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    samples = list(example_samples(1000, seed=3, size=64))
    write_dataset(samples, tmp_path / "ds", "webdataset", shard_size=300)
    ds = open_dataset(tmp_path / "ds")
    summary = embed_dataset(ds, tiny, tmp_path / "e1", batch_size=128, show_progress=False)
    assert summary.samples == 1000 and summary.images_embedded == 1000 and summary.shards == 4
    img, txt, rows = _read(tmp_path / "e1")
    assert img.dtype == np.float32 and img.shape == (1000, 128) and txt.shape == (1000, 128)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert [r["id"] for r in rows] == [s.id for s in samples]
    # Row i is sample i: embed a few samples on their own and compare.
    by_id = {s.id: s for s in samples}
    for i in (0, 299, 300, 777, 999):
        s = by_id[rows[i]["id"]]
        alone = tiny.encode_images([decode_image(s.image).image])[0]
        assert np.allclose(img[i], alone, atol=1e-5)
        assert np.allclose(txt[i], tiny.encode_texts([s.caption])[0], atol=1e-5)
    embed_dataset(ds, tiny, tmp_path / "e2", batch_size=128, show_progress=False)
    img2, txt2, _ = _read(tmp_path / "e2")
    assert np.array_equal(img, img2) and np.array_equal(txt, txt2)
    record = json.loads((tmp_path / "e1" / "embed.json").read_text())
    assert record["model"]["spec"] == "random:clipaudit-tiny"
    assert record["summary"]["samples"] == 1000


def test_bad_images_keep_their_row_with_a_reason(tmp_path: Path, zoo: dict, tiny) -> None:  # type: ignore[no-untyped-def]
    samples = [
        Sample(
            f"k{i}", zoo[name][0], caption=None if name == "webp" else name, image_ext=zoo[name][1]
        )
        for i, name in enumerate(["jpeg", "truncated", "webp", "corrupt", "cmyk"])
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    summary = embed_dataset(
        open_dataset(tmp_path / "ds"), tiny, tmp_path / "e", show_progress=False
    )
    img, txt, rows = _read(tmp_path / "e")
    assert [r["image_ok"] for r in rows] == [True, False, True, False, True]
    assert [r["error"] for r in rows] == [None, "decode_error", None, "decode_error", None]
    assert [r["text_ok"] for r in rows] == [True, True, False, True, True]
    assert np.all(img[[1, 3]] == 0) and np.all(txt[2] == 0)
    assert summary.errors == {"decode_error": 2}


def test_embed_refuses_a_non_empty_output(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    write_dataset(example_samples(3), tmp_path / "ds", "parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(DatasetError, match="is not empty"):
        embed_dataset(open_dataset(tmp_path / "ds"), tiny, tmp_path / "out", show_progress=False)
