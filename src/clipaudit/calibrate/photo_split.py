"""A fixed split of a folder of real photographs into calibration and held-out parts.

The split is a function of each file's path relative to the folder (a keyed hash), so it is
the same on every machine, does not depend on the order files are listed in, and a photo
added later does not move the others. Near-copies inside a source (the clothing set has a
few) can still fall on both sides; the split is by file, which the card says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

Part = Literal["calibration", "held_out"]
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
HELD_OUT_SHARE = 0.3
_KEY = b"clipaudit-photo-split-v1"


def part_of(relpath: str, held_out: float = HELD_OUT_SHARE) -> Part:
    """Which part a photo belongs to, from its path relative to the photo folder."""
    digest = hashlib.blake2b(relpath.encode(), key=_KEY, digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "held_out" if u < held_out else "calibration"


def photos(folder: str | Path, part: Part | None = None) -> list[Path]:
    """The photos under ``folder`` (sorted), all or one part of them."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a folder of photos; pass the folder that holds them"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if part is None:
        return files
    return [p for p in files if part_of(p.relative_to(root).as_posix()) == part]


TUNE_SHARE = 0.2
_TUNE_KEY = b"clipaudit-photo-tune-v1"


def is_tune(relpath: str, share: float = TUNE_SHARE) -> bool:
    """Whether a calibration photo is kept back from training to choose thresholds on (a
    second keyed hash, independent of the held-out split)."""
    digest = hashlib.blake2b(relpath.encode(), key=_TUNE_KEY, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share
