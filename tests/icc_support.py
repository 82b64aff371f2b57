"""Tiny ICC profiles built byte by byte, so the colour tests need no profile files.

- ``rgb_profile``: a matrix/TRC display profile (Adobe RGB (1998)'s D50 colorants and gamma
  by default), the kind cameras and editors embed in wide-gamut photos.
- ``cmyk_profile``: a 2-point lut8 CMYK → Lab input profile whose inks are those of coated
  press stock (cyan prints as (0, 158, 224) in sRGB, not the naive (0, 255, 255)).
"""

from __future__ import annotations

import itertools
import struct

import numpy as np

D50 = (0.9642, 1.0, 0.8249)
ADOBE_RGB_COLORANTS = (
    (0.60974, 0.31111, 0.01947),
    (0.20528, 0.62567, 0.06087),
    (0.14919, 0.06322, 0.74457),
)
# sRGB of process inks on coated paper; black is a rich, not perfect, black.
PRESS_INKS = {"C": (0, 158, 224), "M": (226, 0, 122), "Y": (255, 237, 0), "K": (35, 31, 32)}


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz_tag(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _desc(text: str) -> bytes:
    s = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(s), 28) + s


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _profile(cls: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    table = struct.pack(">I", len(tags))
    offset = 128 + 4 + 12 * len(tags)
    body = b""
    for sig, data in tags.items():
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += _pad(data)
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + bytes([4, 0x30, 0, 0])
        + cls
        + space
        + pcs
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + b"\0\0\0\0"  # rendering intent
        + b"".join(_s15(v) for v in D50)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + body


def rgb_profile(
    name: str = "Adobe RGB (1998)",
    colorants: tuple[tuple[float, float, float], ...] = ADOBE_RGB_COLORANTS,
    gamma: float = 563 / 256,
) -> bytes:
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    tags = {
        b"desc": _desc(name),
        b"wtpt": _xyz_tag(D50),
        b"rXYZ": _xyz_tag(colorants[0]),
        b"gXYZ": _xyz_tag(colorants[1]),
        b"bXYZ": _xyz_tag(colorants[2]),
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
    }
    return _profile(b"mntr", b"RGB ", b"XYZ ", tags)


def srgb_to_lab_d50(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D50, as the ICC connection space) of sRGB values in 0..255."""
    c = np.asarray(rgb, dtype=np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    # sRGB's D50-adapted (Bradford) matrix, as in the sRGB ICC profile.
    m = np.array(
        [
            [0.4360747, 0.3850649, 0.1430804],
            [0.2225045, 0.7168786, 0.0606169],
            [0.0139322, 0.0971045, 0.7141733],
        ]
    )
    xyz = lin @ m.T / np.array(D50)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def press_rgb(c: int, m: int, y: int, k: int) -> np.ndarray:
    """The sRGB a corner of CMYK (each 0 or 1) prints as: the inks' reflectances multiplied."""
    out = np.ones(3)
    for ink, on in zip("CMYK", (c, m, y, k), strict=True):
        if on:
            out = out * np.array(PRESS_INKS[ink]) / 255
    return out * 255


def cmyk_profile(name: str = "Coated press test CMYK") -> bytes:
    grid = []
    for corner in itertools.product((0, 1), repeat=4):  # C slowest, K fastest, as lut8 orders
        lab = srgb_to_lab_d50(press_rgb(*corner))
        enc = [lab[0] * 255 / 100, lab[1] + 128, lab[2] + 128]
        grid.append(bytes(int(np.clip(round(v), 0, 255)) for v in enc))
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ramp = bytes(range(256))
    lut = b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + identity + ramp * 4 + b"".join(grid) + ramp * 3
    tags = {b"desc": _desc(name), b"wtpt": _xyz_tag(D50), b"A2B0": lut}
    return _profile(b"prtr", b"CMYK", b"Lab ", tags)
