"""WebDataset tar shards in the img2dataset layout: ``{key}.jpg``, ``{key}.txt``, ``{key}.json``.

Members are streamed, never extracted, so a hostile member name cannot write anywhere; such
a member still becomes a sample with the reason code ``unsafe_path`` so nothing goes missing.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from clipaudit.data.formats import (
    Dataset,
    DatasetFormat,
    ReadOptions,
    json_loads_text,
    meta_json,
    register_format,
    shard_batches,
    text_of,
)
from clipaudit.data.sample import (
    MEDIA_EXTS,
    SAMPLE_MEDIA_ORDER,
    Sample,
    SourceRow,
    sniff_image_ext,
)
from clipaudit.errors import DatasetError, DuplicateIdError

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-]")
# A member larger than this is not read: no image or caption is that big, and reading it
# would hold all of it in memory. Its sample gets a reason code instead.
MAX_MEMBER_BYTES = 1 << 30


# A kept sample's stored form: its tar members by extension (``SourceRow.schema``).
MEMBERS = "members"


def expand_braces(pattern: str) -> list[str]:
    """Expand one ``{000..009}`` range the way webdataset and img2dataset name shards."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    lo, hi = m.group(1), m.group(2)
    width = len(lo)
    return [
        pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :]
        for i in range(int(lo), int(hi) + 1)
    ]


def split_member(name: str) -> tuple[str, str]:
    """``dir/abc.seg.png`` → (``dir/abc``, ``seg.png``): keys end at the basename's first dot."""
    p = PurePosixPath(name)
    base, dot, ext = p.name.partition(".")
    key = str(p.parent / base) if str(p.parent) != "." else base
    return key, ext.lower() if dot else ""


def os_litter(name: str) -> bool:
    """Members a desktop's archiver adds that are no part of any sample: macOS's AppleDouble
    ``._name`` files and ``__MACOSX/`` folder, Finder's ``.DS_Store``. A tar made on a Mac
    stopped the run ("Duplicate sample ids … ''"); WebDataset's reader skips them too."""
    p = PurePosixPath(name)
    return p.name.startswith("._") or p.name == ".DS_Store" or "__MACOSX" in p.parts


def unsafe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or name.startswith("\\") or ":" in p.parts[0]


def _short_text(data: bytes, limit: int = 64 * 1024) -> str | None:
    """A member's bytes as text where they are short UTF-8 without NUL (a class label, a
    second caption); None for binary or long members."""
    if len(data) > limit or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def _same_sample_link(member: tarfile.TarInfo, names: dict[str, str]) -> str | None:
    """The extension of the sample's member a hard link ``member`` repeats, if it repeats
    one already read; None for anything else."""
    if not member.islnk():
        return None
    target = text_name(member.linkname)
    return next((ext for ext, name in names.items() if name == target), None)


def _data_after_end(tar: tarfile.TarFile) -> int | None:
    """Where reading stopped, if anything but zero padding follows it (a damaged header
    rather than the end-of-archive marker); None for a shard read to its end."""
    offset = tar.offset
    assert tar.fileobj is not None
    while chunk := tar.fileobj.read(1 << 16):
        if chunk.strip(b"\0"):
            return offset
    return None


def text_name(name: str) -> str:
    """A member name as text every writer accepts: tarfile keeps bytes that are not UTF-8
    as lone surrogates, which parquet and JSON refuse, so they become ``\\xNN`` escapes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    return name


class WebDataset(Dataset):
    format = "webdataset"

    def __init__(self, source: Path, options: ReadOptions) -> None:
        super().__init__(source, options)
        text = str(source)
        if "{" in text:
            files = [Path(p) for p in expand_braces(text)]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise DatasetError(
                    f"The shard {missing[0]!r} named by {text!r} does not exist; fix the range."
                )
        elif source.is_dir():
            files = sorted(source.rglob("*.tar"))
        else:
            files = [source]
        if not files:
            raise DatasetError(f"No .tar shards under {text!r}; is this a WebDataset folder?")
        self.root = source if source.is_dir() else source.parent
        self._files = {self._name(f): f for f in files}
        self._check_columns(options)

    def _check_columns(self, options: ReadOptions) -> None:
        """Named columns must be there: a member extension or a ``.json`` field for the
        caption, a ``.json`` field for the url and the id (a name that matched nothing was
        ignored, and every caption read from ``.txt`` regardless)."""
        self.caption_key = options.caption_column
        self.url_key = options.url_column
        self.id_key = options.id_column
        if options.image_column or options.path_column:
            raise DatasetError(
                f"{str(self.source)!r} is a WebDataset: a sample's image is its media member "
                "(.jpg, .png, .mp4, ...); drop --image-column / --path-column."
            )
        wanted = [k for k in (self.caption_key, self.url_key, self.id_key) if k]
        if not wanted:
            return
        exts, fields = self._peek()
        listed = "json fields " + (", ".join(sorted(fields)) or "none")
        for name, key, members in (
            ("--caption-column", self.caption_key, exts),
            ("--url-column", self.url_key, set()),
            ("--id-column", self.id_key, set()),
        ):
            if key and key not in members and key not in fields:
                have = f"member extensions {', '.join(sorted(exts))}; " if members else ""
                raise DatasetError(
                    f"{name} {key!r} is not in {str(self.source)!r} (its first shard has "
                    f"{have}{listed}); name one of those or drop the option."
                )

    def _peek(self, members: int = 200) -> tuple[set[str], set[str]]:
        """(member extensions, fields of the first ``.json``) at the head of the first shard."""
        exts: set[str] = set()
        fields: set[str] = set()
        try:
            with tarfile.open(next(iter(self._files.values())), mode="r|*") as tar:
                for i, member in enumerate(tar):
                    if i >= members:
                        break
                    ext = split_member(text_name(member.name))[1]
                    exts.add(ext)
                    if ext == "json" and not fields and member.isfile():
                        fh = tar.extractfile(member)
                        if fh is not None and member.size <= MAX_MEMBER_BYTES:
                            try:
                                loaded = json_loads_text(fh.read())
                            except ValueError:
                                loaded = None
                            if isinstance(loaded, dict):
                                fields = set(loaded)
        except (tarfile.TarError, OSError, EOFError):
            pass  # a damaged first shard is reported by its read, with its own message
        return {e for e in exts if e}, fields

    def _name(self, f: Path) -> str:
        try:
            return f.relative_to(self.root).as_posix()
        except ValueError:
            return str(f)

    def row_schema(self) -> str:
        return MEMBERS

    def shards(self) -> list[str]:
        return list(self._files)

    def columns(self) -> list[str]:
        exts: set[str] = set()
        for shard in self.shards()[:1]:
            with tarfile.open(self._files[shard], mode="r|*") as tar:
                for i, member in enumerate(tar):
                    if i > 200:
                        break
                    exts.add(split_member(member.name)[1])
        return sorted(e for e in exts if e)

    def read_shard(self, shard: str) -> Iterator[Sample]:
        path = self._files[shard]
        seen: set[str] = set()
        key: str | None = None
        parts: dict[str, bytes] = {}
        names: dict[str, str] = {}  # extension -> the member's name as stored
        unsafe = False
        too_large: set[str] = set()
        try:
            tar = tarfile.open(path, mode="r|*")  # noqa: SIM115 - closed by the with below
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(
                f"The shard {str(path)!r} is not a readable tar file ({exc})."
            ) from exc
        with tar:
            try:
                for member in tar:
                    if member.isdir() or os_litter(text_name(member.name)):
                        continue  # a folder is not a sample (its files are), nor OS litter
                    mkey, ext = split_member(text_name(member.name))
                    if mkey != key:
                        if key is not None:
                            yield self._sample(
                                key, parts, unsafe, shard, too_large=too_large, names=names
                            )
                        if mkey in seen:
                            raise DuplicateIdError([mkey], f"shard {str(path)!r}")
                        seen.add(mkey)
                        key, parts, unsafe, names = mkey, {}, False, {}
                        too_large = set()
                    linked = _same_sample_link(member, names)
                    if linked is not None and not unsafe_member(member.name):
                        # A hard link to a member of this sample read earlier (tar stores a
                        # repeated file so): its bytes, not the whole sample unsafe_path.
                        if ext in parts:
                            raise DuplicateIdError([mkey], f"shard {str(path)!r}")
                        parts[ext], names[ext] = parts[linked], text_name(member.name)
                        continue
                    # Links and devices are never followed or opened: a link could point
                    # anywhere on the reader's disk, a device could block forever.
                    if unsafe_member(member.name) or not member.isfile():
                        unsafe = True
                        continue
                    if ext in parts or ext in too_large:
                        # The same member twice in a row (k1.jpg k1.txt k1.jpg ...) is a
                        # second sample under one key: skipping it lost a sample silently.
                        raise DuplicateIdError([mkey], f"shard {str(path)!r}")
                    if member.size > MAX_MEMBER_BYTES:
                        too_large.add(ext)
                        continue
                    fh = tar.extractfile(member)
                    if fh is not None:
                        parts[ext] = fh.read()
                        names[ext] = text_name(member.name)
                damaged_at = _data_after_end(tar)
            except (tarfile.TarError, OSError, EOFError):
                # A truncated shard: the sample being read when the bytes ran out is kept
                # with what it had, marked, and reading stops there.
                if key is not None:
                    yield self._sample(
                        key, parts, unsafe, shard, truncated=True, too_large=too_large, names=names
                    )
                    key = None
                damaged_at = None
            if key is not None:
                yield self._sample(key, parts, unsafe, shard, too_large=too_large, names=names)
            if damaged_at is not None:
                # tarfile ends quietly at a damaged header in mid-shard: the members after it
                # exist but cannot be reached, so stop rather than lose them silently.
                raise DatasetError(
                    f"The shard {str(path)!r} is damaged at byte {damaged_at}: the members "
                    "after it cannot be read; repair or remove that shard, then run the same "
                    "command again to resume."
                )

    def _sample(
        self,
        key: str,
        parts: dict[str, bytes],
        unsafe: bool,
        shard: str,
        truncated: bool = False,
        too_large: set[str] | None = None,
        names: dict[str, str] | None = None,
    ) -> Sample:
        meta: dict[str, Any] = {}
        error: str | None = None
        sample_id = key
        if "json" in parts:
            try:
                loaded = json_loads_text(parts["json"])
                meta = loaded if isinstance(loaded, dict) else {"json": loaded}
            except ValueError:  # UnicodeDecodeError is a ValueError too
                error = "bad_metadata"
        stored_key = meta.pop(self.id_key or "key", None)
        if isinstance(stored_key, str) and stored_key:
            sample_id = stored_key
        url = meta.pop(self.url_key or "url", None)
        caption: str | None = None
        if self.caption_key:  # a member (e.g. .caption) or a json field, as named
            named = parts.get(self.caption_key)
            caption = text_of(named) if named is not None else None
            field = meta.pop(self.caption_key, None)
            if caption is None and isinstance(field, str):
                caption = field
        else:
            json_caption = meta.pop("caption", None)
            if "txt" in parts:
                caption = text_of(parts["txt"])
            elif isinstance(json_caption, str):
                caption = json_caption
        image_ext = next((e for e in SAMPLE_MEDIA_ORDER if e in parts), None)
        image = parts.get(image_ext) if image_ext else None
        if image is None:
            # A multi-dot member ("a.b.c.jpg": key "a", extension "b.c.jpg") is an image by its
            # last component, as WebDataset's own decoders read it; it was a missing_image.
            dotted = sorted(
                (e for e in parts if e.rpartition(".")[2] in MEDIA_EXTS and "." in e),
                key=lambda e: (SAMPLE_MEDIA_ORDER.index(e.rpartition(".")[2]), e),
            )
            if dotted:
                image, image_ext = parts[dotted[0]], dotted[0].rpartition(".")[2]
        # The sample's other members (.cls, .seg.txt, a second caption): short text ones go
        # into meta under their extension (a --out-format conversion dropped them); others
        # (a second image, a mask) are named, so the loss is visible.
        taken = {image_ext, "json", "txt", self.caption_key}
        skipped = []
        for ext, data in parts.items():
            if ext in taken or ext in meta:
                continue
            text = _short_text(data)
            if text is not None:
                meta[ext] = text
            else:
                skipped.append(ext)
        if skipped:
            meta.setdefault("members_not_in_meta", sorted(skipped))
        if unsafe:
            error, image = "unsafe_path", None
        elif image is None and too_large and any(e in MEDIA_EXTS for e in too_large):
            error = "image_too_large"
        elif image is None and error is None:
            error = "truncated_shard" if truncated else "missing_image"
        sample = Sample(
            id=sample_id,
            image=image,
            caption=caption,
            url=url if isinstance(url, str) else None,
            meta=meta,
            image_ext=image_ext,
            error=error,
        )
        if self.keep_rows and not unsafe:
            # Every member as stored (.cls, .json, a second image...), under WebDataset's own
            # "__key__": a kept tar holds the input's members, not only image, text and json.
            row: dict[str, Any] = {"__key__": key, "__names__": dict(names or {}), **parts}
            sample.source = SourceRow("webdataset", MEMBERS, row, image_ext or "")
        return sample


@register_format("webdataset")
class WebDatasetFormat(DatasetFormat):
    detect_priority = 10
    shard_file = "{n:05d}.tar"

    @classmethod
    def detect(cls, path: Path) -> bool:
        text = str(path)
        if text.endswith(".tar") or ("{" in text and ".tar" in text):
            return True
        return path.is_dir() and any(path.glob("*.tar"))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Dataset:
        return WebDataset(path, options)

    @classmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        files: list[Path] = []
        for n, batch in enumerate(shard_batches(samples, shard_size)):
            final = out / f"{n:05d}.tar"
            tmp = out / f".{n:05d}.tar.tmp"
            used: set[str] = set()
            with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for sample in batch:
                    src = sample.source
                    if src is not None and src.format == "webdataset":
                        members = _stored_members(src.row, used)
                    else:
                        member_key = _member_key(sample.id, used)
                        members = [(f"{member_key}.{e}", d) for e, d in _canonical_members(sample)]
                    for name, data in members:
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        info.mtime = 0  # stable bytes for the same content
                        info.mode = 0o644
                        tar.addfile(info, io.BytesIO(data))
            tmp.replace(final)
            files.append(final)
        return files


def _stored_members(row: dict[str, Any], used: set[str]) -> list[tuple[str, bytes]]:
    """A kept sample's members under their stored names (a sub-folder key, non-ASCII letters
    and the extension's case kept, so ids read back the same); only a key already in this
    output tar (the same key in two input shards) is renamed, as canonical keys are."""
    key = str(row["__key__"])
    stored: dict[str, str] = row.get("__names__") or {}
    parts = [(e, d) for e, d in row.items() if e not in ("__key__", "__names__")]
    if key not in used:
        used.add(key)
        return [(stored.get(e, f"{key}.{e}"), d) for e, d in parts]
    renamed = _member_key(key, used)
    return [(f"{renamed}.{e}", d) for e, d in parts]


def _canonical_members(sample: Sample) -> list[tuple[str, bytes]]:
    """Image, caption (.txt) and metadata (.json: the id as ``key``, the url, the rest)."""
    meta = {"key": sample.id, **sample.meta}
    if sample.url is not None:
        meta["url"] = sample.url
    entries: list[tuple[str, bytes]] = []
    if sample.image is not None:
        entries.append((sample.image_ext or sniff_image_ext(sample.image), sample.image))
    if sample.caption is not None:
        entries.append(("txt", sample.caption.encode("utf-8")))
    entries.append(("json", meta_json(meta).encode("utf-8")))
    return entries


def _member_key(sample_id: str, used: set[str]) -> str:
    """A member key that survives the first-dot split; the true id travels in the json."""
    key = _UNSAFE_KEY.sub("_", sample_id) or "sample"
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}_{n}"
    used.add(candidate)
    return candidate
