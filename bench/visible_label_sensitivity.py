"""How much the visible-watermark card's real-photo figures owe to which photos are labelled
"already marked" (``photos_with_marks.json``).

Labels found by screening with our own detector can only remove the photos that detector
flags from the clean set, which lowers the measured false-positive rate by construction. So
the card's headline (AUROC, TPR at the 1%-FPR threshold chosen on the clean tune photos, FPR
on the clean held-out photos) is measured here under three label sets, with the shipped
detector, the same way ``visible.train.real_photo_metrics`` measures it:

- ``round1``: the labels before the second round;
- ``round1+text_edge``: plus the second-round labels the independent text screen ranked
  (whether or not the detector screen also did);
- ``all``: every label.

    python bench/visible_label_sensitivity.py --photos ../shared/photos

Writes ``bench/results/visible_label_sensitivity.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results" / "visible_label_sensitivity.json"


def measure(folder: Path, skip: frozenset[str]) -> dict[str, Any]:
    from clipaudit.safety.visible import data as vd
    from clipaudit.safety.visible.detector import load_detector
    from clipaudit.safety.visible.train import auroc, rate_ci, threshold_at

    det = load_detector()
    with vd.input_size(det.input_size):
        tune = vd.Bank.build("heldout", 0, folder, "tune", skip=skip)
        tc, _, _ = tune.whole(random.Random("visible-tune:0"), "heldout")
        held = vd.Bank.build("heldout", 0, folder, "held_out", skip=skip)
        hc, hm, _ = held.whole(random.Random("visible-real:0"), "heldout")
    thr = threshold_at(det.score_arrays(tc), 0.01)
    sc, sm = det.score_arrays(hc), det.score_arrays(hm)
    return {
        "labels": len(skip),
        "tune_photos": len(tc),
        "held_out_photos": len(hc),
        "threshold_fpr_0.01": round(thr, 6),
        "auroc": round(auroc(sc, sm), 4),
        "tpr": rate_ci(sm, thr),
        "fpr": rate_ci(sc, thr),
    }


def main(argv: list[str] | None = None) -> None:
    from clipaudit.safety.visible.train import MARKED_PHOTOS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True)
    a = ap.parse_args(argv)
    folder = Path(a.photos)
    if not folder.is_dir():
        ap.error(f"--photos {a.photos} is not a folder; give the shared photos folder")
    record = json.loads(MARKED_PHOTOS.read_text(encoding="utf-8"))
    found = record.get("round2_found_by", {})
    every = frozenset(record["photos"])
    round1 = every - set(found)
    sets = {
        "round1": round1,
        "round1+text_edge": round1 | {n for n, s in found.items() if "text_edge" in s},
        "all": every,
    }
    t = time.time()
    out: dict[str, Any] = {name: measure(folder, skip) for name, skip in sets.items()}
    out["seconds"] = round(time.time() - t, 1)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
