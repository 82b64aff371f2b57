"""A sample whose metadata is broken still has its image scored (issue: a broken ``.json``
must not carry an image past the duplicate or NSFW checks)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from clipaudit.curate.pipeline import CurateConfig, curate
from tests.hostile.shards import TarBuilder


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    tar = TarBuilder(path)
    for name, data in members:
        tar.file(name, data)
    tar.close()


def test_broken_json_is_still_decoded_deduplicated_and_flagged(tmp_path: Path) -> None:
    same = _jpeg(1)
    data = tmp_path / "data"
    data.mkdir()
    _tar(
        data / "shard-000.tar",
        [
            ("a.jpg", same),
            ("a.txt", b"a photo of a red square on a table"),
            ("b.jpg", same),
            ("b.json", b"{not json"),
            ("b.txt", b"a photo of a red square on a table"),
            ("c.jpg", b"\xff\xd8\xff not a jpeg at all"),
            ("c.json", b"{not json either"),
            ("c.txt", b"a photo of a blue circle on a table"),
            ("d.jpg", _jpeg(2)),
            ("d.json", b"[1, 2"),
            ("d.txt", b"a photo of a green square on a table"),
        ],
    )
    stats = curate(
        CurateConfig(
            dataset=str(data), out=str(tmp_path / "run"), stages=["quality", "hashes"], gates=False
        )
    )
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()}
    assert list(rows) == ["a", "b", "c", "d"]
    # b: its image was decoded and hashed, so it is found to be a copy of a and dropped.
    assert rows["b"]["width"] == 96 and rows["b"]["phash"] is not None
    assert rows["b"]["decision"] == "drop" and rows["b"]["duplicate_of"] == "a"
    assert set(rows["b"]["reasons"]) == {"bad_metadata", "exact_duplicate"}
    # c: the image does not decode either: the fatal decode code wins, the row is an error.
    assert rows["c"]["decision"] == "error" and rows["c"]["reasons"] != ["bad_metadata"]
    assert rows["c"]["width"] is None
    # d: an otherwise clean sample with broken metadata is flagged (default pack), not dropped.
    assert rows["d"]["decision"] == "flag" and rows["d"]["reasons"] == ["bad_metadata"]
    assert rows["a"]["decision"] == "keep"
    assert stats["kept"] + stats["dropped"] + stats["errored"] == 4


def test_broken_metadata_does_not_count_against_the_decodable_share(tmp_path: Path) -> None:
    """Every image decodes; two of four samples' .json is broken. The input gate read the
    bad_metadata code as undecodable (observed 0.5) and failed curate."""
    data = tmp_path / "data"
    data.mkdir()
    members: list[tuple[str, bytes]] = []
    for k in range(4):
        members += [(f"s{k}.jpg", _jpeg(10 + k)), (f"s{k}.txt", b"a photo of a square on a table")]
        if k % 2:
            members.append((f"s{k}.json", b"{not json"))
    _tar(data / "shard-000.tar", members)
    pack = tmp_path / "pack.yaml"
    pack.write_text("name: p\nextends: default\ngates:\n  min_decodable_share: 1.0\n")
    stats = curate(
        CurateConfig(
            dataset=str(data), out=str(tmp_path / "run"), stages=["quality"], rules=str(pack)
        )
    )
    assert stats["gates"]["success"] is True, stats["gates"]
    assert stats["flagged"] == 2 and stats["by_reason"]["bad_metadata"] == 2


def test_a_parquet_meta_cell_that_is_not_json_is_bad_metadata(tmp_path: Path) -> None:
    import pyarrow as pa

    from clipaudit.data import open_dataset

    meta = ['{"licence": "CC-BY"}', "{not json", None, "  "]
    pq.write_table(
        pa.table(
            {
                "image": [_jpeg(20 + k) for k in range(4)],
                "caption": ["a photo of a square on a table"] * 4,
                "meta": meta,
            }
        ),
        tmp_path / "in.parquet",
    )
    got = list(open_dataset(tmp_path / "in.parquet"))
    assert [s.error for s in got] == [None, "bad_metadata", None, None]
    assert got[0].meta == {"licence": "CC-BY"} and got[1].meta == {"meta": "{not json"}
    assert got[1].image is not None  # the image is there and is scored
