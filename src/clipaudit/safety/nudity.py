"""The ``nudenet`` detector (weights ``320n.onnx`` ship in its wheel) as per-class max scores.

``NudeDetector.detect`` takes a path, bytes or a BGR array; we hand it the already decoded
image as a BGR array (the order ``cv2.imread`` gives, so scores equal the path route's) and
never write a temporary file: NSFW pixels are never written anywhere. Its ONNX session is
rebuilt with one intra-op thread, since the curate pipeline already runs one detection per
worker thread and ONNX Runtime's default (one thread per core) would oversubscribe small
machines. ``InferenceSession.run`` is thread-safe, so one detector serves every thread.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Protocol

import numpy as np
from PIL import Image

# Every class nudenet 3.4 reports.
ALL_CLASSES: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
# The explicit ones: what counts by default.
EXPOSED_CLASSES: tuple[str, ...] = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)


class Detector(Protocol):
    """What the NSFW stage needs from a detector (tests inject stubs)."""

    def scores(self, image: Image.Image) -> dict[str, float]: ...


class NudeNet:
    """nudenet's detector, one intra-op thread per call."""

    def __init__(self, threads: int = 1) -> None:
        import nudenet
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
        self._det = nudenet.NudeDetector(model_path=path)
        self._det.onnx_session = ort.InferenceSession(
            path, opts, providers=["CPUExecutionProvider"]
        )

    def scores(self, image: Image.Image) -> dict[str, float]:
        """Max score per detected class (nudenet reports boxes scoring 0.2 and up)."""
        import cv2

        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8)[:, :, ::-1])
        try:
            found = self._det.detect(bgr)
        except cv2.error as exc:  # OpenCV's errors are not ValueErrors: one type for callers
            raise ValueError(str(exc)) from exc
        out: dict[str, float] = {}
        for d in found:
            c, s = str(d["class"]), round(float(d["score"]), 4)
            out[c] = max(out.get(c, 0.0), s)
        return dict(sorted(out.items()))


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _shared() -> NudeNet:
    return NudeNet()


def shared_detector() -> NudeNet:
    """One detector per process (its session is ~12 MB and takes ~0.2 s to build)."""
    with _lock:
        return _shared()
