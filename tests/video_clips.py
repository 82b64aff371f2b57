"""Clips for the picture tests, made with PyAV's own encoders (the CI machine has no ffmpeg
tool): HDR clips (PQ or HLG, BT.2020) whose signal is computed here from sRGB, an interlaced
clip whose two fields are shot at different moments, and anamorphic clips."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

SDR_WHITE_NITS = 203  # ITU-R BT.2408: SDR reference white in an HDR signal


_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
_Y2020 = np.array([0.2627, 0.6780, 0.0593])


def _linear_2020(rgb: np.ndarray) -> np.ndarray:
    """sRGB → linear light in BT.2020 primaries, 1.0 = sRGB white."""
    c = rgb.astype(np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.clip(lin @ _TO_2020.T, 0, 1)


def _ycbcr10(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-linear BT.2020 R'G'B' → 10-bit limited-range Y'CbCr planes (4:4:4)."""
    y = e @ _Y2020
    cb, cr = (e[..., 2] - y) / 1.8814, (e[..., 0] - y) / 1.4746
    return tuple(  # type: ignore[return-value]
        np.round(v).astype(np.uint16) for v in (64 + 876 * y, 512 + 896 * cb, 512 + 896 * cr)
    )


def pq_signal(
    rgb: np.ndarray, white: float = SDR_WHITE_NITS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10-bit limited-range BT.2020 Y'CbCr planes (4:4:4) of an sRGB picture as an HDR10
    camera records it: sRGB white at ``white`` nits (203), PQ (SMPTE ST 2084) transfer."""
    nits = _linear_2020(rgb) * white / 10000
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    p = nits**m1
    return _ycbcr10(((c1 + c2 * p) / (1 + c3 * p)) ** m2)


def hlg_signal(rgb: np.ndarray, peak: float = 1000.0) -> tuple[np.ndarray, ...]:
    """The same as an HLG (ARIB STD-B67) camera records it for a ``peak``-nit display: sRGB
    white at 203 nits, which is 75% of the signal (ITU-R BT.2408); the display's OOTF (system
    gamma 1.2) undone, then the HLG OETF."""
    disp = _linear_2020(rgb) * SDR_WHITE_NITS / peak
    yd = disp @ _Y2020
    gamma = 1.2
    scene = disp * np.power(np.maximum(yd, 1e-12), (1 - gamma) / gamma)[..., None]
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    log = a * np.log(np.maximum(12 * scene - b, 1e-12)) + c
    return _ycbcr10(np.where(scene <= 1 / 12, np.sqrt(3 * scene), log))


def _encode(
    w: int,
    h: int,
    codec: str,
    pix_fmt: str,
    n: int,
    frame: Callable[[int], Any],
    options: dict[str, str],
    setup: Callable[[Any], None] | None = None,
) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s: Any = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = options
        if setup is not None:
            setup(s.codec_context)
        for i in range(n):
            f = frame(i)
            f.pts = i
            for packet in s.encode(f):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return buf.getvalue()


def hdr10_clip(rgb: np.ndarray, n: int = 4) -> bytes:
    """``rgb`` (even sides) as an HEVC Main 10 clip tagged PQ / BT.2020, as a phone writes."""
    return hdr_clip(rgb, "pq", n)


def hdr_clip(
    rgb: np.ndarray,
    transfer: str,
    n: int = 4,
    white: float = SDR_WHITE_NITS,
    x265: str = "",
    codec: str = "libx265",
) -> bytes:
    """``rgb`` (even sides) as a 10-bit clip tagged BT.2020 and ``transfer`` (``pq``: SMPTE
    ST 2084, as HDR10 cameras write, sRGB white at ``white`` nits; ``hlg``: ARIB STD-B67, as
    phones write); HEVC in mp4, or ``codec="libsvtav1"`` for AV1 (as streaming services
    send HDR); ``x265``: more x265 parameters (e.g. HDR10 light levels)."""
    import os

    import av

    y, u, v = pq_signal(rgb, white) if transfer == "pq" else hlg_signal(rgb)
    h, w = y.shape
    planes = [y] + [
        p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).round().astype(np.uint16) for p in (u, v)
    ]
    trc, name = (16, "smpte2084") if transfer == "pq" else (18, "arib-std-b67")
    tags = {"color_primaries": 9, "color_trc": trc, "colorspace": 9, "color_range": 1}

    def frame(_: int) -> Any:
        f = av.VideoFrame(w, h, "yuv420p10le")
        for plane, arr in zip(f.planes, planes, strict=True):
            padded = np.zeros((arr.shape[0], plane.line_size // 2), np.uint16)
            padded[:, : arr.shape[1]] = arr
            plane.update(padded.tobytes())
        for k, val in tags.items():
            setattr(f, k, val)
        return f

    def setup(cc: Any) -> None:
        for k, val in tags.items():
            setattr(cc, k, val)

    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT prints its set-up otherwise
        return _encode(w, h, codec, "yuv420p10le", n, frame, {"preset": "12"}, setup)
    params = f"log-level=error:colorprim=bt2020:transfer={name}:colormatrix=bt2020nc"
    params += f":{x265}" if x265 else ""
    return _encode(w, h, codec, "yuv420p10le", n, frame, {"x265-params": params}, setup)


def bars(shift: int, w: int = 720, h: int = 576) -> np.ndarray:
    """Vertical black and white bars 40 px wide, moved ``shift`` px to the left."""
    row = np.where((np.arange(w) + shift) % 80 < 40, 230, 20).astype(np.uint8)
    return np.repeat(row[None, :, None], h, 0).repeat(3, 2)


def interlaced_clip(n: int = 10, codec: str = "libx264") -> bytes:
    """A PAL interlaced clip of moving bars: each frame's odd lines (its second field) show
    the bars 20 px further on than its even lines, as a camera's two fields do."""
    import av

    def frame(i: int) -> Any:
        woven = bars(40 * i)
        woven[1::2] = bars(40 * i + 20)[1::2]
        return av.VideoFrame.from_ndarray(woven, format="rgb24")

    return _encode(720, 576, codec, "yuv420p", n, frame, {"flags": "+ildct+ilme"})


def anamorphic_clip(pictures: list[np.ndarray], sar: Fraction) -> bytes:
    """Stored pictures declared with sample aspect ratio ``sar`` (720x576 at 64:45 is 16:9)."""
    import av

    h, w = pictures[0].shape[:2]

    def frame(i: int) -> Any:
        return av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="rgb24")

    def setup(cc: Any) -> None:
        cc.sample_aspect_ratio = sar

    return _encode(w, h, "libx264", "yuv420p", len(pictures), frame, {}, setup)
