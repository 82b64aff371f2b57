"""Screen a photo folder for photos that already carry a visible mark, for labelling by eye.

The visible-watermark card counts a clean photo the detector flags as a false positive, so a
clean set that holds real credit lines, copyright notes and date stamps inflates the
false-positive rate and pushes the threshold up. ``photos_with_marks.json`` lists the photos
found to carry a mark; this script ranks the rest for the next round of inspection by two
screens, so the labels do not rest on our detector alone:

- ``detector``: the shipped visible-watermark detector's score on the whole photo;
- ``text_edge``: an independent text detector (PP-OCRv4's DB text detector, shipped inside
  the ``rapidocr-onnxruntime`` wheel, Apache-2.0, in the ``bench`` extra; trained on real
  scene and document text, never on our marks): the share of text pixels in the outer 18%
  of the frame, where credit lines, signatures and date stamps sit.

    python bench/visible_screen_photos.py --photos ../shared/photos --top 240 --out /tmp/screen

Writes ``ranking.csv`` (every photo, both scores, rank under each, part) and contact sheets
(``sheet_<screen>_<k>.png``, 20 photos each with their rank) of the top ``--top`` photos under
each screen that are not labelled yet, for a person to read. The labels themselves go into
``src/clipaudit/safety/visible/photos_with_marks.json`` by hand, under its rules.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

EDGE = 0.18  # the outer share of each side searched for text
TEXT_PIXEL = 0.3  # DB's own binarisation threshold (rapidocr's default)
TEXT_SIZE = 640  # DB reads small text; the longer side is padded/resized to this


def text_detector() -> object:
    import onnxruntime as ort

    try:
        import rapidocr_onnxruntime
    except ImportError:
        sys.exit("the text screen needs rapidocr-onnxruntime: pip install -e '.[bench]'")

    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def text_map(sess: Any, im: Image.Image, side: int = TEXT_SIZE) -> np.ndarray:
    """DB's text probability map with the longer side at ``side`` (multiples of 32)."""
    w, h = im.size
    s = side / max(w, h)
    nw, nh = max(32, round(w * s / 32) * 32), max(32, round(h * s / 32) * 32)
    x = np.asarray(im.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR), np.float32)
    x = (x[..., ::-1] / 255.0 - 0.5) / 0.5  # BGR, as PaddleOCR trained it
    return sess.run(None, {"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0, 0]


def text_edge_share(sess: object, im: Image.Image) -> float:
    """Share of DB text pixels in the outer EDGE band of the frame."""
    text = text_map(sess, im) > TEXT_PIXEL
    nh, nw = text.shape
    ey, ex = max(1, int(nh * EDGE)), max(1, int(nw * EDGE))
    band = np.ones_like(text)
    band[ey:-ey, ex:-ex] = False
    return float(text[band].mean())


def sheet(folder: Path, rows: list[tuple[int, str]], path: Path, tile: int = 384) -> None:
    """20 photos, 5 × 4, each with its rank and name under it."""
    out = Image.new("RGB", (tile * 5, (tile + 18) * 4), "white")
    d = ImageDraw.Draw(out)
    for k, (rank, name) in enumerate(rows):
        im = Image.open(folder / name).convert("RGB")
        im.thumbnail((tile, tile), Image.Resampling.LANCZOS)
        x, y = (k % 5) * tile, (k // 5) * (tile + 18)
        out.paste(im, (x, y))
        d.text((x + 2, y + tile + 2), f"{rank} {name[-40:]}", fill="black")
    out.save(path)


def main(argv: list[str] | None = None) -> None:
    from clipaudit.calibrate.photo_split import is_tune, part_of, photos
    from clipaudit.data.decode import decode_image
    from clipaudit.safety.visible import data as vd
    from clipaudit.safety.visible.detector import load_detector
    from clipaudit.safety.visible.train import marked_photos

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top", type=int, default=240)
    a = ap.parse_args(argv)
    folder, out = Path(a.photos), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    det, sess, labelled = load_detector(), text_detector(), marked_photos()
    rows: list[dict[str, object]] = []
    t0 = time.time()
    for p in photos(folder):
        rel = p.relative_to(folder).as_posix()
        im = decode_image(p.read_bytes()).image
        if im is None:
            continue
        im = im.convert("RGB")
        held = part_of(rel) == "held_out"
        part = "held_out" if held else ("tune" if is_tune(rel) else "fit")
        x = vd.to_input(im, det.input_size)[None]
        rows.append({
            "photo": rel, "part": part, "labelled": rel in labelled,
            "detector": float(det.score_arrays(x)[0]), "text_edge": text_edge_share(sess, im),
        })  # fmt: skip
    for key in ("detector", "text_edge"):
        order = sorted(range(len(rows)), key=lambda i: -float(rows[i][key]))  # type: ignore[arg-type]
        for r, i in enumerate(order):
            rows[i][f"rank_{key}"] = r + 1
        todo = [
            (r + 1, str(rows[i]["photo"])) for r, i in enumerate(order) if not rows[i]["labelled"]
        ]
        todo = todo[: a.top]
        for k in range(0, len(todo), 20):
            sheet(folder, todo[k : k + 20], out / f"sheet_{key}_{k // 20:02d}.png")
    with open(out / "ranking.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} photos screened in {time.time() - t0:.0f} s; sheets under {out}")


if __name__ == "__main__":
    main()
