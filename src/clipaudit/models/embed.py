"""Embed a dataset into the clip-retrieval layout.

``img_emb/img_emb_N.npy``, ``text_emb/text_emb_N.npy`` and ``metadata/metadata_N.parquet`` are
row-aligned, one file of each per input shard. Every sample gets a row, so nothing goes
missing: a sample whose image cannot be decoded (or that has no caption) has an all-zero
row and ``image_ok`` (``text_ok``) false with the reason in ``error``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.data.decode import decode_sample, held_pixels
from clipaudit.data.formats import Dataset, atomic_write_bytes, batched
from clipaudit.data.video import DEFAULT_POLICY, SamplingPolicy
from clipaudit.errors import DatasetError, DuplicateIdError
from clipaudit.models.loader import LoadedClip


@dataclass
class EmbedSummary:
    out: str
    shards: int = 0
    samples: int = 0
    images_embedded: int = 0
    texts_embedded: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def embed_dataset(
    dataset: Dataset,
    clip: LoadedClip,
    out: str | Path,
    batch_size: int = 64,
    show_progress: bool = True,
    policy: SamplingPolicy = DEFAULT_POLICY,
    batch_megapixels: int = 128,
) -> EmbedSummary:
    """Embed every sample of ``dataset`` with ``clip`` and write the clip-retrieval layout; a
    video sample is the renormalised mean of its frames sampled by ``policy``. A batch holds
    at most ``batch_size`` samples and about ``batch_megapixels`` of decoded images."""
    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise DatasetError(
            f"The output {str(out_path)!r} is a file or a folder that is not empty; choose a "
            "new folder."
        )
    for sub in ("img_emb", "text_emb", "metadata"):
        (out_path / sub).mkdir(parents=True, exist_ok=True)
    summary = EmbedSummary(out=str(out_path))
    dim = clip.provenance.embed_dim
    shards = dataset.shards()
    seen: set[str] = set()
    fingerprint = hashlib.sha256()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("shards · {task.fields[n]} samples"),
        disable=not show_progress,
        transient=False,
    )
    with progress:
        task = progress.add_task("embed", total=len(shards), n=0)
        for n, shard in enumerate(shards):
            img_rows: list[np.ndarray] = []
            txt_rows: list[np.ndarray] = []
            meta: dict[str, list[Any]] = {
                k: [] for k in ("id", "caption", "url", "image_ok", "text_ok", "error")
            }
            batches = batched(
                dataset.read_shard(shard),
                batch_size,
                lambda s: held_pixels(s, policy),
                batch_megapixels * 1_000_000,
            )
            for batch in batches:
                img = np.zeros((len(batch), dim), np.float32)
                txt = np.zeros((len(batch), dim), np.float32)
                pics, pic_rows, caps, cap_rows = [], [], [], []
                clips: list[tuple[int, list[Any]]] = []
                for i, s in enumerate(batch):
                    if s.id in seen:
                        raise DuplicateIdError([s.id], dataset.describe())
                    seen.add(s.id)
                    fingerprint.update(s.id.encode())
                    err = s.error
                    if err is None:
                        dec = decode_sample(s, policy)
                        if dec.frames:  # a video: its sampled frames, averaged below
                            clips.append((i, dec.frames))
                        elif dec.image is not None:
                            pics.append(dec.image)
                            pic_rows.append(i)
                        else:
                            err = dec.error
                    if s.caption:
                        caps.append(s.caption)
                        cap_rows.append(i)
                    meta["id"].append(s.id)
                    meta["caption"].append(s.caption)
                    meta["url"].append(s.url)
                    meta["image_ok"].append(err is None)
                    meta["text_ok"].append(bool(s.caption))
                    meta["error"].append(err)
                    if err:
                        summary.errors[err] = summary.errors.get(err, 0) + 1
                if pics:
                    img[pic_rows] = clip.encode_images(pics, batch_size=batch_size)
                for i, frames in clips:  # the clip: the renormalised mean of its frames
                    e = clip.encode_images(frames, batch_size=batch_size).mean(axis=0)
                    img[i] = e / max(float(np.linalg.norm(e)), 1e-12)
                if caps:
                    txt[cap_rows] = clip.encode_texts(caps)
                img_rows.append(img)
                txt_rows.append(txt)
                summary.samples += len(batch)
                summary.images_embedded += len(pics) + len(clips)
                summary.texts_embedded += len(caps)
                progress.update(task, n=summary.samples)
            img_all = np.concatenate(img_rows) if img_rows else np.zeros((0, dim), np.float32)
            txt_all = np.concatenate(txt_rows) if txt_rows else np.zeros((0, dim), np.float32)
            atomic_write_bytes(out_path / "img_emb" / f"img_emb_{n}.npy", _npy_bytes(img_all))
            atomic_write_bytes(out_path / "text_emb" / f"text_emb_{n}.npy", _npy_bytes(txt_all))
            table = pa.Table.from_pydict(
                meta,
                schema=pa.schema(
                    [
                        ("id", pa.string()),
                        ("caption", pa.string()),
                        ("url", pa.string()),
                        ("image_ok", pa.bool_()),
                        ("text_ok", pa.bool_()),
                        ("error", pa.string()),
                    ]
                ),
            )
            buf = io.BytesIO()
            pq.write_table(table, buf)
            atomic_write_bytes(out_path / "metadata" / f"metadata_{n}.parquet", buf.getvalue())
            summary.shards += 1
            progress.advance(task)
    record = {
        "summary": summary.to_dict(),
        "model": clip.provenance.to_dict(),
        "dataset": {
            "format": dataset.format,
            "source": dataset.describe(),
            "shards": shards,
            "ids_sha256": fingerprint.hexdigest(),
        },
        "video_sampling": str(policy),
    }
    atomic_write_bytes(
        out_path / "embed.json", json.dumps(record, indent=2, sort_keys=True).encode("utf-8")
    )
    return summary
