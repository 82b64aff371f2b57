"""Trial: is a lone logo missed for its unseen shape, or is any lone graphic hard to find?

A logo alone in a single or centre spot is what caps the shipped detector (found about 0.15).

    python bench/visible_lone_logo_trial.py --photos ../shared/photos

On every held-out photo (the card's held-out part, never trained on) the same overlay is drawn
twice, a logo alone in a single or centre spot (alternating), once with one of the training
logo shapes and once with one of the held-out shapes: size, opacity, angle and colour are the
same (plain fill), the spot is drawn alike (the same seed, though a shape that draws random
parts moves it), and both are degraded alike (one JPEG, one blur).
The shipped detector scores the clean photo and both marked ones; the threshold flags 1% of
the clean photos. If training shapes are found far more often than held-out shapes, the cure
is more shapes in training; if both are missed, it is not. Writes
bench/results/visible_lone_logo_trial.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clipaudit.calibrate.intervals import wilson
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import BUNDLED_DIR, load_from
from clipaudit.safety.visible.marks import apply_overlay, draw_overlay, logos_of
from clipaudit.safety.visible.train import marked_photos, threshold_at

LAYOUTS = ("single", "center")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--detector", default=str(BUNDLED_DIR))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/visible_lone_logo_trial.json")
    a = ap.parse_args()
    folder = Path(a.photos)
    if not folder.is_dir():
        sys.exit(f"--photos {folder} is not a folder: give the folder of real photographs")
    det = load_from(Path(a.detector))
    t0 = time.time()
    held = vd.Bank.build("heldout", 0, folder, "held_out", skip=marked_photos())
    rng = random.Random(f"lone-logo:{a.seed}")
    train_shapes, held_shapes = logos_of("train"), logos_of("heldout")
    clean: list[np.ndarray] = []
    seen: list[np.ndarray] = []
    unseen: list[np.ndarray] = []
    layouts: list[str] = []
    for i, im in enumerate(held.photos):
        layout = LAYOUTS[i % 2]
        ov = replace(draw_overlay(rng, "heldout", layout), kind="logo", effect="fill")
        shapes = (rng.choice(train_shapes), rng.choice(held_shapes))
        ovs = [replace(ov, logo=shape) for shape in shapes]
        place, post = rng.getrandbits(32), rng.getrandbits(32)
        clean.append(det.to_input(vd.degrade(random.Random(post), im)))
        for o, out in zip(ovs, (seen, unseen), strict=True):
            marked = apply_overlay(im, o, random.Random(place))
            out.append(det.to_input(vd.degrade(random.Random(post), marked)))
        layouts.append(layout)
    c, s, u = (det.score_arrays(np.stack(x)) for x in (clean, seen, unseen))
    thr = threshold_at(c, 0.01)
    lay = np.array(layouts)

    def found(scores: np.ndarray, sel: np.ndarray) -> dict[str, Any]:
        k, n = int((scores[sel] >= thr).sum()), int(sel.sum())
        return {"detected": round(k / n, 4), "k": k, "n": n, "ci95": wilson(k, n)}

    rows = {
        f"{name} / {where}": found(sc, lay == where if where != "both" else lay == lay)
        for name, sc in (("training shape", s), ("held-out shape", u))
        for where in (*LAYOUTS, "both")
    }
    res: dict[str, Any] = {
        "what": __doc__.splitlines()[0],
        "photos": len(c),
        "clean_flagged": round(float((c >= thr).mean()), 4),
        "training_shapes": list(train_shapes),
        "held_out_shapes": list(held_shapes),
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    for name, row in rows.items():
        print(f"{name:32s} {row}", flush=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
