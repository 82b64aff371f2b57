from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.data import FORMATS, Sample, detect_format, open_dataset, write_dataset
from clipaudit.data.info import dataset_info
from clipaudit.errors import DatasetError, DuplicateIdError

ALL = ("webdataset", "parquet", "imagefolder", "hf")


def _key(s: Sample) -> tuple:
    return (s.id, s.caption, s.url, s.meta, s.image)


def test_registry_lists_the_four_formats() -> None:
    assert set(ALL) <= set(FORMATS)


@pytest.mark.parametrize("fmt", ALL)
def test_write_then_detect_and_info(tmp_path: Path, zoo_samples: list[Sample], fmt: str) -> None:
    out = tmp_path / fmt
    write_dataset(zoo_samples, out, fmt, shard_size=4)
    assert detect_format(out) == fmt
    info = dataset_info(open_dataset(out))
    assert info.format == fmt
    assert info.samples == len(zoo_samples)
    assert info.ids == [s.id for s in zoo_samples]


def test_info_reports_the_same_ids_in_every_format(
    tmp_path: Path, zoo_samples: list[Sample]
) -> None:
    seen = {}
    for fmt in ALL:
        write_dataset(zoo_samples, tmp_path / fmt, fmt, shard_size=5)
        info = dataset_info(open_dataset(tmp_path / fmt))
        seen[fmt] = (info.samples, sorted(info.ids))
    assert len(set(map(repr, seen.values()))) == 1, seen
    assert seen["parquet"][0] == 11


@pytest.mark.parametrize("src", ALL)
@pytest.mark.parametrize("dst", ALL)
def test_round_trip_between_formats(
    tmp_path: Path, zoo_samples: list[Sample], src: str, dst: str
) -> None:
    write_dataset(zoo_samples, tmp_path / "a", src, shard_size=3)
    first = list(open_dataset(tmp_path / "a"))
    write_dataset(first, tmp_path / "b", dst, shard_size=4)
    second = list(open_dataset(tmp_path / "b"))
    assert [_key(s) for s in first] == [_key(s) for s in zoo_samples]
    assert [_key(s) for s in second] == [_key(s) for s in zoo_samples]


def test_hf_dataset_object_in_python_api(zoo_samples: list[Sample]) -> None:
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": s.image, "path": None} for s in zoo_samples],
            "text": [s.caption for s in zoo_samples],
            "label": [i % 3 for i in range(len(zoo_samples))],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "text": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["a", "b", "c"]),
            }
        ),
    )
    got = list(open_dataset(ds))
    assert [s.image for s in got] == [s.image for s in zoo_samples]
    assert [s.caption for s in got] == [s.caption for s in zoo_samples]
    assert got[4].meta == {"label": 1, "label_name": "b"}
    # No id column: ids are content hashes, stable across reads and unique.
    assert [s.id for s in got] == [s.id for s in open_dataset(ds)]
    assert len({s.id for s in got}) == len(got)
    # A label named as the caption column is its class name, not its index ("1").
    from clipaudit.data import ReadOptions

    named = list(open_dataset(ds, options=ReadOptions(caption_column="label")))
    assert [s.caption for s in named[:4]] == ["a", "b", "c", "a"]


def test_duplicate_ids_are_an_error_naming_them(tmp_path: Path, zoo_samples: list[Sample]) -> None:
    zoo_samples[3].id = zoo_samples[7].id
    for fmt in ("parquet", "imagefolder"):
        write_dataset(zoo_samples, tmp_path / fmt, fmt, shard_size=4)
        with pytest.raises(DuplicateIdError) as err:
            dataset_info(open_dataset(tmp_path / fmt))
        assert repr(zoo_samples[7].id) in str(err.value)


def test_webdataset_duplicate_key_in_one_shard(tmp_path: Path) -> None:
    import io
    import tarfile

    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("a.txt", "b.txt", "a.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DuplicateIdError, match="'a'"):
        list(open_dataset(path))
    # The same key twice in a row: the second image and caption were skipped, one sample
    # lost while the run said its counts added up.
    path = tmp_path / "y.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("k1.jpg", "k1.txt", "k1.jpg", "k1.txt", "k2.jpg", "k2.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DuplicateIdError, match="'k1'"):
        list(open_dataset(path))


def test_webdataset_reads_img2dataset_layout_and_braces(tmp_path: Path) -> None:
    import io
    import json
    import tarfile

    for n in range(2):
        with tarfile.open(tmp_path / f"{n:05d}.tar", "w") as tar:
            for k in range(3):
                key = f"{n:05d}{k:04d}"
                meta = {
                    "url": f"http://x/{key}",
                    "caption": "c",
                    "key": key,
                    "status": "success",
                    "width": 10,
                }
                for ext, data in (
                    ("jpg", b"\xff\xd8\xff"),
                    ("txt", f"cap {key}".encode()),
                    ("json", json.dumps(meta).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    ds = open_dataset(str(tmp_path / "{00000..00001}.tar"))
    got = list(ds)
    assert [s.id for s in got] == [
        "000000000",
        "000000001",
        "000000002",
        "000010000",
        "000010001",
        "000010002",
    ]
    assert got[1].caption == "cap 000000001"
    assert got[1].url == "http://x/000000001"
    assert got[1].meta == {"status": "success", "width": 10}


def test_imagefolder_without_metadata_uses_paths_and_sidecar_captions(
    tmp_path: Path, zoo: dict
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.jpg").write_bytes(zoo["jpeg"][0])
    (tmp_path / "sub" / "x.txt").write_text("a sidecar caption\n")
    (tmp_path / "y.png").write_bytes(zoo["gray"][0])
    got = list(open_dataset(tmp_path))
    assert [(s.id, s.caption) for s in got] == [("sub/x.jpg", "a sidecar caption"), ("y.png", None)]


def test_imagefolder_refuses_paths_outside_the_folder(tmp_path: Path, zoo: dict) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(zoo["jpeg"][0])
    (root / "ok.jpg").write_bytes(zoo["jpeg"][0])
    (root / "metadata.csv").write_text(
        "file_name,caption\nok.jpg,fine\n../secret.jpg,escape\n/etc/passwd,abs\nnope.jpg,gone\n"
    )
    got = {s.id: s for s in open_dataset(root)}
    assert got["ok.jpg"].error is None and got["ok.jpg"].image == zoo["jpeg"][0]
    assert got["../secret.jpg"].error == "unsafe_path" and got["../secret.jpg"].image is None
    assert got["/etc/passwd"].error == "unsafe_path"
    assert got["nope.jpg"].error == "missing_image"
    assert len(got) == 4


def test_a_hub_snapshot_of_links_reads_with_follow_symlinks(tmp_path: Path, zoo: dict) -> None:
    """snapshot_download links every file of a snapshot to ../../blobs/<sha>: all its samples
    were unsafe_path, with no way to read them. --follow-symlinks reads the links (off by
    default: a folder unpacked from an untrusted archive can link to any file); a link whose
    target is gone is missing_image (it was left out of the run without a reason), and
    names in the metadata still may not leave the folder."""
    import json

    from clipaudit.cli_options import DatasetArgs
    from clipaudit.data import ReadOptions

    blobs = tmp_path / "hub" / "blobs"
    snap = tmp_path / "hub" / "snapshots" / "rev1"
    (snap / "train").mkdir(parents=True)
    blobs.mkdir()
    for name, data in (("a.jpg", zoo["jpeg"][0]), ("b.png", zoo["gray"][0])):
        (blobs / f"sha-{name}").write_bytes(data)
        (snap / "train" / name).symlink_to(Path("../../../blobs") / f"sha-{name}")
    rows = [{"file_name": "a.jpg", "text": "a"}, {"file_name": "b.png", "text": "b"},
            {"file_name": "../../../blobs/sha-a.jpg", "text": "escape"}]  # fmt: skip
    (blobs / "sha-meta").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (snap / "train" / "metadata.jsonl").symlink_to(Path("../../../blobs/sha-meta"))
    safe = {s.id: s.error for s in open_dataset(snap / "train")}
    assert set(safe) == {"a.jpg", "b.png", "../../../blobs/sha-a.jpg"}
    assert set(safe.values()) == {"unsafe_path"}
    follow = ReadOptions(extra={"follow_symlinks": True})
    got = {s.id: s for s in open_dataset(snap / "train", options=follow)}
    assert got["a.jpg"].image == zoo["jpeg"][0] and got["b.png"].image == zoo["gray"][0]
    assert got["../../../blobs/sha-a.jpg"].error == "unsafe_path"
    assert DatasetArgs(follow_symlinks=True).read_options().extra == {"follow_symlinks": True}
    assert DatasetArgs().read_options().extra == {}  # runs read without it keep their id
    # Without metadata: a link whose target is gone is a sample with a reason.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "ok.jpg").write_bytes(zoo["jpeg"][0])
    (plain / "gone.jpg").symlink_to(plain / "deleted.jpg")
    (plain / "out.jpg").symlink_to(tmp_path / "nowhere.jpg")
    got_plain = {s.id: s.error for s in open_dataset(plain)}
    assert got_plain == {"gone.jpg": "missing_image", "ok.jpg": None, "out.jpg": "unsafe_path"}


def test_parquet_with_path_column_and_custom_names(tmp_path: Path, zoo: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.webp").write_bytes(zoo["webp"][0])
    table = pa.table(
        {
            "filepath": ["img/a.webp", "img/missing.jpg"],
            "alt_text": ["x", None],
            "score": [0.5, float("nan")],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    from clipaudit.data import ReadOptions

    ds = open_dataset(tmp_path / "t.parquet", options=ReadOptions(caption_column="alt_text"))
    got = list(ds)
    assert got[0].id == "img/a.webp" and got[0].image == zoo["webp"][0]
    assert got[0].caption == "x" and got[0].meta == {"score": 0.5}
    assert got[1].error == "missing_image" and got[1].caption is None
    with pytest.raises(DatasetError, match="'nope' is not in"):
        open_dataset(tmp_path / "t.parquet", options=ReadOptions(caption_column="nope"))


def test_unknown_format_and_missing_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Unknown dataset format 'zip'; use one of: hf, "):
        open_dataset(tmp_path, format="zip")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(DatasetError, match="Cannot tell the format"):
        open_dataset(tmp_path)


def test_hf_writes_samples_that_arrive_as_a_generator(tmp_path: Path) -> None:
    """The CLI hands writers a generator; datasets pickles its row source, so the hf writer
    must not close over the samples themselves."""
    import os
    import stat

    samples = [
        Sample(id=f"g{i}", image=bytes([i]) * 10, image_ext="jpg", caption=f"c{i}", meta={"k": i})
        for i in range(7)
    ]
    write_dataset((s for s in samples), tmp_path / "hf", "hf", shard_size=3)
    got = list(open_dataset(str(tmp_path / "hf")))
    assert [(s.id, s.image, s.caption, s.meta) for s in got] == [
        (s.id, s.image, s.caption, s.meta) for s in samples
    ]
    # Written files are readable by others as open() would make them, not owner-only.
    umask = os.umask(0)
    os.umask(umask)
    written = tmp_path / "out.bin"
    from clipaudit.data.formats import atomic_write_bytes

    atomic_write_bytes(written, b"x")
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


def test_a_row_repeated_in_another_file_is_an_exact_duplicate_not_a_stopped_run(
    tmp_path: Path,
) -> None:
    """Content-hash ids are made per shard; a crawl that saw one picture in two parquet
    files gave both rows one id, and decide stopped with "Duplicate sample ids" after the
    whole dataset was scored."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from clipaudit.curate.pipeline import CurateConfig, curate

    def png(seed: int) -> bytes:
        px = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "PNG")
        return buf.getvalue()

    images = [png(k) for k in range(3)]
    rows = [{"image": b, "caption": f"photo {i}", "url": f"https://e.org/{i}"} for i, b in
            enumerate(images)]  # fmt: skip
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "d" / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:]), tmp_path / "d" / "b.parquet")
    ds = open_dataset(tmp_path / "d")
    ids = [[s.id for s in ds.read_shard(k)] for k in ds.shards()]
    assert [len(x) for x in ids] == [2, 2] and len({*ids[0], *ids[1]}) == 4
    assert ids[0][1].endswith("-s0") and ids[1][0].endswith("-s1")
    assert ids[0][1][:-3] == ids[1][0][:-3]  # the same content hash
    # One file: plain content hashes, a repeat inside it "-2", as before.
    single = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist([*rows, rows[0]]), single)
    one = [s.id for s in open_dataset(single).read_shard(open_dataset(single).shards()[0])]
    assert len(one[0]) == 20 and one[3] == f"{one[0]}-2"
    curate(CurateConfig(dataset=str(tmp_path / "d"), out=tmp_path / "r", stages=["quality",
                        "hashes"], gates=False))  # fmt: skip
    dec = pq.read_table(tmp_path / "r" / "decisions.parquet").to_pylist()
    assert len(dec) == 4
    assert sorted(d["decision"] for d in dec) == ["drop", "keep", "keep", "keep"]
    assert [d["reasons"] for d in dec if d["decision"] == "drop"] == [["exact_duplicate"]]


def _tar(path: Path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_caption_bytes_in_other_encodings_are_read_as_text(tmp_path: Path, zoo: dict) -> None:
    """A UTF-8 byte-order mark stayed in the caption, UTF-16 came out as NULs between the
    letters, Windows-1252 as U+FFFD for every accent (.txt members and sidecars alike)."""
    jpeg = zoo["jpeg"][0]
    texts = {
        "bom": b"\xef\xbb\xbfa red bicycle",
        "utf16": "un vélo rouge".encode("utf-16"),
        "cp1252": "un vélo rouge – 5 €".encode("cp1252"),
        "utf8": "un vélo rouge".encode(),
    }
    (tmp_path / "wds").mkdir()
    members = {}
    for key, text in texts.items():
        members |= {f"{key}.jpg": jpeg, f"{key}.txt": text}
    _tar(tmp_path / "wds" / "00000.tar", members)
    folder = tmp_path / "if"
    folder.mkdir()
    for key, text in texts.items():
        (folder / f"{key}.jpg").write_bytes(jpeg)
        (folder / f"{key}.txt").write_bytes(text)
    want = {
        "bom": "a red bicycle",
        "utf16": "un vélo rouge",
        "cp1252": "un vélo rouge – 5 €",
        "utf8": "un vélo rouge",
    }
    got = {s.id: s.caption for s in open_dataset(tmp_path / "wds")}
    assert got == want
    got = {s.id.removesuffix(".jpg"): s.caption for s in open_dataset(folder)}
    assert got == want


def test_a_named_caption_column_that_is_not_there_is_an_error_in_every_format(
    tmp_path: Path, zoo: dict
) -> None:
    """--caption-column was ignored by the WebDataset reader (captions came from .txt
    whatever was named) and, in an image folder, made every sample captionless."""
    from clipaudit.data.formats import ReadOptions

    jpeg = zoo["jpeg"][0]
    (tmp_path / "wds").mkdir()
    _tar(
        tmp_path / "wds" / "00000.tar",
        {
            "a.jpg": jpeg,
            "a.txt": b"from txt",
            "a.caption": b"from the caption member",
            "a.json": b'{"alt": "from json", "page": "https://e.org/a"}',
        },
    )
    with pytest.raises(DatasetError, match=r"--caption-column 'nope' is not in") as err:
        open_dataset(tmp_path / "wds", options=ReadOptions(caption_column="nope"))
    assert "member extensions caption, jpg, json, txt; json fields alt, page" in str(err.value)
    with pytest.raises(DatasetError, match="--url-column 'link'"):
        open_dataset(tmp_path / "wds", options=ReadOptions(url_column="link"))
    with pytest.raises(DatasetError, match="drop --image-column"):
        open_dataset(tmp_path / "wds", options=ReadOptions(image_column="png"))
    # A member extension or a json field, as named.
    (s,) = open_dataset(tmp_path / "wds", options=ReadOptions(caption_column="caption"))
    assert s.caption == "from the caption member"
    (s,) = open_dataset(tmp_path / "wds", options=ReadOptions(caption_column="alt",
                                                              url_column="page"))  # fmt: skip
    assert (s.caption, s.url) == ("from json", "https://e.org/a")
    (s,) = open_dataset(tmp_path / "wds")
    assert s.caption == "from txt"
    folder = tmp_path / "if"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg)
    with pytest.raises(DatasetError, match=r"no metadata\.jsonl or metadata\.csv"):
        open_dataset(folder, options=ReadOptions(caption_column="descr"))
    (folder / "metadata.jsonl").write_text('{"file_name": "a.jpg", "descr": "x"}\n')
    with pytest.raises(DatasetError, match="the fields descr, file_name"):
        open_dataset(folder, options=ReadOptions(caption_column="nope"))
    (s,) = open_dataset(folder, options=ReadOptions(caption_column="descr"))
    assert s.caption == "x"


@pytest.mark.parametrize("fmt", ["webdataset", "parquet", "imagefolder"])
def test_an_empty_dataset_is_written_as_one_readable_empty_shard(tmp_path: Path, fmt: str) -> None:
    """A kept dataset (or a route's) that kept nothing was an empty folder in WebDataset and
    parquet, which no reader could tell the format of."""
    written = write_dataset([], tmp_path / "out", fmt)
    assert len(written) == 1
    ds = open_dataset(tmp_path / "out")
    assert ds.format == fmt and list(ds) == []
    assert dataset_info(ds).samples == 0


def test_a_list_of_captions_gives_its_first(tmp_path: Path) -> None:
    """A COCO-style column of several captions per image became the caption "['a', 'b']"."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from clipaudit.data.formats import clean_text

    assert clean_text(["", "a dog on a sofa", "a sofa"]) == "a dog on a sofa"
    assert clean_text(np.array(["two cats", "cats"])) == "two cats"
    assert clean_text([]) is None and clean_text([None, " "]) is None
    assert clean_text(7) == "7" and clean_text("plain") == "plain"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    pq.write_table(
        pa.table({"image": [buf.getvalue()] * 2, "caption": [["a red cup", "a cup"], ["x"]]}),
        tmp_path / "d.parquet",
    )
    assert [s.caption for s in open_dataset(tmp_path / "d.parquet")] == ["a red cup", "x"]


def test_writing_hf_draws_no_progress_bars(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A kept hf dataset printed datasets' own "Generating train split" and "Saving the
    dataset" bars into curate's output; the caller's bar setting is left as it was."""
    import datasets

    from clipaudit.data.example import example_samples

    write_dataset(example_samples(3), tmp_path / "hf", "hf", shard_size=1000)
    said = capfd.readouterr()
    assert "Saving the dataset" not in said.err + said.out
    assert "Generating train split" not in said.err + said.out
    assert not datasets.are_progress_bars_disabled()
    assert len(list(open_dataset(tmp_path / "hf"))) == 3


def test_a_multi_dot_tar_member_is_read_by_its_last_extension(tmp_path: Path) -> None:
    """ "a.b.c.jpg" is key "a" with extension "b.c.jpg" (WebDataset's first-dot rule); its
    image was reported missing although it was in the tar."""
    import io
    import tarfile

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    path = tmp_path / "m.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("a.b.c.jpg", jpeg), ("a.txt", b"a cup"), ("d.jpg", jpeg)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = {s.id: s for s in open_dataset(path)}
    assert got["a"].image == jpeg and got["a"].image_ext == "jpg" and got["a"].error is None
    assert got["a"].caption == "a cup" and got["d"].image == jpeg


def test_an_empty_hf_dataset_is_written_and_reads_back(tmp_path: Path) -> None:
    """An empty kept set (or route) in hf was a traceback ("Instruction 'train' corresponds to
    no data!") after decide had rewritten its decisions, leaving the previous kept/ there."""
    import datasets

    write_dataset([], tmp_path / "empty", "hf", shard_size=1000)
    assert list(open_dataset(tmp_path / "empty")) == []
    loaded = datasets.load_from_disk(str(tmp_path / "empty"))
    assert loaded.num_rows == 0 and "image" in loaded.features and "caption" in loaded.features


def test_a_tar_made_on_a_mac_and_a_hard_link_read_as_their_samples(
    tmp_path: Path, zoo: dict
) -> None:
    """bsdtar on macOS puts an AppleDouble ``._name`` before each file (and Finder a
    ``.DS_Store``): the run stopped with "Duplicate sample ids … ''". A hard link repeating a
    member of its own sample made that whole sample unsafe_path."""
    import io
    import tarfile

    jpeg = zoo["jpeg"][0]
    with tarfile.open(tmp_path / "mac.tar", "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for k in range(2):
            add(f"./._{k}.jpg", b"\x00\x05\x16\x07 AppleDouble")
            add(f"./{k}.jpg", jpeg)
            add(f"./{k}.txt", f"photo {k}".encode())
        add(".DS_Store", b"\x00\x00\x00\x01Bud1")
        add("__MACOSX/._s2.jpg", b"\x00\x05\x16\x07")
        add("s2.jpg", jpeg)
        add("s2.txt", b"a linked photo")
        link = tarfile.TarInfo("s2.png")
        link.type, link.linkname = tarfile.LNKTYPE, "s2.jpg"
        tar.addfile(link)
    got = {s.id: s for s in open_dataset(tmp_path / "mac.tar")}
    assert sorted(got) == ["0", "1", "s2"]
    assert all(s.error is None and s.image == jpeg for s in got.values())
    assert got["s2"].caption == "a linked photo" and got["1"].caption == "photo 1"


def test_a_text_column_named_image_is_not_taken_for_image_bytes(tmp_path: Path, zoo: dict) -> None:
    """A parquet whose ``image`` column holds file paths (LLaVA-style exports), or urls
    beside a ``jpg`` bytes column, had every sample missing_image: the guess took the
    name, whatever it held. A guessed image column holds bytes; a text one is paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a" / "imgs").mkdir(parents=True)
    (tmp_path / "a" / "imgs" / "0.jpg").write_bytes(zoo["jpeg"][0])
    pq.write_table(
        pa.table({"image": ["imgs/0.jpg"], "caption": ["a photo"]}), tmp_path / "a" / "x.parquet"
    )
    (s,) = list(open_dataset(tmp_path / "a"))
    assert s.error is None and s.image == zoo["jpeg"][0] and s.caption == "a photo"
    (tmp_path / "b").mkdir()
    table = pa.table({"image": ["https://example.org/0.jpg"], "jpg": [zoo["jpeg"][0]]})
    pq.write_table(table, tmp_path / "b" / "x.parquet")
    (s,) = list(open_dataset(tmp_path / "b"))
    assert s.error is None and s.image == zoo["jpeg"][0]


def test_a_caption_that_is_a_struct_or_an_unlabelled_class_is_no_caption(
    tmp_path: Path, zoo: dict
) -> None:
    """{"en": "..."} became the caption "{'en': '...'}", and datasets' unlabelled class -1
    the caption '-1'."""
    import json

    import datasets

    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.jpg").write_bytes(zoo["jpeg"][0])
    row = {"file_name": "a.jpg", "caption": {"en": "a dict caption"}}
    (tmp_path / "f" / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    (s,) = list(open_dataset(tmp_path / "f"))
    assert s.caption is None
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": zoo["jpeg"][0], "path": None}] * 2, "label": [1, -1]},
        features=features,
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    from clipaudit.data import ReadOptions

    got = list(open_dataset(tmp_path / "hf", options=ReadOptions(caption_column="label")))
    assert [s.caption for s in got] == ["dog", None]


def test_bytes_and_times_in_meta_are_written_so_they_read_back() -> None:
    """A converted kept set wrote a binary column into ``meta`` as its Python repr
    ("b'\\\\xff\\\\xd8…'"), which nothing reads back; bytes are base64 now, times ISO 8601."""
    import base64
    import datetime
    import json

    from clipaudit.data.formats import meta_json

    mask = bytes(range(256))
    meta = {"mask": mask, "ts": datetime.datetime(2024, 5, 1, 12), "parts": [{"bytes": b"ab"}]}
    back = json.loads(meta_json(meta))
    assert base64.b64decode(back["mask"]["base64"]) == mask
    assert back["ts"] == "2024-05-01T12:00:00"
    assert base64.b64decode(back["parts"][0]["bytes"]["base64"]) == b"ab"


def test_a_hub_layout_with_its_parquet_under_data_is_detected(tmp_path: Path, zoo: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n")
    table = pa.table({"image": [zoo["jpeg"][0]], "caption": ["a photo"]})
    pq.write_table(table, tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    assert detect_format(tmp_path / "repo") == "parquet"
    (s,) = list(open_dataset(tmp_path / "repo"))
    assert s.image == zoo["jpeg"][0] and s.caption == "a photo"


def test_a_tars_other_members_reach_meta(tmp_path: Path, zoo: dict) -> None:
    """A sample's .cls member (and any other besides image, caption and json) was dropped
    by an --out-format conversion without a word: short text members go into meta under
    their extension, other ones are named."""
    import io
    import tarfile

    members = {
        "k.jpg": zoo["jpeg"][0],
        "k.txt": b"a photo",
        "k.cls": b"3\n",
        "k.json": b'{"url": "http://x/k.jpg"}',
        "k.mask.png": zoo["gray"][0],
    }
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (s,) = list(open_dataset(tmp_path / "s.tar"))
    assert s.meta == {"cls": "3", "members_not_in_meta": ["mask.png"]}
    assert s.url == "http://x/k.jpg" and s.caption == "a photo"
