"""A kept dataset in the input's own format keeps the input's columns and types."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipaudit.curate.config import CurateConfig
from clipaudit.curate.decide import decide_run
from clipaudit.curate.decide import writer as kept_writer
from clipaudit.curate.pipeline import curate
from clipaudit.data import ReadOptions


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "PNG")
    return buf.getvalue()


N = 6
BROKEN = 3  # this row's image bytes are not an image: dropped as decode_error


def _images() -> list[bytes]:
    return [b"not an image" if i == BROKEN else _png((40 * i, 90, 200 - 30 * i)) for i in range(N)]


def _table(offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "jpg": pa.array(_images(), pa.binary()),
            "caption": [f"a coloured square {i + offset}" for i in range(N)],
            "score": pa.array([i / 4 for i in range(N)], pa.float32()),
            "when": pa.array([1_700_000_000_000 + i for i in range(N)], pa.timestamp("ms")),
            "nested": [{"x": i, "y": [i, i + 1]} for i in range(N)],
            "tags": [["a", str(i)] for i in range(N)],
        }
    )


def _curate(data: Path, run: Path, **kw: object) -> None:
    curate(CurateConfig(dataset=str(data), out=str(run), stages=["quality"], **kw))  # type: ignore[arg-type]


def test_parquet_kept_rows_keep_every_column_and_type(tmp_path: Path) -> None:
    src = _table()
    pq.write_table(src, tmp_path / "in.parquet")
    _curate(tmp_path / "in.parquet", tmp_path / "run")
    [out] = sorted((tmp_path / "run" / "kept").glob("*.parquet"))
    got = pq.read_table(out)
    # The input's schema, with the run's ids in front (the input had no id column).
    assert got.schema.remove(0).equals(src.schema)
    assert got.schema.field(0).name == "id" and got.schema.field(0).type == pa.string()
    keep = [i for i in range(N) if i != BROKEN]
    assert got.drop(["id"]).equals(src.take(keep))
    decisions = pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()
    kept_ids = [d["id"] for d in decisions if d["decision"] in ("keep", "flag")]
    assert got.column("id").to_pylist() == kept_ids
    assert len(kept_ids) == N - 1


def test_parquet_with_its_own_ids_is_copied_with_no_column_added(tmp_path: Path) -> None:
    src = _table().append_column("key", pa.array([f"k{i}" for i in range(N)]))
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(src.slice(0, 4), data / "a.parquet")
    pq.write_table(src.slice(4), data / "b.parquet")
    _curate(data, tmp_path / "run")
    # Two input files, one output shard: rows from both, in input order, the same schema.
    got = pa.concat_tables(
        pq.read_table(f) for f in sorted((tmp_path / "run" / "kept").glob("*.parquet"))
    )
    assert got.schema.equals(src.schema)
    assert got.column("key").to_pylist() == ["k0", "k1", "k2", "k4", "k5"]


def test_parallel_write_keeps_the_schema_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        pq.write_table(_table(offset=10 * k), data / f"{k}.parquet")
    _curate(data, tmp_path / "run", decide=False)
    monkeypatch.setattr(kept_writer, "KEPT_SHARD_SIZE", 4)  # output shards across inputs
    decide_run(tmp_path / "run", "default", workers=2, gates=False)
    files = sorted((tmp_path / "run" / "kept").glob("*.parquet"))
    got = pa.concat_tables(pq.read_table(f) for f in files)
    assert len(files) == 4 and got.num_rows == 15
    assert got.schema.remove(0).equals(_table().schema)
    assert got.column("caption").to_pylist()[:5] == [
        f"a coloured square {i}" for i in range(N) if i != BROKEN
    ]


def test_another_out_format_or_images_by_path_get_the_canonical_columns(tmp_path: Path) -> None:
    from clipaudit.data import open_dataset

    pq.write_table(_table(), tmp_path / "in.parquet")
    _curate(tmp_path / "in.parquet", tmp_path / "run", out_format="webdataset")
    kept = list(open_dataset(tmp_path / "run" / "kept"))
    # Another format: the canonical sample, the other columns in its metadata.
    assert [s.caption for s in kept][:2] == ["a coloured square 0", "a coloured square 1"]
    assert kept[1].meta["score"] == 0.25 and kept[1].meta["tags"] == ["a", "1"]
    # Images by path: copied rows would name files the kept folder does not have.
    (tmp_path / "imgs").mkdir()
    for i, b in enumerate(_images()):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(b)
    captions = [f"a coloured square {i}" for i in range(N)]
    by_path = pa.table({"path": [f"imgs/{i}.png" for i in range(N)], "caption": captions})
    pq.write_table(by_path, tmp_path / "paths.parquet")
    _curate(tmp_path / "paths.parquet", tmp_path / "run2")
    [out] = sorted((tmp_path / "run2" / "kept").glob("*.parquet"))
    t = pq.read_table(out)
    assert "image" in t.column_names and t.num_rows == N - 1
    assert t.column("image").to_pylist()[0] == _images()[0]


def test_hf_kept_dataset_keeps_its_features(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["cat", "dog"]),
            "score": datasets.Value("float32"),
            "tags": datasets.Sequence(datasets.Value("string")),
        }
    )
    rows = {
        "image": [{"bytes": b, "path": None} for b in _images()],
        "caption": [f"a photo {i}" for i in range(N)],
        "label": [i % 2 for i in range(N)],
        "score": [i / 4 for i in range(N)],
        "tags": [["t", str(i)] for i in range(N)],
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    _curate(tmp_path / "hf", tmp_path / "run")
    kept = datasets.load_from_disk(str(tmp_path / "run" / "kept"))
    assert kept.features == datasets.Features({"id": datasets.Value("string"), **features})
    keep = [i for i in range(N) if i != BROKEN]
    assert kept["label"] == [i % 2 for i in keep]
    assert kept.features["label"].int2str(kept["label"][1]) == "dog"
    assert kept["tags"] == [["t", str(i)] for i in keep]
    assert kept[0]["image"].size == (64, 64)  # decoded on load, as the input's were


def test_webdataset_kept_samples_keep_every_member(tmp_path: Path) -> None:
    """A kept tar held only image, .txt and a rewritten .json: .cls labels, a second image
    and the stored json were lost."""
    import tarfile

    from tests.hostile.shards import TarBuilder

    images = _images()
    tar = TarBuilder(tmp_path / "00000.tar")
    for i in range(N):
        tar.file(f"k{i}.jpg", images[i])
        tar.file(f"k{i}.txt", f"a coloured square {i}".encode())
        tar.file(f"k{i}.cls", str(i % 3).encode())
        tar.file(f"k{i}.seg.png", _png((i, i, i)))
        tar.file(f"k{i}.json", f'{{"width": 64, "src": "s{i}"}}'.encode())
    tar.close()
    _curate(tmp_path / "00000.tar", tmp_path / "run")
    with (
        tarfile.open(tmp_path / "00000.tar") as src,
        tarfile.open(next((tmp_path / "run" / "kept").glob("*.tar"))) as out,
    ):
        want = {
            m.name: src.extractfile(m).read()  # type: ignore[union-attr]
            for m in src.getmembers()
            if not m.name.startswith(f"k{BROKEN}.")
        }
        got = {m.name: out.extractfile(m).read() for m in out.getmembers()}  # type: ignore[union-attr]
        names = [m.name for m in out.getmembers()]
    assert got == want
    assert names[:5] == ["k0.jpg", "k0.txt", "k0.cls", "k0.seg.png", "k0.json"]  # input order


def test_parquet_shards_of_other_schemas_and_exotic_types(tmp_path: Path) -> None:
    """Differing schemas: each file's own other columns reach meta (the first file's names
    were looked up in every row, so b's column y was lost). A file_name column beside image
    bytes no longer forces the canonical columns, and a fixed_shape_tensor column (an
    embedding) survives the copy (a Python round trip of the row crashed)."""
    from clipaudit.data import open_dataset

    data = tmp_path / "mixed"
    data.mkdir()
    base = _table().select(["jpg", "caption"])
    pq.write_table(base.append_column("x", pa.array(range(N))), data / "a.parquet")
    pq.write_table(
        base.append_column("y", pa.array([f"y{i}" for i in range(N)])), data / "b.parquet"
    )
    _curate(data, tmp_path / "run")
    kept = list(open_dataset(tmp_path / "run" / "kept"))
    assert [s.meta for s in kept][N - 1 :] == [{"y": f"y{i}"} for i in range(N) if i != BROKEN]
    assert kept[0].meta == {"x": 0}

    tensor_type = pa.fixed_shape_tensor(pa.float32(), [4])
    emb = pa.ExtensionArray.from_storage(
        tensor_type, pa.array([[float(i)] * 4 for i in range(N)], pa.list_(pa.float32(), 4))
    )
    src = (
        _table()
        .select(["jpg", "caption"])
        .append_column("file_name", pa.array([f"f{i}.png" for i in range(N)]))
    )
    src = src.append_column("emb", emb)
    pq.write_table(src, tmp_path / "t.parquet")
    _curate(tmp_path / "t.parquet", tmp_path / "run2")
    got = pq.read_table(next((tmp_path / "run2" / "kept").glob("*.parquet")))
    assert got.schema.remove(0).equals(src.schema)
    keep = [i for i in range(N) if i != BROKEN]
    assert got.drop(["id"]).equals(src.take(keep))


def test_webdataset_kept_members_keep_their_stored_names(tmp_path: Path) -> None:
    """Keys in sub-folders, non-ASCII keys and upper-case extensions were renamed
    (dir/s2 -> dir_s2, café -> caf_), so ids read back differently, and dir/k and dir_k
    swapped images."""
    import tarfile

    from clipaudit.data import open_dataset
    from tests.hostile.shards import TarBuilder

    names = ["dir/k", "dir_k", "café", "UP"]
    tar = TarBuilder(tmp_path / "00000.tar")
    for i, key in enumerate(names):
        ext = ("PNG", "TXT") if key == "UP" else ("png", "txt")
        tar.file(f"{key}.{ext[0]}", _png((30 * i, 200, 10 * i)))
        tar.file(f"{key}.{ext[1]}", f"a coloured square number {i}".encode())
    tar.close()
    _curate(tmp_path / "00000.tar", tmp_path / "run")
    out = next((tmp_path / "run" / "kept").glob("*.tar"))
    with tarfile.open(tmp_path / "00000.tar") as a, tarfile.open(out) as b:
        assert [m.name for m in b.getmembers()] == [m.name for m in a.getmembers()]
        for m in a.getmembers():
            assert b.extractfile(m.name).read() == a.extractfile(m).read()  # type: ignore[union-attr]
    decided = pq.read_table(tmp_path / "run" / "decisions.parquet").column("id").to_pylist()
    assert [s.id for s in open_dataset(out)] == decided == names


def test_hf_nested_images_and_the_dataset_info_are_kept(tmp_path: Path) -> None:
    """A Sequence of Image crashed the kept write (its cells came back as PIL objects), and
    the kept dataset lost the input's description, licence and citation."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "extra": datasets.Sequence(datasets.Image()),
        }
    )
    images = _images()
    rows = {
        "image": [{"bytes": b, "path": None} for b in images],
        "caption": [f"a photo {i}" for i in range(N)],
        "extra": [[{"bytes": _png((i, 1, 2)), "path": None}] * 2 for i in range(N)],
    }
    info = datasets.DatasetInfo(
        description="squares", license="cc-by-4.0", citation="@x{y}", features=features
    )
    ds = datasets.Dataset.from_dict(rows, features=features, info=info)
    ds.save_to_disk(str(tmp_path / "hf"))
    _curate(tmp_path / "hf", tmp_path / "run")
    kept = datasets.load_from_disk(str(tmp_path / "run" / "kept"))
    assert kept.features == datasets.Features({"id": datasets.Value("string"), **features})
    assert (kept.info.license, kept.info.description, kept.info.citation) == (
        "cc-by-4.0",
        "squares",
        "@x{y}",
    )
    raw = kept.cast_column("extra", datasets.Sequence(datasets.Image(decode=False)))
    keep = [i for i in range(N) if i != BROKEN]
    assert [[c["bytes"] for c in r] for r in raw["extra"]] == [[_png((i, 1, 2))] * 2 for i in keep]


def test_empty_ids_in_the_input_are_the_run_ids_in_the_kept_rows(tmp_path: Path) -> None:
    """A null id got a generated id in the decisions, but its kept row kept the null: it
    could not be joined back. Text id columns now hold the run's ids (parquet, hf)."""
    datasets = pytest.importorskip("datasets")
    keys = ["k0", None, "  ", "k3", None, " k5 "]
    src = _table().append_column("key", pa.array(keys, pa.string()))
    pq.write_table(src, tmp_path / "in.parquet")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "key": datasets.Value("string"),
        }
    )
    rows = {
        "image": [{"bytes": b, "path": None} for b in _images()],
        "caption": [f"a photo {i}" for i in range(N)],
        "key": keys,
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    for name in ("in.parquet", "hf"):
        run = tmp_path / f"run-{name}"
        _curate(tmp_path / name, run, read=ReadOptions(id_column="key"))
        decisions = pq.read_table(run / "decisions.parquet").to_pylist()
        kept_ids = [d["id"] for d in decisions if d["decision"] in ("keep", "flag")]
        if name == "hf":
            got = datasets.load_from_disk(str(run / "kept"))["key"]
        else:
            [out] = sorted((run / "kept").glob("*.parquet"))
            got = pq.read_table(out).column("key").to_pylist()
        assert got == kept_ids, name
        assert got[0] == "k0" and got[-1] == " k5 " and None not in got, name


def test_a_folder_of_pandas_parquet_files_keeps_its_own_schema(tmp_path: Path) -> None:
    """pandas records each file's own RangeIndex bounds in its schema metadata, so a folder
    of ``df.to_parquet`` files never had one schema: the kept set fell back to the canonical
    columns and its timestamps and categories became JSON text in ``meta``."""
    import pandas as pd

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 40, 40)).save(buf, "PNG")
    (tmp_path / "ds").mkdir()
    for k, n in ((0, 5), (1, 3)):
        pd.DataFrame(
            {
                "id": [f"{k}-{i}" for i in range(n)],
                "image": [buf.getvalue()] * n,
                "ts": pd.Timestamp("2021-01-01", tz="UTC"),
                "label": pd.Categorical(["cat"] * n),
                "caption": [f"a red square number {i}" for i in range(n)],
            }
        ).to_parquet(tmp_path / "ds" / f"{k}.parquet")
    curate(CurateConfig(str(tmp_path / "ds"), str(tmp_path / "run"), rules="keep-all",
                        stages=["quality"], gates=False))  # fmt: skip
    kept = pd.read_parquet(tmp_path / "run" / "kept")
    assert len(kept) == 8 and "meta" not in kept.columns
    assert "UTC" in str(kept["ts"].dtype)
    assert isinstance(kept["label"].dtype, pd.CategoricalDtype)
