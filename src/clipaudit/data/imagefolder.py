"""Image folders in the Hugging Face convention: images plus ``metadata.jsonl`` or ``.csv``.

Each metadata row has ``file_name`` (relative to the metadata file) and a caption field;
other fields become sample metadata. Without a metadata file, every image under the folder
is a sample, captioned by a same-stem ``.txt`` file when one exists.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clipaudit.data.formats import (
    CAPTION_CANDIDATES,
    URL_CANDIDATES,
    Dataset,
    DatasetFormat,
    ReadOptions,
    atomic_write_bytes,
    clean_text,
    json_loads_text,
    meta_json,
    parse_meta_value,
    register_format,
    text_of,
)
from clipaudit.data.sample import MEDIA_EXTS, Sample, sniff_image_ext
from clipaudit.errors import DatasetError

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
RESERVED = ("file_name", "id", "caption", "url", "image_ext")


def _load_rows(meta_file: Path) -> list[dict[str, Any]]:
    # utf-8-sig: a byte-order mark would otherwise glue itself to the first row's key.
    text = meta_file.read_text(encoding="utf-8-sig", errors="replace")
    if meta_file.suffix == ".csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(text))]
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json_loads_text(line)
        except ValueError:
            raise DatasetError(
                f"Line {n} of {str(meta_file)!r} is not valid JSON; fix or remove that line."
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(f"Line {n} of {str(meta_file)!r} is not a JSON object.")
        rows.append(row)
    return rows


def inside(root: Path, rel: str, follow_symlinks: bool = False) -> Path | None:
    """``rel`` under ``root``; None when it would leave the folder: by its name (``..``,
    absolute), or through a symbolic link pointing out of it unless ``follow_symlinks``
    (``--follow-symlinks``): a Hugging Face hub snapshot (``snapshot_download``), a DVC or
    git-annex checkout link every file to a blob store beside the folder, while a link in
    a folder unpacked from an untrusted archive can point at any file of the machine."""
    norm = posixpath.normpath(rel)
    if norm.startswith(("/", "../")) or norm in ("..", "."):
        return None
    if follow_symlinks:
        return root / norm
    candidate = (root / norm).resolve()
    try:
        candidate.relative_to(root.resolve())
    except ValueError:
        return None
    return candidate


class ImageFolderDataset(Dataset):
    format = "imagefolder"

    def __init__(self, source: Path, options: ReadOptions) -> None:
        super().__init__(source, options)
        if not source.is_dir():
            raise DatasetError(f"The image folder {str(source)!r} is not a folder.")
        self.root = source
        self.follow_symlinks = bool(options.extra.get("follow_symlinks"))
        metas = sorted(p for n in METADATA_NAMES for p in source.rglob(n))
        self._has_metadata = bool(metas)
        self._rows: list[tuple[Path, dict[str, Any]]] = []
        if metas:
            for m in metas:
                self._rows.extend((m.parent, r) for r in _load_rows(m))
            self._fields = sorted({k for _, r in self._rows for k in r})
            if self._rows and "file_name" not in self._fields:
                raise DatasetError(
                    f"The metadata in {str(source)!r} has no 'file_name' field; add it."
                )
        else:
            for p in sorted(source.rglob("*")):
                # A link whose target is gone is listed too (missing_image): left out, its
                # sample vanished from the decisions without a reason.
                media = p.suffix.lower().lstrip(".") in MEDIA_EXTS
                if media and (p.is_file() or (p.is_symlink() and not p.exists())):
                    self._rows.append((source, {"file_name": p.relative_to(source).as_posix()}))
            self._fields = ["file_name"]
        size = max(1, options.shard_size)
        self._shards = {
            f"rows-{i:08d}": (i, min(i + size, len(self._rows)))
            for i in range(0, len(self._rows), size)
        }
        fields = self._fields
        self.caption_field = options.caption_column or next(
            (c for c in CAPTION_CANDIDATES if c in fields), None
        )
        self.url_field = options.url_column or next(
            (c for c in URL_CANDIDATES if c in fields), None
        )
        self.id_field = options.id_column or ("id" if "id" in fields else None)
        # A named field that is not there read as "no caption" for every sample.
        for option, name in (
            ("--caption-column", options.caption_column),
            ("--url-column", options.url_column),
            ("--id-column", options.id_column),
        ):
            if name and name not in fields:
                has = (
                    f"its metadata has the fields {', '.join(fields)}"
                    if self._has_metadata
                    else "it has no metadata.jsonl or metadata.csv (captions come from .txt "
                    "files beside the images)"
                )
                raise DatasetError(
                    f"{option} {name!r} is not in {str(source)!r}: {has}; name one of those "
                    "or drop the option."
                )

    def shards(self) -> list[str]:
        return list(self._shards)

    def columns(self) -> list[str]:
        return list(self._fields)

    def read_shard(self, shard: str) -> Iterator[Sample]:
        lo, hi = self._shards[shard]
        for base, row in self._rows[lo:hi]:
            yield self._sample(base, row)

    def _sample(self, base: Path, row: dict[str, Any]) -> Sample:
        file_name = clean_text(row.get("file_name")) or ""
        # Normalised as text, never resolved yet: the name is untrusted until inside() agrees.
        base_rel = base.relative_to(self.root).as_posix()
        rel = posixpath.normpath(posixpath.join(base_rel, file_name)) if file_name else ""
        sample_id = clean_text(row.get(self.id_field)) if self.id_field else None
        sample_id = sample_id or rel or "<no file_name>"
        used = {"file_name", "image_ext", self.id_field, self.caption_field, self.url_field}
        meta: dict[str, Any] = {}
        for k, v in row.items():
            if k == "meta":
                meta.update(parse_meta_value(v))
            elif k not in used:
                meta[k] = v
        caption = clean_text(row.get(self.caption_field)) if self.caption_field else None
        path = inside(self.root, rel, self.follow_symlinks) if file_name else None
        image: bytes | None = None
        error: str | None = None
        if path is None:
            error = "unsafe_path" if file_name else "missing_image"
        elif not path.is_file():
            error = "missing_image"
        else:
            try:
                image = path.read_bytes()
            except OSError:  # vanished or unreadable since the check: a reason, not a crash
                image, error = None, "missing_image"
            if image is not None and caption is None and self.caption_field is None:
                side = path.with_suffix(".txt")
                if side.is_file():
                    caption = text_of(side.read_bytes()).strip()
        ext = clean_text(row.get("image_ext")) or (
            path.suffix.lstrip(".").lower() if path else None
        )
        url = clean_text(row.get(self.url_field)) if self.url_field else None
        return Sample(sample_id, image, caption, url, meta, ext or None, error)


@register_format("imagefolder")
class ImageFolderFormat(DatasetFormat):
    detect_priority = 90  # the generic fallback for a folder

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_dir():
            return False
        if any((path / n).is_file() for n in METADATA_NAMES):
            return True
        return any(p.suffix.lower().lstrip(".") in MEDIA_EXTS for p in path.rglob("*"))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Dataset:
        return ImageFolderDataset(path, options)

    @classmethod
    def write(cls, samples: Iterable[Sample], out: Path, shard_size: int) -> list[Path]:
        lines: list[str] = []
        used: set[str] = set()
        for n, sample in enumerate(samples):
            row: dict[str, Any] = {"id": sample.id}
            if sample.image is not None:
                ext = sample.image_ext or sniff_image_ext(sample.image)
                # Files are numbered, never named from the id: ids are untrusted text.
                name = f"images/{n // shard_size:05d}/{n:08d}.{ext}"
                atomic_write_bytes(out / name, sample.image)
                row["file_name"] = name
                row["image_ext"] = ext
            else:
                row["file_name"] = ""
            row["caption"] = sample.caption
            row["url"] = sample.url
            clash = [k for k in sample.meta if k in RESERVED or k == "meta"]
            if clash:
                row["meta"] = sample.meta
            else:
                row.update(sample.meta)
            used.add(sample.id)
            lines.append(meta_json(row))
        target = out / "metadata.jsonl"
        atomic_write_bytes(target, ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
        return [target]
