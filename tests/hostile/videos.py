"""Hostile and odd video bytes, made here with PyAV (nothing downloaded).

Each case ends in a decoded clip (``ok``) or a video reason code, never a crash, a hang or a
lost sample; decoding is bounded by data/video.py's caps whatever the file claims.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import numpy as np
from PIL import Image

from tests.hostile.images import OK, ImageCase


def _frames(n: int, w: int = 64, h: int = 48) -> list[Image.Image]:
    out = []
    for k in range(n):
        arr = np.zeros((h, w, 3), np.uint8)
        arr[..., 0] = (np.arange(w)[None, :] * 4 + k * 9) % 256
        arr[..., 1] = (np.arange(h)[:, None] * 5) % 256
        arr[h // 3 : h // 2, (k * 3) % w : (k * 3) % w + 8, 2] = 255
        out.append(Image.fromarray(arr))
    return out


def clip(n: int = 16, fps: int = 8, w: int = 64, h: int = 48, fmt: str = "mp4") -> bytes:
    from clipaudit.data.video import encode_video

    return encode_video(_frames(n, w, h), fps, fmt=fmt)


def audio_only() -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        samples = (np.sin(np.arange(8000) / 5) * 3000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def variable_rate() -> bytes:
    """Frames at irregular times (0, 0.05, 0.4, 0.45, 1.3 s, ...): variable frame rate."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for k, im in enumerate(_frames(20)):
            frame = av.VideoFrame.from_image(im)
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += (50, 350, 50, 850)[k % 4]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def lying_frame_count(data: bytes) -> bytes:
    """The mp4 with its time-to-sample table claiming 2^31 - 16 frames (it holds 16): the
    stream header then declares two billion frames the file does not have."""
    out = bytearray(data)
    at = out.find(b"stts")  # version/flags 4, entry count 4, then (sample count, delta)
    struct.pack_into(">I", out, at + 12, 0x7FFFFFF0)
    return bytes(out)


def hostile_videos() -> list[ImageCase]:
    good = clip()
    flipped = bytearray(good)
    rng = np.random.default_rng(3)
    for i in rng.integers(len(good) // 4, len(good), 40):
        flipped[i] ^= 0xFF
    err = frozenset({"video_decode_error"})
    return [
        ImageCase("valid_mp4", good, "mp4", frozenset({OK})),
        ImageCase("valid_webm_vp9", clip(fmt="webm"), "webm", frozenset({OK})),
        ImageCase("mp4_named_webm", good, "webm", frozenset({OK})),
        ImageCase("zero_byte_mp4", b"", "mp4", frozenset({"empty_image"})),
        ImageCase("truncated_mp4", good[: len(good) * 3 // 5], "mp4", err | {OK}),
        ImageCase("bit_flipped_mp4", bytes(flipped), "mp4", err | {OK, "no_video_stream"}),
        ImageCase("garbage_after_ftyp", good[:32] + rng.bytes(4000), "mp4", err),
        ImageCase("text_as_mp4", b"<html>not a video</html>" * 10, "mp4", err),
        ImageCase("audio_only_mp4", audio_only(), "mp4", frozenset({"no_video_stream"})),
        ImageCase("header_claims_2e9_frames", lying_frame_count(good), "mp4", err | {OK}),
        ImageCase("8k_frame", clip(1, 1, 7680, 4320), "mp4", frozenset({"video_too_large"})),
        ImageCase("two_hour_clip", clip(7200, 1, 16, 16), "mp4", frozenset({OK})),
        ImageCase("variable_frame_rate", variable_rate(), "mp4", frozenset({OK})),
    ]
