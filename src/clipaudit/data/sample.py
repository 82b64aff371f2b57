"""The Sample record every reader yields and every writer takes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Extensions a reader recognises as the image of a sample, in order of preference.
# AVIF and JPEG 2000 decode with Pillow's wheels; HEIC/HEIF (phone photos) needs the optional
# pillow-heif, and without it is a sample with a reason code, never a file passed over.
IMAGE_EXTS: tuple[str, ...] = (
    "jpg",
    "jpeg",
    "png",
    "webp",
    "gif",
    "bmp",
    "tif",
    "tiff",
    "avif",
    "heic",
    "heif",
    "jp2",
)
# Video members (as video2dataset writes them, and the broadcast, camera and older web
# containers PyAV reads: an image folder of .ts or .3gp clips was read as empty, with no
# word); a sample's media is one or the other.
VIDEO_EXTS: tuple[str, ...] = (
    "mp4",
    "webm",
    "mkv",
    "mov",
    "m4v",
    "avi",
    "ts",
    "mts",
    "m2ts",
    "mpg",
    "mpeg",
    "flv",
    "3gp",
    "3g2",
    "ogv",
    "wmv",
)
MEDIA_EXTS: tuple[str, ...] = IMAGE_EXTS + VIDEO_EXTS
# Where one sample has members of both kinds, the clip is the sample: video corpora put a
# poster frame (.jpg) beside each .mp4, which was curated instead of the clip.
SAMPLE_MEDIA_ORDER: tuple[str, ...] = VIDEO_EXTS + IMAGE_EXTS

# Reader codes that leave the image whole: the sample is still decoded and scored by every
# stage, so a broken ``.json`` cannot carry an image past the NSFW or duplicate checks.
SOFT_READ_ERRORS: frozenset[str] = frozenset({"bad_metadata"})


@dataclass(frozen=True)
class SourceRow:
    """A table row as the input stored it, so a kept dataset in the input's own format keeps
    the input's columns and types (a label's ClassLabel, a timestamp, a struct) instead of
    folding them into a ``meta`` JSON string. ``schema`` is the arrow schema (parquet) or the
    ``datasets.Features`` (hf) of the input; ``image_column`` holds the image cell, whose
    bytes the writer sets from the sample; ``id_column`` is a column the writer adds with the
    run's sample id where the input has no id column of its own (None: it has one)."""

    format: str
    schema: Any
    row: dict[str, Any]
    image_column: str
    id_column: str | None = None
    # Format-specific: an hf dataset's DatasetInfo (description, licence, citation).
    extra: Any = None
    # The input's own id column, whose cells the writer sets to the run's ids where they are
    # text: an empty or blank id was replaced by a generated one, and kept rows must join
    # the decisions.
    own_id_column: str | None = None


@dataclass
class Sample:
    """One image-caption pair.

    ``image`` holds the encoded bytes exactly as stored (decoding is lazy and lives in
    :mod:`clipaudit.data.decode`); ``image_ext`` is the extension the bytes were stored under,
    so writers can round-trip them. ``error`` is a reader-level reason code (e.g.
    ``missing_image``, ``unsafe_path``) for a sample that exists but could not be read whole.
    """

    id: str
    image: bytes | None
    caption: str | None = None
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    image_ext: str | None = None
    error: str | None = None
    # The row as stored, where the reader was asked for it (``Dataset.keep_rows``).
    source: SourceRow | None = field(default=None, compare=False, repr=False)

    def scorable_image(self) -> bytes | None:
        """The image bytes when the reader's code (if any) leaves the image usable."""
        return self.image if self.error is None or self.error in SOFT_READ_ERRORS else None

    @property
    def media(self) -> str:
        """``video`` or ``image``: by the bytes' magic where they have one a reader knows,
        else by the extension. Names lie: a JPEG saved as ``.mp4`` was decoded as a one-frame
        MJPEG clip and an mp4 saved as ``.jpg`` was a decode_error, while the same bytes in a
        Parquet column (no name) were told apart correctly."""
        sniffed = sniff_image_ext(self.image)
        if sniffed in VIDEO_EXTS:
            return "video"
        if sniffed != "bin":
            return "image"
        return "video" if self.image_ext in VIDEO_EXTS else "image"

    def image_sha256(self) -> str | None:
        return hashlib.sha256(self.image).hexdigest() if self.image is not None else None


def sniff_image_ext(data: bytes | None) -> str:
    """Guess a file extension from magic bytes; ``bin`` when unknown."""
    if not data:
        return "bin"
    magic = {
        b"\xff\xd8\xff": "jpg",
        b"\x89PNG\r\n\x1a\n": "png",
        b"GIF87a": "gif",
        b"GIF89a": "gif",
        b"BM": "bmp",
        b"II*\x00": "tif",
        b"MM\x00*": "tif",
    }
    for prefix, ext in magic.items():
        if data.startswith(prefix):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or data.startswith(b"\xff\x4f\xff\x51"):
        return "jp2"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _iso_media_ext(data)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in data[:64] else "mkv"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return _stream_media_ext(data)


def _stream_media_ext(data: bytes) -> str:
    """Containers of the broadcast and older web kinds, by their own magic; ``bin`` if none."""
    if data.startswith(b"FLV\x01"):
        return "flv"
    if data.startswith(b"\x00\x00\x01\xba"):  # an MPEG program stream pack header
        return "mpg"
    if data.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):  # the ASF header object
        return "wmv"
    if data.startswith(b"OggS") and b"theora" in data[:256]:
        return "ogv"
    # MPEG transport stream: a sync byte every 188 bytes (192 in Blu-ray's m2ts).
    for size, start in ((188, 0), (192, 4)):
        if len(data) >= start + 3 * size and all(data[start + k * size] == 0x47 for k in range(3)):
            return "ts"
    return "bin"


# ISO base media files (mp4, mov, and also AVIF and HEIF still images) say what they hold in
# the ftyp box's major and compatible brands; an image brand there makes the file an image.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def _iso_media_ext(data: bytes) -> str:
    size = int.from_bytes(data[:4], "big")
    box = data[8 : max(12, min(size, 256))]  # major brand, minor version, compatible brands
    brands = {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heic"
    return "mov" if data[8:10] == b"qt" else "mp4"


def content_id(image: bytes | None, caption: str | None, url: str | None) -> str:
    """A stable id for a sample that has no key: a hash of what it holds."""
    h = hashlib.sha256()
    for part in (image or b"", (caption or "").encode("utf-8"), (url or "").encode("utf-8")):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:20]


class GeneratedIds:
    """Content-hash ids made unique deterministically: the n-th repeat gets ``-n``.

    Only ids the dataset itself supplies can be duplicates (an error); ids we derive from
    content must not turn an exact duplicate image into a fatal error, since finding those
    is the curation pipeline's job. Shards are read apart (in parallel, resumed one by one),
    so a row repeated in another shard cannot be counted here: in a dataset of several
    shards each generated id carries its shard's position (``-s3``), and a crawl that saw
    one picture in two files gets two ids, not a run that stops at decide.
    """

    def __init__(self, shard: int | None = None) -> None:
        self._seen: dict[str, int] = {}
        self._scope = "" if shard is None else f"-s{shard}"

    @classmethod
    def for_shard(cls, shards: list[str], shard: str) -> GeneratedIds:
        """The ids of ``shard`` among ``shards``: scoped by its position where there are
        several, plain content hashes where there is one."""
        return cls(shards.index(shard) if len(shards) > 1 else None)

    def make(self, image: bytes | None, caption: str | None, url: str | None) -> str:
        base = content_id(image, caption, url) + self._scope
        n = self._seen.get(base, 0) + 1
        self._seen[base] = n
        return base if n == 1 else f"{base}-{n}"
