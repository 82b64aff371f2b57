"""Hand-built tar shards, parquet files and image folders with hostile members and rows.

Each builder writes under ``root`` and returns a :class:`DatasetCase`: the dataset path and,
per sample id the dataset holds, the acceptable outcomes (``ok``, a reason code). Whole-run
cases (where the right answer is one clear error) have ``expect_run``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.hostile.images import OK, photo, save

JPEG = save(photo(), "JPEG")
PNG = save(photo(seed=1), "PNG")


@dataclass
class DatasetCase:
    name: str
    path: Path
    fmt: str
    expect: dict[str, frozenset[str]] = field(default_factory=dict)
    expect_run: frozenset[str] | None = None  # e.g. {"clear_error"} for the whole run
    must_mention: str | None = None  # text the clear error must contain (the bad value)


def ok() -> frozenset[str]:
    return frozenset({OK})


def codes(*c: str) -> frozenset[str]:
    return frozenset(c)


class TarBuilder:
    """Writes members in order, including links, devices and names tarfile would not make."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def file(self, name: str, data: bytes) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def special(self, name: str, kind: bytes, target: str = "") -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        self.tar.addfile(info)
        return self

    def close(self) -> Path:
        self.tar.close()
        return self.path


def tar_members(root: Path) -> DatasetCase:
    """SVG and non-image members, unsafe names, links and devices in one shard."""
    t = TarBuilder(root / "members.tar")
    expect: dict[str, frozenset[str]] = {}

    def sample(key: str, exp: frozenset[str], **parts: bytes) -> None:
        for ext, data in parts.items():
            t.file(f"{key}.{ext.replace('_', '.')}", data)
        expect[key] = exp

    sample("good", ok(), jpg=JPEG, txt=b"a good photo")
    sample(
        "svg_only",
        codes("missing_image"),
        svg=b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        txt=b"an svg",
    )
    sample("exe_only", codes("missing_image"), exe=b"MZ\x90\x00" + b"\x00" * 60, txt=b"exe")
    sample("html_only", codes("missing_image"), html=b"<html></html>", txt=b"html")
    sample("caption_only", codes("missing_image"), txt=b"no image at all")
    sample("json_only", codes("missing_image"), json=b'{"url": "https://example.org/x.jpg"}')
    sample("double_ext", ok(), seg_png=PNG, jpg=JPEG, txt=b"two images, first ext wins")
    sample("upper_ext", ok(), JPG=JPEG, txt=b"upper-case extension")
    sample("bad_json", codes("bad_metadata", OK), jpg=JPEG, json=b"{not json", txt=b"bad json")
    sample("json_list", ok(), jpg=JPEG, json=b"[1, 2, 3]", txt=b"json list")
    sample("json_key_int", ok(), jpg=JPEG, json=b'{"key": 5, "url": 7}', txt=b"odd types")
    # Unsafe names: the sample is kept in the books with unsafe_path, nothing is read.
    for key in (
        "../escape",
        "../../../../etc/passwd_like",
        "a/../../up",
        "/abs/path",
        "//double/slash",
    ):
        t.file(f"{key}.jpg", JPEG).file(f"{key}.txt", b"unsafe")
        expect[key] = codes("unsafe_path")
    t.file("\\\\server\\share.jpg", JPEG)
    expect["\\\\server\\share"] = codes("unsafe_path")
    t.file("C:\\windows.jpg", JPEG)
    expect["C:\\windows"] = codes("unsafe_path")
    # Links and devices: never followed, never opened.
    t.special("symlink.jpg", tarfile.SYMTYPE, "/etc/passwd").file("symlink.txt", b"symlink")
    expect["symlink"] = codes("unsafe_path")
    t.special("hardlink.jpg", tarfile.LNKTYPE, "good.jpg").file("hardlink.txt", b"hardlink")
    expect["hardlink"] = codes("unsafe_path")
    t.special("fifo.jpg", tarfile.FIFOTYPE)
    expect["fifo"] = codes("unsafe_path")
    t.special("chardev.jpg", tarfile.CHRTYPE)
    expect["chardev"] = codes("unsafe_path")
    t.special("folder", tarfile.DIRTYPE)  # a directory is not a sample
    t.file("folder/inside.jpg", JPEG)
    expect["folder/inside"] = ok()
    t.file("long_" + "x" * 300 + ".jpg", JPEG)
    expect["long_" + "x" * 300] = ok()
    t.file("new\nline.jpg", JPEG)
    expect["new\nline"] = ok()
    t.file("zero.jpg", b"").file("zero.txt", b"zero-byte member")
    expect["zero"] = codes("empty_image")
    return DatasetCase("tar members", t.close(), "webdataset", expect)


def tar_raw_names(root: Path) -> DatasetCase:
    """Member names that are not UTF-8: ids must still be text that every writer accepts."""
    path = root / "rawnames.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name in ("caf\xe9.jpg", "\xff\xfe.jpg", "ok.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(JPEG)
            tar.addfile(info, io.BytesIO(JPEG))
    return DatasetCase("tar names not UTF-8", path, "webdataset", {})


def tar_truncated(root: Path) -> list[DatasetCase]:
    """Shards cut inside a member, inside a header, and a shard that is not a tar at all."""
    full = TarBuilder(root / "full.tar")
    for i in range(6):
        full.file(f"s{i}.jpg", JPEG).file(f"s{i}.txt", f"sample {i}".encode())
    data = full.close().read_bytes()
    out = []
    # Cut inside the 4th sample's image: 3 whole samples, the 4th marked, the rest absent.
    at = data.find(b"s3.jpg") + 512 + 100
    (root / "cut_member").mkdir()
    (root / "cut_member" / "a.tar").write_bytes(data[:at])
    out.append(
        DatasetCase(
            "tar cut inside a member",
            root / "cut_member",
            "webdataset",
            {"s0": ok(), "s1": ok(), "s2": ok(), "s3": codes("truncated_shard")},
        )
    )
    at = data.find(b"s4.jpg") + 40
    (root / "cut_header").mkdir()
    (root / "cut_header" / "a.tar").write_bytes(data[:at])
    out.append(
        DatasetCase(
            "tar cut inside a header",
            root / "cut_header",
            "webdataset",
            {f"s{i}": ok() for i in range(4)},
        )
    )
    (root / "not_tar").mkdir()
    (root / "not_tar" / "a.tar").write_bytes(b"this is not a tar file" * 40)
    out.append(
        DatasetCase(
            "a .tar that is not a tar",
            root / "not_tar",
            "webdataset",
            expect_run=codes("clear_error"),
            must_mention="a.tar",
        )
    )
    (root / "empty_tar").mkdir()
    (root / "empty_tar" / "a.tar").write_bytes(b"")
    out.append(
        DatasetCase(
            "a zero-byte .tar",
            root / "empty_tar",
            "webdataset",
            expect_run=codes("clear_error", OK),
            must_mention="a.tar",
        )
    )
    wrecked = bytearray(data)
    at = data.find(b"s3.jpg")
    wrecked[at + 148 : at + 156] = b"0000000\0"  # a header checksum that cannot match
    (root / "bad_header").mkdir()
    (root / "bad_header" / "a.tar").write_bytes(bytes(wrecked))
    out.append(
        DatasetCase(
            "tar header damaged mid-shard",
            root / "bad_header",
            "webdataset",
            expect_run=codes("clear_error"),
            must_mention="damaged at byte",
        )
    )
    big = bytearray(data[: data.find(b"s2.jpg")])
    info = tarfile.TarInfo("huge.jpg")
    info.size = 8 << 30  # claims 8 GiB; the file ends after the header
    big += info.tobuf(tarfile.PAX_FORMAT)
    big += b"\x00" * 1024
    (root / "huge_claim").mkdir()
    (root / "huge_claim" / "a.tar").write_bytes(bytes(big))
    out.append(
        DatasetCase(
            "tar member claiming 8 GiB",
            root / "huge_claim",
            "webdataset",
            {"s0": ok(), "s1": ok(), "huge": codes("truncated_shard", "image_too_large")},
        )
    )
    return out


def duplicates(root: Path) -> list[DatasetCase]:
    out = []
    d = root / "dup_interleaved"
    d.mkdir()
    TarBuilder(d / "a.tar").file("x.jpg", JPEG).file("y.jpg", JPEG).file("x.txt", b"x").close()
    out.append(
        DatasetCase(
            "tar key interleaved",
            d,
            "webdataset",
            expect_run=codes("clear_error"),
            must_mention="'x'",
        )
    )
    d = root / "dup_shards"
    d.mkdir()
    TarBuilder(d / "a.tar").file("k1.jpg", JPEG).file("same.jpg", JPEG).close()
    TarBuilder(d / "b.tar").file("k2.jpg", PNG).file("same.jpg", PNG).close()
    out.append(
        DatasetCase(
            "tar key in two shards",
            d,
            "webdataset",
            expect_run=codes("clear_error"),
            must_mention="'same'",
        )
    )
    d = root / "dup_jsonkey"
    d.mkdir()
    TarBuilder(d / "a.tar").file("m1.jpg", JPEG).file("m1.json", b'{"key": "twin"}').file(
        "m2.jpg", PNG
    ).file("m2.json", b'{"key": "twin"}').close()
    out.append(
        DatasetCase(
            "json key repeated",
            d,
            "webdataset",
            expect_run=codes("clear_error"),
            must_mention="'twin'",
        )
    )
    d = root / "dup_parquet"
    d.mkdir()
    pq.write_table(pa.table({"id": ["p1", "p2"], "image": [JPEG, PNG]}), d / "a.parquet")
    pq.write_table(pa.table({"id": ["p3", "p1"], "image": [JPEG, PNG]}), d / "b.parquet")
    out.append(
        DatasetCase(
            "parquet id in two files",
            d,
            "parquet",
            expect_run=codes("clear_error"),
            must_mention="'p1'",
        )
    )
    d = root / "dup_parquet_one"
    d.mkdir()
    pq.write_table(pa.table({"id": ["q", "q"], "image": [JPEG, PNG]}), d / "a.parquet")
    out.append(
        DatasetCase(
            "parquet id twice in a file",
            d,
            "parquet",
            expect_run=codes("clear_error"),
            must_mention="'q'",
        )
    )
    d = root / "dup_folder"
    (d / "img").mkdir(parents=True)
    (d / "img" / "a.jpg").write_bytes(JPEG)
    (d / "metadata.jsonl").write_text(
        '{"file_name": "img/a.jpg", "id": "f"}\n{"file_name": "img/a.jpg", "id": "f"}\n'
    )
    out.append(
        DatasetCase(
            "imagefolder id twice",
            d,
            "imagefolder",
            expect_run=codes("clear_error"),
            must_mention="'f'",
        )
    )
    return out


CAPTIONS: dict[str, bytes] = {
    "latin1": "café crème brûlée".encode("latin-1"),
    "random_bytes": bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)),
    "utf16_bom": "\ufeffa photo of a cat".encode("utf-16"),
    "overlong_utf8": b"\xc0\xaf\xe0\x80\xaf a cat",
    "nul_bytes": b"a\x00cat\x00\x00",
    "one_megabyte": ("a photo of a cat " * 61_681).encode()[: 1 << 20],
    "eight_megabytes": (b"word " * (8 << 18))[: 8 << 20],
    "control_and_bidi": "\u202eevil\u202c \x1b[31mred\x1b[0m <script>alert(1)</script>".encode(),
    "whitespace_only": b" \t\n\r ",
    "emoji_zwj": "👩‍👩‍👧‍👦 family 🏳️‍🌈".encode(),
}
JSON_CAPTIONS: dict[str, bytes] = {
    # JSON escapes that decode to lone surrogates: valid JSON, not encodable as UTF-8.
    "json_lone_surrogate": b'{"caption": "bad \\ud800 half", "url": "https://x.org/\\udfff"}',
    "json_meta_surrogate": b'{"caption": "fine", "note": "\\ud83d", "\\udc00key": 1}',
    "json_caption_number": b'{"caption": 12345}',
    "json_caption_object": b'{"caption": {"en": "a cat"}}',
    "json_deep": b'{"a": ' * 5000 + b"1" + b"}" * 5000,
}


def captions_tar(root: Path) -> DatasetCase:
    t = TarBuilder(root / "captions.tar")
    expect = {}
    for name, text in CAPTIONS.items():
        t.file(f"{name}.jpg", JPEG).file(f"{name}.txt", text)
        expect[name] = ok()
    for name, text in JSON_CAPTIONS.items():
        t.file(f"{name}.jpg", JPEG).file(f"{name}.json", text)
        expect[name] = codes(OK, "bad_metadata")
    return DatasetCase("captions (tar)", t.close(), "webdataset", expect)


def captions_parquet(root: Path) -> DatasetCase:
    names = list(CAPTIONS)
    caps = [b.decode("utf-8", "replace") for b in CAPTIONS.values()]
    d = root / "captions_pq"
    d.mkdir()
    pq.write_table(
        pa.table({"id": names, "image": [JPEG] * len(names), "caption": caps}), d / "a.parquet"
    )
    # A binary caption column holding bytes that are not UTF-8.
    pq.write_table(
        pa.table(
            {
                "id": [f"bin_{n}" for n in names],
                "image": [PNG] * len(names),
                "caption": pa.array(list(CAPTIONS.values()), pa.binary()),
            }
        ),
        d / "b.parquet",
    )
    expect = {n: ok() for n in names} | {f"bin_{n}": ok() for n in names}
    return DatasetCase("captions (parquet)", d, "parquet", expect)


def parquet_columns(root: Path) -> list[DatasetCase]:
    """NaN, wrong types and missing columns, each in its own dataset."""
    out = []

    def one(
        name: str,
        table: pa.Table,
        expect: dict[str, frozenset[str]] | None = None,
        run: frozenset[str] | None = None,
        mention: str | None = None,
        extra: pa.Table | None = None,
    ) -> None:
        d = root / f"pq_{name}"
        d.mkdir()
        pq.write_table(table, d / "a.parquet")
        if extra is not None:
            pq.write_table(extra, d / "b.parquet")
        out.append(DatasetCase(f"parquet {name}", d, "parquet", expect or {}, run, mention))

    ids = ["r0", "r1", "r2"]
    imgs = [JPEG, PNG, JPEG]
    one(
        "nan captions",
        pa.table({"id": ids, "image": imgs, "caption": [float("nan"), 1.5, None]}),
        {i: ok() for i in ids},
    )
    one(
        "int captions",
        pa.table({"id": ids, "image": imgs, "caption": [1, 2, 3]}),
        {i: ok() for i in ids},
    )
    one(
        "float ids with nan",
        pa.table({"id": [1.0, float("nan"), 3.5], "image": imgs, "caption": ["a", "b", "c"]}),
        None,
    )
    one(
        "image column of strings",
        pa.table({"id": ids, "image": ["a.jpg", "", "x"], "caption": ["a", "b", "c"]}),
        {i: codes("missing_image") for i in ids},
    )
    one(
        "image column of ints",
        pa.table({"id": ids, "image": [1, 2, 3]}),
        {i: codes("missing_image") for i in ids},
    )
    one(
        "image structs with null bytes",
        pa.table(
            {
                "id": ids,
                "image": [
                    {"bytes": None, "path": "nowhere.jpg"},
                    {"bytes": PNG, "path": None},
                    None,
                ],
            }
        ),
        {"r0": codes("missing_image"), "r1": ok(), "r2": codes("missing_image")},
    )
    one(
        "nan urls and odd meta",
        pa.table(
            {
                "id": ids,
                "image": imgs,
                "url": [float("nan"), 5.0, None],
                "meta": ["not json", "[1, 2]", '{"k": NaN}'],
            }
        ),
        # Text that is not JSON is the broken metadata of a tar's .json (soft: still scored).
        {ids[0]: codes("bad_metadata"), ids[1]: ok(), ids[2]: ok()},
    )
    one(
        "nested and binary extra columns",
        pa.table(
            {
                "id": ids,
                "image": imgs,
                "tags": [[1, 2], None, []],
                "blob": [b"\xff\xfe", None, b""],
                "when": pa.array([0, 1, None], pa.timestamp("s")),
                "cost": pa.array([1, None, 3], pa.decimal128(5, 2)),
            }
        ),
        {i: ok() for i in ids},
    )
    one("missing caption column", pa.table({"id": ids, "image": imgs}), {i: ok() for i in ids})
    one(
        "no rows",
        pa.table({"id": pa.array([], pa.string()), "image": pa.array([], pa.binary())}),
        {},
    )
    one(
        "no image column",
        pa.table({"id": ids, "caption": ["a", "b", "c"]}),
        run=codes("clear_error"),
        mention="image",
    )
    one(
        "second file lacks the caption column",
        pa.table({"id": ids, "image": imgs, "caption": ["a", "b", "c"]}),
        run=codes("clear_error"),
        mention="caption",
        extra=pa.table({"id": ["z"], "image": [JPEG]}),
    )
    one(
        "paths to missing, remote and folder targets",
        pa.table({"id": ids, "path": ["does/not/exist.jpg", "https://example.org/a.jpg", "."]}),
        {"r0": codes("missing_image"), "r1": codes("remote_path"), "r2": codes("missing_image")},
    )
    # Damaged files: a garbage file, one cut short, one with a data page overwritten.
    good = io.BytesIO()
    pq.write_table(pa.table({"id": ids, "image": imgs}), good)
    raw = good.getvalue()
    for name, data in {
        "garbage file": b"PAR1" + b"\x00" * 100,
        "file cut short": raw[: len(raw) // 2],
        "data page overwritten": raw[:8] + bytes(200) + raw[208:],
    }.items():
        d = root / f"pq_{name.replace(' ', '_')}"
        d.mkdir()
        pq.write_table(pa.table({"id": ["ok0"], "image": [JPEG]}), d / "a.parquet")
        (d / "b.parquet").write_bytes(data)
        out.append(
            DatasetCase(f"parquet {name}", d, "parquet", {}, codes("clear_error"), "b.parquet")
        )
    return out


def imagefolder_cases(root: Path) -> list[DatasetCase]:
    d = root / "folder"
    (d / "img").mkdir(parents=True)
    (d / "img" / "a.jpg").write_bytes(JPEG)
    outside = root / "outside.jpg"
    outside.write_bytes(PNG)
    os.symlink(outside, d / "img" / "link_out.jpg")
    os.symlink(root, d / "img" / "dir_link")
    os.mkfifo(d / "img" / "pipe.jpg")
    rows = [
        ("ok", "img/a.jpg", ok()),
        ("dotdot", "../outside.jpg", codes("unsafe_path")),
        ("abs", str(outside), codes("unsafe_path")),
        ("link_out", "img/link_out.jpg", codes("unsafe_path")),
        ("via_dir_link", "img/dir_link/outside.jpg", codes("unsafe_path")),
        ("fifo", "img/pipe.jpg", codes("missing_image")),
        ("folder", "img", codes("missing_image")),
        ("missing", "img/nope.jpg", codes("missing_image")),
        ("empty_name", "", codes("missing_image")),
    ]
    lines = [json.dumps({"id": i, "file_name": f, "caption": "c"}) for i, f, _ in rows]
    lines.append(json.dumps({"id": "int_name", "file_name": 7, "caption": "c"}))
    lines.append(json.dumps({"id": "null_name", "file_name": None, "caption": None}))
    (d / "metadata.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b"\n\n")
    expect = {i: e for i, _, e in rows} | {
        "int_name": codes("missing_image"),
        "null_name": codes("missing_image"),
    }
    out = [DatasetCase("imagefolder paths", d, "imagefolder", expect)]
    bad = root / "folder_badline"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(JPEG)
    (bad / "metadata.jsonl").write_text('{"file_name": "a.jpg"}\n{oops\n')
    out.append(
        DatasetCase(
            "imagefolder metadata line not JSON",
            bad,
            "imagefolder",
            expect_run=codes("clear_error"),
            must_mention="Line 2",
        )
    )
    nul = root / "folder_nulcsv"
    nul.mkdir()
    (nul / "a.jpg").write_bytes(JPEG)
    (nul / "metadata.csv").write_bytes(b"file_name,caption\na.jpg,cap\x00tion\n")
    out.append(
        DatasetCase(
            "imagefolder metadata.csv with NUL",
            nul,
            "imagefolder",
            {"a.jpg": ok()},
            codes("clear_error", OK),
            "metadata.csv",
        )
    )
    return out
