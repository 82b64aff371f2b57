"""The overlapped pipeline scores exactly what a plain one-batch-at-a-time loop scores."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from clipaudit.curate.engines.local import _prepared_batches, model_threads
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.stages import Batch, StageContext, make_stages
from clipaudit.data import Sample, open_dataset
from clipaudit.data.decode import decode_image
from clipaudit.data.formats import batched, write_dataset
from clipaudit.world import write_world

STAGES = ["quality", "hashes", "alignment"]


def _samples(n: int) -> list[Sample]:
    return [Sample(id=f"s{i}", image=None, caption=f"c{i}") for i in range(n)]


def test_batches_come_back_in_order_with_deep_lookahead() -> None:
    samples = _samples(103)

    def slow_batches() -> Iterator[list[Sample]]:
        for b in batched(iter(samples), 10):
            time.sleep(0.002)  # let pool threads race for the reader
            yield b

    with ThreadPoolExecutor(3) as pool:
        got = [b.samples for b, _ in _prepared_batches(slow_batches(), [], pool, 5)]
    assert [s.id for b in got for s in b] == [s.id for s in samples]
    assert [len(b) for b in got] == [10] * 10 + [3]


def test_a_read_error_surfaces_in_order_and_nothing_hangs() -> None:
    def failing() -> Iterator[list[Sample]]:
        yield _samples(4)
        yield _samples(4)
        raise OSError("shard cut short")

    with ThreadPoolExecutor(2) as pool:
        it = _prepared_batches(failing(), [], pool, 3)
        assert len(next(it)[0].samples) == 4
        assert len(next(it)[0].samples) == 4
        with pytest.raises(OSError, match="cut short"):
            next(it)
    assert threading.active_count() < 10


def test_model_threads_is_restored() -> None:
    import torch

    before = torch.get_num_threads()
    with model_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with model_threads(None):
        assert torch.get_num_threads() == before


def test_exif_rotation_in_place_gives_the_displayed_pixels(zoo: dict) -> None:
    data = zoo["exif_rotated"][0]
    d = decode_image(data)
    ref = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert d.image is not None and d.image.size == ref.size == (80, 120)
    assert d.stored_size == (120, 80)
    assert d.image.tobytes() == ref.convert("RGB").tobytes()


def _reference_signals(data: Path, batch_size: int) -> tuple[list[dict], np.ndarray]:
    """Signals and image embeddings from a plain loop: one thread, per-sample prepare."""
    ds = open_dataset(data)
    stages = make_stages(STAGES)
    ctx = StageContext(model_spec="random:clipaudit-tiny", batch_size=batch_size)
    for st in stages:
        st.setup(ctx)
    rows: list[dict] = []
    embs = []
    for shard in ds.shards():
        for st in stages:
            st.begin_shard()
        for samples in batched(ds.read_shard(shard), batch_size):
            decoded = [decode_image(s.image) for s in samples]
            batch = Batch(samples, decoded)
            for st in stages:
                batch.prepared[st.name] = [
                    st.prepare(s, d) for s, d in zip(samples, decoded, strict=True)
                ]
            cols: dict[str, list] = {}
            for st in stages:
                cols.update(st.process(batch))
            embs.append(batch.arrays["img_emb"])
            rows += [{c: v[i] for c, v in cols.items()} for i in range(len(samples))]
    return rows, np.concatenate(embs)


def test_pipeline_signals_equal_a_plain_loop(tmp_path: Path, zoo_samples: list) -> None:
    write_world(tmp_path / "w", n=48, format="webdataset", shard_size=48)
    # World images plus every kind of file the zoo holds (broken ones included), in shards
    # whose sizes are not a multiple of the batch.
    samples = list(open_dataset(tmp_path / "w" / "data")) + zoo_samples
    data = tmp_path / "mixed"
    write_dataset(samples, data, "webdataset", shard_size=25)
    cfg = CurateConfig(
        dataset=str(data),
        out=str(tmp_path / "run"),
        stages=STAGES,
        model="random:clipaudit-tiny",
        batch_size=8,
        decode_threads=3,
        gates=False,
    )
    curate(cfg)
    run = tmp_path / "run"
    got = []
    for f in sorted((run / "signals").glob("*.parquet")):
        got += pq.read_table(f).drop(["id", "row"]).to_pylist()
    ref, ref_emb = _reference_signals(data, 8)
    assert len(got) == len(ref) == len(samples)
    assert got == ref
    assert any(r["error"] for r in ref) and any(r["phash"] is not None for r in ref)
    emb = np.concatenate([np.load(f) for f in sorted((run / "img_emb").glob("*.npy"))])
    assert emb.tobytes() == ref_emb.tobytes()


def test_batches_close_before_the_pixel_budget_is_passed() -> None:
    costs = [5, 5, 5, 20, 1, 1, 1, 1]
    samples = _samples(len(costs))
    cost = {s.id: c for s, c in zip(samples, costs, strict=True)}
    got = [[s.id for s in b] for b in batched(iter(samples), 3, lambda s: cost[s.id], 10)]
    # Within budget (5 + 5), then one over it alone (20), then by count (3).
    assert got == [["s0", "s1"], ["s2"], ["s3"], ["s4", "s5", "s6"], ["s7"]]


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


def test_held_pixels_reads_the_header_and_caps_a_clip() -> None:
    from clipaudit.data.decode import MAX_PIXELS, held_pixels
    from clipaudit.data.video import MAX_FRAME_SIDE, SamplingPolicy

    assert held_pixels(Sample("a", _jpeg(3000, 2000))) == 6_000_000
    assert held_pixels(Sample("b", b"not an image at all")) == 0
    assert held_pixels(Sample("c", None)) == 0
    # A header declaring more than decode accepts costs nothing: decode refuses it unread.
    big = io.BytesIO()
    Image.new("1", (20_000, 5_000)).save(big, "PNG")
    assert MAX_PIXELS < 20_000 * 5_000
    assert held_pixels(Sample("d", big.getvalue())) == 0
    clip = Sample("e", b"\x00" * 64, image_ext="mp4")
    assert held_pixels(clip) == 8 * MAX_FRAME_SIDE**2
    assert held_pixels(clip, SamplingPolicy.parse("fps:2")) == 32 * MAX_FRAME_SIDE**2


def test_large_images_are_scored_in_smaller_batches_with_the_same_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import clipaudit.curate.engines.local as local

    samples = [Sample(f"p{i}", _jpeg(1500 + 10 * i, 1000), caption=f"photo {i}") for i in range(7)]
    data = tmp_path / "big.parquet"
    write_dataset(samples, data, "parquet")
    sizes: list[int] = []
    real = local.prepare_batch

    def spy(batch: list[Sample], *args: object) -> object:
        sizes.append(len(batch))
        return real(batch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(local, "prepare_batch", spy)
    tables = {}
    for name, mp in (("budget", 4), ("default", CurateConfig.batch_megapixels)):
        sizes.clear()
        cfg = CurateConfig(
            dataset=str(data),
            out=str(tmp_path / name),
            stages=["quality", "hashes"],
            batch_size=64,
            batch_megapixels=mp,
            gates=False,
        )
        curate(cfg)
        tables[name] = pq.read_table(tmp_path / name / "signals" / "shard-00000.parquet")
        settings = json.loads((tmp_path / name / "run.json").read_text())["settings"]
        if name == "budget":
            # 1.5 megapixels each: two to a batch of 4, the last one alone.
            assert sizes == [2, 2, 2, 1]
            assert settings["batch_megapixels"] == 4
        else:
            assert sizes == [7]
            assert "batch_megapixels" not in settings  # earlier runs keep their fingerprint
    assert tables["budget"].num_rows == 7
    assert tables["budget"].equals(tables["default"])
