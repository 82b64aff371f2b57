"""Turning table rows (parquet, Hugging Face datasets) into samples, shared by both readers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from clipaudit.data.formats import (
    CAPTION_CANDIDATES,
    ID_CANDIDATES,
    IMAGE_CANDIDATES,
    PATH_CANDIDATES,
    URL_CANDIDATES,
    ReadOptions,
    clean_text,
    not_json,
    parse_meta_value,
    pick_column,
)
from clipaudit.data.sample import GeneratedIds, Sample, SourceRow, sniff_image_ext
from clipaudit.errors import DatasetError


@dataclass
class ColumnMap:
    id: str | None
    image: str | None
    path: str | None
    caption: str | None
    url: str | None
    meta: str | None
    others: list[str]

    @classmethod
    def resolve(
        cls,
        names: list[str],
        opts: ReadOptions,
        where: str,
        image_hint: str | None = None,
        text_columns: set[str] | frozenset[str] = frozenset(),
    ) -> ColumnMap:
        wanted = opts.image_column or image_hint
        # A guessed image column holds bytes: a text column named "image" (paths, as LLaVA
        # exports write them, or urls beside a "jpg" bytes column) made every sample
        # missing_image. Such a column is taken for paths where none is named.
        guessable = names if wanted else [n for n in names if n not in text_columns]
        image = pick_column(guessable, wanted, IMAGE_CANDIDATES, "image", where)
        path = pick_column(names, opts.path_column, PATH_CANDIDATES, "path", where)
        if image is None and path is None and not wanted:
            path = next((c for c in IMAGE_CANDIDATES if c in text_columns and c in names), None)
        if image is None and path is None:
            raise DatasetError(
                f"No image column in {where}: pass --image-column (bytes) or --path-column "
                f"(file paths); the columns are {', '.join(names)}."
            )
        ident = pick_column(names, opts.id_column, ID_CANDIDATES, "id", where)
        caption = pick_column(names, opts.caption_column, CAPTION_CANDIDATES, "caption", where)
        url = pick_column(names, opts.url_column, URL_CANDIDATES, "url", where)
        meta = opts.meta_column if opts.meta_column in names else None
        used = {ident, image, path, caption, url, meta, "image_ext"}
        others = [n for n in names if n not in used]
        return cls(ident, image, path, caption, url, meta, others)


def image_from_cell(value: Any) -> tuple[bytes | None, str | None]:
    """An image cell is raw bytes or a Hugging Face ``{"bytes", "path"}`` struct."""
    if value is None:
        return None, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, dict):
        data = value.get("bytes")
        return (bytes(data) if data is not None else None), value.get("path")
    return None, None


def row_to_sample(
    row: dict[str, Any], cols: ColumnMap, base_dir: Path | None, ids: GeneratedIds
) -> Sample:
    image, inner_path = image_from_cell(row.get(cols.image)) if cols.image else (None, None)
    path_value = clean_text(row.get(cols.path)) if cols.path else None
    error: str | None = None
    if image is None:
        file_ref = path_value or inner_path
        if file_ref:
            image, error = read_path(file_ref, base_dir)
        else:
            error = "missing_image"
    caption = clean_text(row.get(cols.caption)) if cols.caption else None
    url = clean_text(row.get(cols.url)) if cols.url else None
    raw_meta = row.get(cols.meta) if cols.meta else None
    meta: dict[str, Any] = parse_meta_value(raw_meta) if cols.meta else {}
    if error is None and not_json(raw_meta):
        # As a broken .json member of a tar: the text is kept under "meta", the image scored.
        error = "bad_metadata"
    for name in cols.others:
        meta.setdefault(name, row.get(name))
    given = clean_text(row.get(cols.id)) if cols.id else None
    sample_id = given or path_value or ids.make(image, caption, url)
    ext = clean_text(row.get("image_ext")) or (sniff_image_ext(image) if image else None)
    return Sample(sample_id, image, caption, url, meta, ext, error)


def read_path(ref: str, base_dir: Path | None) -> tuple[bytes | None, str | None]:
    """Read an image named by a path column; a failure is a reason code, not an exception."""
    if "://" in ref:
        return None, "remote_path"  # never fetched: reading a dataset makes no requests
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        if not p.is_file():
            return None, "missing_image"
        return p.read_bytes(), None
    except OSError:
        return None, "missing_image"


ADDED_ID = "id"


def source_row(
    fmt: str, schema: Any, row: dict[str, Any], cols: ColumnMap, extra: Any = None
) -> SourceRow:
    """``row`` as stored, for a kept dataset in the input's schema; an input without an id
    column gets the run's ids in an added ``id`` column, so kept rows join the decisions."""
    assert cols.image is not None
    added = ADDED_ID if cols.id is None else None
    return SourceRow(fmt, schema, row, cols.image, added, extra, own_id_column=cols.id)


def stored_row(sample: Sample) -> dict[str, Any]:
    """The row to write for a sample read with ``source_row``: as stored, its image cell
    holding the bytes that were scored (a ``{"bytes", "path"}`` cell keeps its path as a
    name), and the added id column where there is one."""
    src = sample.source
    assert src is not None
    row = dict(src.row)
    cell = row.get(src.image_column)
    if isinstance(cell, dict):
        row[src.image_column] = {**cell, "bytes": sample.image}
    else:
        row[src.image_column] = sample.image
    if src.id_column is not None:
        row = {src.id_column: sample.id, **row}
    own = src.own_id_column
    if own is not None and _text_column(src.schema, own):
        row[own] = sample.id  # the id the run used: stored (cleaned) or generated if empty
    return row


def _text_column(schema: Any, name: str) -> bool:
    """Whether column ``name`` of an arrow schema or ``datasets.Features`` holds text."""
    if isinstance(schema, pa.Schema):
        kind = schema.field(name).type
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    feature = schema.get(name) if hasattr(schema, "get") else None
    return getattr(feature, "dtype", None) in ("string", "large_string")
