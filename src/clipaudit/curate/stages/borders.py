"""Uniform black or white borders trimmed before an image is hashed.

A letterboxed or framed copy (a black bar, a white mat) shares no pHash with its original:
the border moves every DCT term. Trimming near-black or near-white bands of even colour from
each edge before hashing makes the copy's hashes and thumbnail the original's again. Only
those two colours are trimmed (a coloured background is content: two shapes on two plain
backgrounds must stay apart), at most ``MAX_SHARE`` of a side, and only bands at least
``MIN_SHARE`` of it (a one-pixel frame line is left alone).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PROBE_SIDE = 256  # borders are found on a copy at most this large (cheap at any size)
DARK, LIGHT = 24.0, 231.0  # a band's mean at or below / at or above: black / white
FLAT = 6.0  # a band line's standard deviation at most this (JPEG ringing included)
MAX_SHARE = 0.35
MIN_SHARE = 0.02


def _run(lines: np.ndarray) -> int:
    """How many leading lines (rows of ``lines``) are one flat near-black or near-white band."""
    mean, std = lines.mean(axis=1), lines.std(axis=1)
    first = mean[0]
    if not (first <= DARK or first >= LIGHT):
        return 0
    ok = (std <= FLAT) & (np.abs(mean - first) <= 12.0)
    return len(ok) if ok.all() else int(np.argmin(ok))


MIN_CONTENT = 0.25  # less content than this share of a side: not a border, an image of one
ROUNDS = 3  # a black frame around a white mat (or a photo's own white margin): peeled in turn


def border_box(im: Image.Image) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom) inside uniform black or white borders, or None.

    Borders are peeled a band colour at a time, up to ``ROUNDS`` times: a black border
    added around a photo whose own margin is white trims to the same box as the photo."""
    w, h = im.size
    left, top, right, bottom = 0, 0, w, h
    for _ in range(ROUNDS):
        box = _one_border(
            im
            if (left, top, right, bottom) == (0, 0, w, h)
            else im.crop((left, top, right, bottom))
        )
        if box is None:
            break
        left, top, right, bottom = left + box[0], top + box[1], left + box[2], top + box[3]
    if (left, top, right, bottom) == (0, 0, w, h):
        return None
    if right - left < w * MIN_CONTENT or bottom - top < h * MIN_CONTENT:
        return None
    return left, top, right, bottom


def _one_border(im: Image.Image) -> tuple[int, int, int, int] | None:
    """One round: the box inside the black or white bands at the edges, or None."""
    w, h = im.size
    if w < 16 or h < 16:
        return None
    probe = im.convert("L")
    if max(w, h) > PROBE_SIDE:
        probe = probe.reduce(max(1, max(w, h) // PROBE_SIDE))
    g = np.asarray(probe, np.float32)
    ph, pw = g.shape
    cap_h, cap_w = int(ph * MAX_SHARE), int(pw * MAX_SHARE)
    top = min(_run(g[:cap_h]), cap_h)
    bottom = min(_run(g[::-1][:cap_h]), cap_h)
    left = min(_run(g.T[:cap_w]), cap_w)
    right = min(_run(g.T[::-1][:cap_w]), cap_w)
    cuts = [
        c if c >= max(1, round(n * MIN_SHARE)) else 0
        for c, n in ((left, pw), (top, ph), (right, pw), (bottom, ph))
    ]
    if not any(cuts):
        return None
    sx, sy = w / pw, h / ph
    # One probe pixel inward on each trimmed side: the band's edge is blurred by the resize.
    box = (
        int(np.ceil((cuts[0] + (cuts[0] > 0)) * sx)),
        int(np.ceil((cuts[1] + (cuts[1] > 0)) * sy)),
        w - int(np.ceil((cuts[2] + (cuts[2] > 0)) * sx)),
        h - int(np.ceil((cuts[3] + (cuts[3] > 0)) * sy)),
    )
    if box[2] - box[0] < w * MIN_CONTENT or box[3] - box[1] < h * MIN_CONTENT:
        return None
    return box
