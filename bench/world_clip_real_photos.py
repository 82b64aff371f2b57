"""The bundled world-trained CLIP on real photographs: right captions against wrong ones.

Why decide applies no alignment threshold for it on data the world did not make.

Caltech-101 photos from ``--photos`` (``--per-class`` of each class, seeded), each captioned
"a photo of a CLASS" and, as the misaligned arm, with another class's name drawn at random.
Reports the aligned and misaligned mean cosines, the AUROC of cosine for right against wrong
captions, and the share of each arm under the model's alignment cut in the default pack.
Writes bench/results/world_clip_real_photos.json.

    python bench/world_clip_real_photos.py --photos ../shared/photos
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bundled:world-clip"


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a right caption scores above a wrong one), ties counted half."""
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "world_clip_real_photos.json"
    )
    a = ap.parse_args()
    root = a.photos / "caltech101"
    if not root.is_dir():
        sys.exit(f"--photos {a.photos} has no caltech101 folder: give the shared photos folder")
    from PIL import Image

    from clipaudit.models.loader import load_clip
    from clipaudit.rules.schema import load_pack

    rng = random.Random(0)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = []
    for c in classes:
        files = sorted((root / c).glob("*.jpg"))
        items += [(f, c) for f in rng.sample(files, min(a.per_class, len(files)))]

    def caption(c: str) -> str:
        return f"a photo of a {c.replace('_', ' ').lower()}"

    right = [caption(c) for _, c in items]
    wrong = [caption(rng.choice([k for k in classes if k != c])) for _, c in items]
    clip = load_clip(MODEL)
    images = clip.encode_images([Image.open(f).convert("RGB") for f, _ in items])
    good = (images * clip.encode_texts(right)).sum(1)
    bad = (images * clip.encode_texts(wrong)).sum(1)
    cut = load_pack("default").alignment_for(MODEL).min
    out = {
        "what": __doc__.splitlines()[0],
        "model": MODEL,
        "photos": len(items),
        "classes": len(classes),
        "aligned_mean_cosine": round(float(good.mean()), 4),
        "misaligned_mean_cosine": round(float(bad.mean()), 4),
        "auroc_right_vs_wrong_caption": round(auroc(good, bad), 4),
        "default_pack_cut": cut,
        "aligned_under_cut": round(float((good < cut).mean()), 4),
        "misaligned_under_cut": round(float((bad < cut).mean()), 4),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    a.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
