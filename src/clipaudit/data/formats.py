"""The dataset format registry: detection, opening and writing by format name.

Each format module registers one :class:`DatasetFormat` subclass with
:func:`register_format`; :func:`open_dataset` and :func:`write_dataset` look formats up by
name or detect them from the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError, DatasetError, DuplicateIdError


@dataclass
class ReadOptions:
    """Column names and sharding for readers; ``None`` means "detect"."""

    id_column: str | None = None
    image_column: str | None = None
    path_column: str | None = None
    caption_column: str | None = None
    url_column: str | None = None
    meta_column: str = "meta"
    split: str | None = None
    # Rows per shard for formats whose files are not shards themselves.
    shard_size: int = 10_000
    extra: dict[str, Any] = field(default_factory=dict)


# Column-name guesses, in order, used when a ReadOptions field is None.
ID_CANDIDATES = ("id", "key", "sample_id", "uid")
IMAGE_CANDIDATES = ("image", "jpg", "png", "webp", "image_bytes", "img")
PATH_CANDIDATES = ("path", "image_path", "file_name", "filepath", "file")
CAPTION_CANDIDATES = ("caption", "text", "txt", "TEXT", "alt", "title")
URL_CANDIDATES = ("url", "URL", "image_url")


def pick_column(
    names: Iterable[str], wanted: str | None, candidates: tuple[str, ...], role: str, where: str
) -> str | None:
    """Return the column to use for ``role``: the one asked for, or the first candidate."""
    present = list(names)
    if wanted is not None:
        if wanted not in present:
            raise DatasetError(
                f"The {role} column {wanted!r} is not in {where}; its columns are "
                f"{', '.join(present) or 'none'}."
            )
        return wanted
    return next((c for c in candidates if c in present), None)


# A JSON escape \uD800-\uDFFF without its partner: valid JSON, but the string it makes
# cannot be encoded as UTF-8, so parquet, tar and JSON writers would fail on it later.
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def json_loads_text(data: str | bytes) -> Any:
    """``json.loads`` for untrusted metadata: lone surrogate escapes become U+FFFD, and
    nesting too deep to parse is a ``ValueError`` like any other bad JSON."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if "\\u" in text:
        text = _LONE_SURROGATE.sub("\\\\ufffd", text)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_meta_value(value: Any) -> dict[str, Any]:
    """A ``meta`` column holds a JSON object (string) or a struct; anything else is kept as-is."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (str, bytes)):
        try:
            parsed = json_loads_text(value)
        except ValueError:
            return {"meta": value if isinstance(value, str) else value.decode("utf-8", "replace")}
        return parsed if isinstance(parsed, dict) else {"meta": parsed}
    return {"meta": value}


def not_json(value: Any) -> bool:
    """True for a ``meta`` cell of text that does not parse as JSON (``{not json``)."""
    if not isinstance(value, (str, bytes)) or not value.strip():
        return False
    try:
        json_loads_text(value)
    except ValueError:
        return True
    return False


def clean_text(value: Any) -> str | None:
    """Captions and urls arrive as str, bytes, NaN or numbers; normalise to str or None."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, bytes):
        return text_of(value)
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:
        # Several captions per image (COCO style): the first non-empty one is the caption;
        # str() of the list ("['a', 'b']") was a caption no one wrote.
        for item in value:
            text = clean_text(item)
            if text and text.strip():
                return text
        return None
    if isinstance(value, dict):
        # A struct ({"en": ..., "de": ...}) is no one caption: its str() ("{'en': ...}")
        # was taken for one. None: the sample gets no_caption, the struct stays in meta.
        return None
    return value if isinstance(value, str) else str(value)


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def text_of(data: bytes) -> str:
    """Caption bytes (a ``.txt`` member or sidecar, a bytes column) as text. Web captions are
    mostly UTF-8 but not all: a Windows editor's UTF-8 starts with a byte-order mark (left
    in, it stayed in the caption and tipped language detection), Notepad's "Unicode" is
    UTF-16 with one (read as UTF-8, every other character a NUL), and old pages are
    Windows-1252 (read as UTF-8, every accent a U+FFFD). Strict UTF-8 first; those others by
    their mark or by UTF-8 failing."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(_UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def meta_json(meta: dict[str, Any]) -> str:
    """``meta`` as JSON; values JSON has no form for are kept losslessly where they can be:
    bytes as ``{"base64": ...}`` (their Python repr, ``"b'\\xff\\xd8…'"``, could not be
    read back, and took four characters a byte), dates and times in ISO 8601."""
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, default=_json_value)


def _json_value(value: Any) -> Any:
    import base64
    import datetime

    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


class Dataset(ABC):
    """An opened dataset: a list of shards, each read as a stream of samples."""

    format: ClassVar[str]

    def __init__(self, source: Any, options: ReadOptions) -> None:
        self.source = source
        self.options = options
        # Table readers attach each row as stored (``Sample.source``) when this is set and
        # ``row_schema()`` is not None: the kept writer's copy in the input's own schema.
        self.keep_rows = False

    def row_schema(self) -> Any:
        """The one schema every stored row of this dataset has, where a kept dataset in this
        format can copy rows as they are; None where it cannot (not a table, images by path,
        shards whose schemas differ)."""
        return None

    @abstractmethod
    def shards(self) -> list[str]:
        """Shard names, in a stable order; each can be read on its own."""

    @abstractmethod
    def read_shard(self, shard: str) -> Iterator[Sample]:
        """Yield the samples of one shard, in stored order."""

    @abstractmethod
    def columns(self) -> list[str]:
        """The fields a sample of this dataset carries, as stored."""

    def describe(self) -> str:
        return str(self.source)

    def __iter__(self) -> Iterator[Sample]:
        """All samples of all shards; a repeated id is an error that names it."""
        seen: set[str] = set()
        for shard in self.shards():
            for sample in self.read_shard(shard):
                if sample.id in seen:
                    raise DuplicateIdError([sample.id], self.describe())
                seen.add(sample.id)
                yield sample


class DatasetFormat(ABC):
    """One on-disk format: how to recognise it, open it and write it."""

    name: ClassVar[str]
    # Lower runs first when detecting; specific layouts before generic folders.
    detect_priority: ClassVar[int] = 50
    # The file name of output shard n when every shard is one self-contained file whose
    # bytes depend only on its samples (``{n:05d}.tar``): such a format's shards can be
    # written in parallel, each batch alone, byte-identical to a serial write. None: no.
    shard_file: ClassVar[str | None] = None

    @classmethod
    @abstractmethod
    def detect(cls, path: Path) -> bool:
        """True when ``path`` looks like this format."""

    @classmethod
    @abstractmethod
    def open(cls, path: Path, options: ReadOptions) -> Dataset:
        """Open ``path`` for reading."""

    @classmethod
    @abstractmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        """Write ``samples`` under ``out`` in shards of ``shard_size``; return the files."""


FORMATS: dict[str, type[DatasetFormat]] = {}
F = TypeVar("F", bound=type[DatasetFormat])


def register_format(name: str) -> Callable[[F], F]:
    def deco(cls: F) -> F:
        cls.name = name
        FORMATS[name] = cls
        return cls

    return deco


def get_format(name: str) -> type[DatasetFormat]:
    try:
        return FORMATS[name]
    except KeyError:
        raise DatasetError(
            f"Unknown dataset format {name!r}; use one of: {', '.join(sorted(FORMATS))}."
        ) from None


def detect_format(path: Path) -> str:
    if not path.exists() and not _looks_like_brace(str(path)):
        raise DatasetError(f"The dataset path {str(path)!r} does not exist; check the path.")
    for fmt in sorted(FORMATS.values(), key=lambda f: f.detect_priority):
        if fmt.detect(path):
            return fmt.name
    raise DatasetError(
        f"Cannot tell the format of {str(path)!r}; pass --format with one of: "
        f"{', '.join(sorted(FORMATS))}."
    )


def _looks_like_brace(s: str) -> bool:
    return "{" in s and ".." in s and "}" in s


def open_dataset(
    source: Any, format: str | None = None, options: ReadOptions | None = None
) -> Dataset:
    """Open a dataset from a path (format detected unless given) or a ``datasets.Dataset``."""
    options = options or ReadOptions()
    if not isinstance(source, (str, os.PathLike)):
        return get_format("hf").open(source, options)
    path = Path(source)
    name = format or detect_format(path)
    return get_format(name).open(path, options)


def write_dataset(
    samples: Iterable[Sample], out: str | os.PathLike[str], format: str, shard_size: int = 1000
) -> list[Path]:
    """Write samples in ``format`` under ``out`` (created; must be empty if it exists)."""
    if shard_size < 1:
        raise DatasetError(f"shard_size must be at least 1, got {shard_size}.")
    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise DatasetError(
            f"The output {str(out_path)!r} is a file or a folder that is not empty; choose a "
            "new folder."
        )
    writer = get_format(format)
    with output_errors(out_path):
        out_path.mkdir(parents=True, exist_ok=True)
        return writer.write(samples, out_path, shard_size)


class OutputError(ClipauditError):
    """The output folder cannot be written (read-only, full, over a quota, not a folder)."""


@contextlib.contextmanager
def output_errors(target: Path) -> Iterator[None]:
    """Turn an operating-system write failure under ``target`` into one clear sentence.

    Nothing is marked done by a write that failed: markers are written last, and a failed
    atomic write leaves no file behind, so the same command resumes once space is freed.
    """
    try:
        yield
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        where = exc.filename if isinstance(exc.filename, str) else str(target)
        raise OutputError(
            f"Cannot write {where!r}: {what}; free space or choose a writable output "
            "folder, then run the same command again to resume."
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes owner-only files; a written file gets what open() would have given it.
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def shard_batches(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """The writers' shards: batches of ``size``, and one empty batch where there is no
    sample, so a dataset that kept nothing is one empty, readable shard (nothing at all was
    a folder that no reader could tell the format of)."""
    empty = True
    for batch in batched(items, size):
        empty = False
        yield batch
    if empty:
        yield []


def batched(
    items: Iterable[Sample],
    size: int,
    cost: Callable[[Sample], int] | None = None,
    budget: int = 0,
) -> Iterator[list[Sample]]:
    """Batches of ``size`` items; with ``cost``, a batch also closes before the item that
    would take its summed cost past ``budget`` (an item over the budget alone is a batch of
    one), so a batch of huge images holds as many pixels as one of ordinary ones."""
    batch: list[Sample] = []
    spent = 0
    for item in items:
        c = cost(item) if cost is not None else 0
        if batch and cost is not None and spent + c > budget:
            yield batch
            batch, spent = [], 0
        batch.append(item)
        spent += c
        if len(batch) == size:
            yield batch
            batch, spent = [], 0
    if batch:
        yield batch
