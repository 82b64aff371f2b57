"""Pack what the detector trains on for a machine that lacks it (a lent GPU machine, which
receives only the repository, at most 64 MiB of it):

    python -m clipaudit.safety.visible.pack --photos ../shared/photos --out .gpu

writes ``photos/`` (the photo folder's fit part, longer side capped at ``--max-side``, WebP,
which holds a photo in about two thirds of a JPEG's bytes, under the same relative names so
the keyed split is the same; images open by content, not by name), ``fonts/`` (every text font
found here, cut to the Latin characters marks are written in) and ``PACK.json``.
The tune and held-out photos never leave this machine: weights trained there are measured
here (``visible.train --steps 0 --init DIR``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible import marks

# Marks are written in ASCII, Latin-1 (©, accents), dashes, quotes, bullets and ellipses.
LATIN = [*range(0x20, 0x7F), *range(0xA0, 0x100), 0x2013, 0x2014, *range(0x2018, 0x201F),
         0x2022, 0x2026]  # fmt: skip


def subset_font(src: Path, dst: Path) -> None:
    """``src`` cut to the LATIN characters (outlines and names kept; hinting and layout
    tables dropped: Pillow's basic layout reads neither), or copied whole where fontTools
    cannot cut it."""
    from fontTools import subset

    logging.getLogger("fontTools").setLevel(logging.ERROR)
    opts = subset.Options()
    opts.hinting = False
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    try:
        font = subset.load_font(str(src), opts)
        sub = subset.Subsetter(opts)
        sub.populate(unicodes=LATIN)
        sub.subset(font)
        subset.save_font(font, str(dst), opts)
    except Exception:  # a font fontTools cannot cut still trains, whole
        shutil.copyfile(src, dst)


def pack(photos: Path, out: Path, max_side: int = 256, quality: int = 80) -> dict[str, Any]:
    from clipaudit.safety.visible.train import marked_photos

    named = vd.load_photos(photos, "fit", max_side=max_side, skip=marked_photos())
    for rel, im in named.items():
        dst = out / "photos" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, format="WEBP", quality=quality)
    font_out = out / "fonts"
    font_out.mkdir(parents=True, exist_ok=True)
    found = marks.fonts()
    for stem, path in found.items():
        subset_font(path, font_out / f"{stem}{path.suffix.lower()}")

    def size(d: Path) -> int:
        return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())

    record = {
        "photos": len(named),
        "photos_part": "fit (calibration minus tune, minus photos_with_marks.json)",
        "max_side": max_side,
        "format": "WebP under the original names",
        "quality": quality,
        "fonts": len(found),
        "bytes": {"photos": size(out / "photos"), "fonts": size(font_out)},
    }
    (out / "PACK.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path, help="the photo folder")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=80)
    a = ap.parse_args(argv)
    if not a.photos.is_dir():
        ap.error(f"--photos {a.photos} is not a folder; pass the folder that holds the photos")
    if a.out.exists() and any(a.out.iterdir()):
        ap.error(f"--out {a.out} is not empty; give a new folder")
    print(json.dumps(pack(a.photos, a.out, a.max_side, a.quality)))


if __name__ == "__main__":
    main()
