"""Video samples: bounded decoding with PyAV and frame sampling by a recorded policy.

A video is never decoded whole. The sampler picks target times from the container's
declared duration (uniform N, frames per second) or reads only key frames, and the decoder
seeks to each target and decodes forward until it reaches it, so the cost depends on the
number of frames sampled, not on the clip's length (decoding on instead where a seek would
land at or behind the last frame decoded). Every decode is bounded: a wall-clock deadline, a
cap on the work decoded from one key frame (a file whose header lies about its frame count
or timestamps cannot spin a worker; targets past it get no frame and ``capped`` says so), a
cap on frame size (checked from the stream header before any frame is decoded) and a cap on
the frames kept. A packet that fails to decode is skipped, as a player skips it, and counted
(``info["bad_packets"]``); a clip whose packets end well before its declared duration (a
partial download) is ``video_decode_error`` under every policy; a target past the last frame
that decodes gets no frame. Every failure is a reason code, never an exception.

Policies (``SamplingPolicy.parse``): ``uniform:N`` (N frames at the centres of N equal
spans; the default, ``uniform:8``), ``fps:F`` (F frames a second; past ``max_frames``,
``max_frames`` spread over the whole clip as uniform spreads them), ``keyframes`` (the key
frames by the packets' key flags; past ``max_frames``, ``max_frames`` spread over them),
``scenes`` (one frame per shot: the first frame after each cut, cuts found where the mean
absolute difference of consecutive 32x32 grey thumbnails of frames sampled at 4 fps jumps
above ``SCENE_CUT``). ``info["capped"]`` says whether a cap applied. No decoded frame is
taken twice.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.data.sample import VIDEO_EXTS

__all__ = ["VIDEO_EXTS", "SamplingPolicy", "VideoDecoded", "decode_video", "encode_video"]

# 4K in any shape: DCI 4K (4096 x 2160) and 4:3 camera 4K (4096 x 3072, drones and action
# cameras) pass; an 8K frame, 100 MB of RGB, is refused. At 3840 x 2160 DCI footage was
# refused though frames are scaled to 512 px as they are decoded.
MAX_FRAME_PIXELS = 4096 * 3072
# Sampled frames are kept at most this long on their longer side (scaled in FFmpeg's scaler
# as they are converted): every model reads 320 px or less, and a batch of 64 clips of
# 8 full-HD frames held 3.2 GB of RGB (4K: 12.7 GB), a few such batches in flight.
MAX_FRAME_SIDE = 512
DEADLINE_S = 20.0
# Work decoded from one key frame, at most: 600 full-HD frames, each frame counted as at least
# 128x128 (75,000 frames that small). A group of pictures is decoded as far as its targets need
# within this (a 31-min clip of 32-px frames with one key frame: 46,500 frames, 1.4 s); targets
# past it are given up and the clip is ``capped``. It used to be 600 frames after each seek,
# whatever their size, and the target's frame was then the 600th: a 60 s clip with one key
# frame was sampled in its first 24 s and nothing said so.
MAX_GOP_WORK = 600 * 1920 * 1080
MIN_FRAME_WORK = 128 * 128
# A clip whose packets end this far before its declared duration (the larger of the two) is cut
# short (a partial download): video_decode_error, whatever the policy.
TRUNCATED_S = 1.0
TRUNCATED_SHARE = 0.1
MAX_FRAMES = 32  # frames kept by any policy
SCENE_CUT = 30.0  # mean absolute grey difference (0-255) between 32x32 thumbnails
SCAN_FPS = 4.0  # sampling rate of the scene-cut scan


@dataclass(frozen=True)
class SamplingPolicy:
    kind: str = "uniform"
    value: float = 8.0
    max_frames: int = MAX_FRAMES

    @classmethod
    def parse(cls, text: str) -> SamplingPolicy:
        from clipaudit.errors import ClipauditError

        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "uniform":
                n = int(arg or 8)
                if not 1 <= n <= MAX_FRAMES:
                    raise ValueError
                return cls("uniform", float(n))
            if kind == "fps":
                f = float(arg)
                if not 0 < f <= 30:
                    raise ValueError
                return cls("fps", f)
            if kind in ("keyframes", "scenes") and not arg:
                return cls(kind, 0.0)
        except ValueError:
            pass
        raise ClipauditError(
            f"Unknown frame sampling {text!r}; use uniform:N (1-{MAX_FRAMES}), fps:F "
            "(0-30), keyframes or scenes."
        )

    def __str__(self) -> str:
        if self.kind == "uniform":
            return f"uniform:{int(self.value)}"
        return f"fps:{self.value:g}" if self.kind == "fps" else self.kind


DEFAULT_POLICY = SamplingPolicy()


@dataclass
class VideoDecoded:
    """Sampled frames (RGB) with their times, what the container says, and an error code."""

    frames: list[Image.Image] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    detail: str | None = None


def decode_video(
    data: bytes | None, policy: SamplingPolicy = DEFAULT_POLICY, deadline_s: float = DEADLINE_S
) -> VideoDecoded:
    """Sample frames of the video in ``data`` by ``policy``, within every cap."""
    if data is None:
        return VideoDecoded(error="missing_image")
    if not data:
        return VideoDecoded(error="empty_image")
    import av

    t_end = time.monotonic() + deadline_s
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            streams = container.streams.video
            if not streams:
                return VideoDecoded(
                    error="no_video_stream", info={"streams": len(container.streams)}
                )
            stream = _main_stream(streams)
            if _is_cover(stream):  # an audio file with its cover art is not a clip
                return VideoDecoded(
                    error="no_video_stream",
                    detail="the only picture stream is attached cover art",
                    info={"streams": len(container.streams)},
                )
            stream.thread_type = "AUTO"
            info = _info(container, stream)
            w, h = info["width"] or 0, info["height"] or 0
            if w * h > MAX_FRAME_PIXELS:
                return VideoDecoded(error="video_too_large", detail=f"{w}x{h}", info=info)
            reader = _Reader(data, container, stream, t_end)
            try:
                info = _true_duration(reader, info)
                out = _SAMPLERS[policy.kind](reader, info, policy)
                cut = _cut_short(reader, info)
            finally:
                reader.close()
            if cut is not None:
                info = {**info, "policy": str(policy), "bad_packets": reader.bad_packets}
                return VideoDecoded(error="video_decode_error", detail=cut, info=info)
            out.info = {
                **info,
                "policy": str(policy),
                "capped": False,
                **out.info,
                "bad_packets": reader.bad_packets,
                **picture_info(out.frames),
            }
            if reader.capped:  # a group of pictures ran past MAX_GOP_WORK: targets given up
                out.info["capped"] = True
            fw, fh = out.frames[0].size if out.frames else (0, 0)
            if w != h and fw != fh and (fw > fh) != (w > h):
                # The size as shown: a quarter turn of the display matrix swaps the sides.
                out.info["width"], out.info["height"] = h, w
            if out.error is None and not out.frames:
                out.error, out.detail = "video_decode_error", "no frame could be decoded"
            return out
    except _Timeout:
        return VideoDecoded(error="video_timeout", detail=f"over {deadline_s:g} s")
    except Exception as exc:  # PyAV raises many error types for damaged input
        return VideoDecoded(error="video_decode_error", detail=f"{type(exc).__name__}: {exc}"[:200])


class _Timeout(Exception):
    pass


# A packet starting this far past a stream's declared duration (or a share of it) makes the
# declaration an estimate: an index-backed container (mp4) has none after its last frame.
OUTRUN_S = 0.25


def _true_duration(reader: _Reader, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the clip's duration as its video packets show it, where the declared one
    is the container's (a stream's own is kept) and the packets say it is wrong:

    - none declared (a browser's MediaRecorder, a live recorder, WebM or Matroska streamed to
      a pipe, a raw H.264 stream): every policy but fps sampled a 6 s clip's first 0.3 s and
      called it still;
    - an estimate the packets outrun (MPEG program streams: FFmpeg guesses from the bit rate,
      0.02 s for a 0.64 s clip);
    - an end time, not a length (Matroska whose timestamps start late: ffmpeg's segment
      muxer keeps them): a 4 s segment starting at 4 s "ended at 4.00 s of a declared
      8.08 s" and was errored as truncated.

    The packets are read through without decoding (``duration_from``: ``packets``). A clip
    whose packets stop short of a declared length is left to _cut_short (a partial file)."""
    duration: float = info.get("duration") or 0.0
    # Only a late start (an end time declared) needs the packets' end read through; else a
    # seek past the declared duration tells whether any packet outruns it, without
    # demuxing every Matroska and WebM clip whole.
    plain = duration > 0 and (not reader.whole_file or reader.base <= 0)
    if plain and not reader.runs_past(duration + max(OUTRUN_S, TRUNCATED_SHARE * duration)):
        return info  # the declared duration, and no packet beyond it
    end = reader.measured_end()
    if end is None or end <= 0:
        return info
    measured = {**info, "duration": round(end, 3), "duration_from": "packets"}
    if duration <= 0:
        return measured
    if end > duration + max(OUTRUN_S, TRUNCATED_SHARE * duration):  # an estimate outrun
        return measured
    slack = max(TRUNCATED_S, TRUNCATED_SHARE * duration)
    late = duration - reader.base
    if end < duration - slack and reader.base > 0 and abs(end - late) <= slack:
        return measured  # the declared end less the start: its length
    return info


def _cut_short(reader: _Reader, info: dict[str, Any]) -> str | None:
    """Why the clip is cut short, where its packets end well before its declared duration (a
    partial download), None where they do not or it cannot be told. Checked on the packets, not
    on what the policy decoded, so every policy gives the same bytes the same verdict."""
    duration = info.get("duration")
    if not duration or duration <= 0:
        return None
    at = duration - max(TRUNCATED_S, TRUNCATED_SHARE * duration)
    if at <= 0:
        return None
    reached, end = reader.reaches(at)
    if reached is not False:
        return None
    where = f"at {end:.2f} s" if end is not None else f"before {at:.2f} s"
    return f"truncated: the packets end {where} of a declared {duration:g} s"


# Codecs that carry cover art and thumbnails in a video container; a clip in one of them (an
# MJPEG camera file) is still read when it is the only video stream.
_PICTURE_CODECS = frozenset({"png", "mjpeg", "bmp", "gif", "webp", "tiff"})


def _is_cover(stream: Any) -> bool:
    import av

    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


def _main_stream(streams: Any) -> Any:
    """The clip's own video stream: not one flagged as an attached picture (cover art), and
    not a picture codec where another stream is a video codec; the first such."""
    return min(
        streams, key=lambda s: (_is_cover(s), s.codec_context.name in _PICTURE_CODECS, s.index)
    )


def _info(container: Any, stream: Any) -> dict[str, Any]:
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    return {
        "duration": round(duration, 3) if duration is not None else None,
        "fps": round(float(rate), 3) if rate else None,
        "declared_frames": int(stream.frames or 0) or None,
        # As shown: stored pixels stretched by the sample aspect ratio.
        "width": round(stream.codec_context.width * sample_aspect(stream)) or None,
        "height": stream.codec_context.height or None,
        "codec": stream.codec_context.name,
        "audio": bool(container.streams.audio),
    }


# Phone videos store portrait frames sideways and say how to turn them in the stream's display
# matrix; FFmpeg's own tool applies it, PyAV's to_image does not. PyAV reads the matrix as a
# counterclockwise angle, PIL's ROTATE_90 is a counterclockwise quarter turn.
_TURNS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def frame_rotation(frame: Any) -> int:
    """The display matrix's rotation of ``frame`` to the nearest quarter turn, in [0, 360)
    counterclockwise (0 where there is none or it cannot be read)."""
    try:
        degrees = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(degrees):  # a degenerate matrix
        return 0
    return round(degrees / 90.0) % 4 * 90


# Transfer characteristics of HDR video (FFmpeg's AVCOL_TRC_*): phone clips are HLG or PQ,
# 10-bit BT.2020. Read as SDR numbers they come out grey and washed out.
HDR_TRC = {16: "pq", 18: "hlg"}
_BT709 = 1  # AVCOL_TRC_BT709 and AVCOL_PRI_BT709
_tone_maps = threading.local()
TONE_MAPPERS_KEPT = 4  # per thread and set of colour tags (and size, past the canvas)


def sample_aspect(stream: Any) -> float:
    """Width of one stored pixel over its height as shown (anamorphic DVD and broadcast
    clips store 720 pixels for a 16:9 picture), 1.0 where none is declared or it is absurd."""
    for sar in (
        getattr(stream, "sample_aspect_ratio", None),
        getattr(stream.codec_context, "sample_aspect_ratio", None),
    ):
        try:
            value = float(sar) if sar else 0.0
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if 0.25 <= value <= 4.0:
            return value
    return 1.0


def _trc(frame: Any) -> int:
    """The frame's transfer characteristic (0 where this PyAV does not say)."""
    return int(getattr(frame, "color_trc", 0) or 0)


def _tone_mapper(key: tuple[int | bytes, ...]) -> Any:
    """A reformatter kept per thread and ``key``: building FFmpeg's HDR-to-SDR conversion
    takes ~2 s and is redone whenever the frame size or the colour tags change; applying it
    to a 512-px frame takes milliseconds."""
    from av.video.reformatter import VideoReformatter

    kept: dict[tuple[int | bytes, ...], Any] = getattr(_tone_maps, "kept", None) or {}
    _tone_maps.kept = kept
    if key not in kept:
        if len(kept) >= TONE_MAPPERS_KEPT:
            kept.pop(next(iter(kept)))
        kept[key] = VideoReformatter()
    return kept[key]


def _reformat(frame: Any, reformatter: Any = None, **kw: Any) -> Any:
    """``frame.reformat(**kw)`` (or a kept reformatter's) on one thread: FFmpeg 8.1's sliced
    scaler is not deterministic (a 10-bit 4:2:0 to 16-bit 4:4:4 conversion changed one
    8-pixel run at a slice edge in 6 of 30 calls), and a run's bytes must not depend on the
    call. Decoding keeps its threads; clips are decoded several at a time anyway."""
    call = reformatter.reformat if reformatter is not None else frame.reformat
    args = (frame,) if reformatter is not None else ()
    try:
        return call(*args, threads=1, **kw)
    except TypeError:  # PyAV < 14: no threads argument (and an unsliced, one-thread scaler)
        return call(*args, **kw)


def _tags(frame: Any) -> tuple[int, int, int, int]:
    return (
        int(frame.color_trc or 0),
        int(frame.color_primaries or 0),
        int(frame.colorspace or 0),
        int(frame.color_range or 0),
    )


# Side data FFmpeg's conversion reads: an HDR10 clip's mastering display and content light
# levels set the peak it compresses from (a 2,000-nit white came out 187 with a 4,000-nit
# master, 255 without the metadata).
_LIGHT_SIDE_DATA = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")


def _light_levels(frame: Any) -> bytes:
    try:
        found = [bytes(sd) for sd in frame.side_data if sd.type.name in _LIGHT_SIDE_DATA]
    except (AttributeError, TypeError, ValueError):  # a PyAV without side-data access
        return b""
    return hashlib.sha256(b"".join(found)).digest()[:8] if found else b""


def _tone_map(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` scaled to ``size`` and mapped to BT.709 SDR rgb24 by FFmpeg's scaler.

    The mapping is per pixel, so a frame that fits is placed on a fixed black canvas of
    MAX_FRAME_SIDE square (a frame that keeps the original's tags and light-level side data,
    its planes overwritten) and the canvas mapped: one conversion per thread, set of colour
    tags and light levels serves every frame size (a crawl of clips in many sizes paid the
    ~2 s set-up per new size), for ~6 ms more per frame; the output is the same pixel for
    pixel as a conversion built for the frame's size."""
    import av

    tags = _tags(frame)
    key = (*tags, _light_levels(frame))
    w, h = size
    # Scale first in 16-bit YUV (keeping the HDR tags), then map the small frame.
    small = _reformat(frame, width=w, height=h, format="yuv444p16le", interpolation="AREA")
    small.color_trc, small.color_primaries = tags[0], tags[1]
    side = MAX_FRAME_SIDE
    if w > side or h > side:  # one field of a tall interlaced frame: mapped at its own size
        return _reformat(
            small,
            _tone_mapper((w, h, *key)),
            format="rgb24",
            dst_color_trc=_BT709,
            dst_color_primaries=_BT709,
        )
    canvas = np.empty((3, side, side), np.uint16)
    canvas[0] = 0 if tags[3] == 2 else 4096  # black: Y at its floor (full or video range)
    canvas[1:] = 32768  # chroma at its centre
    canvas[:, :h, :w] = small.to_ndarray().transpose(2, 0, 1)
    padded = _reformat(small, width=side, height=side)  # same format, tags and side data
    padded.color_trc, padded.color_primaries = tags[0], tags[1]
    for plane, values in zip(padded.planes, canvas, strict=True):
        rows = np.zeros((side, plane.line_size // 2), np.uint16)
        rows[:, :side] = values
        plane.update(rows.tobytes())
    mapped = _reformat(
        padded, _tone_mapper(key), format="rgb24", dst_color_trc=_BT709, dst_color_primaries=_BT709
    )
    return av.VideoFrame.from_ndarray(
        np.ascontiguousarray(mapped.to_ndarray()[:h, :w]), format="rgb24"
    )


def _to_rgb_frame(frame: Any, size: tuple[int, int]) -> tuple[Any, bool]:
    """``frame`` scaled to ``size`` as rgb24, tone-mapped to BT.709 SDR where it is HLG or PQ
    (FFmpeg's scaler does the mapping); (frame, whether it was tone-mapped)."""
    same = size == (frame.width, frame.height)
    if _trc(frame) in HDR_TRC:
        try:
            return _tone_map(frame, size), True
        except Exception:  # an older PyAV/FFmpeg without colour conversion: as stored
            pass
    if same:
        return _reformat(frame, format="rgb24"), False
    return _reformat(
        frame, width=size[0], height=size[1], format="rgb24", interpolation="AREA"
    ), False


def _rgb(frame: Any, stream: Any = None) -> Image.Image:
    """The frame as shown: RGB, stretched to its sample aspect ratio, one field of an
    interlaced frame, HDR tone-mapped, at most MAX_FRAME_SIDE on its longer side, turned as
    its display matrix says."""
    w, h = frame.width, frame.height
    sar = sample_aspect(stream) if stream is not None else 1.0
    dw = max(1, round(w * sar))
    scale = min(1.0, MAX_FRAME_SIDE / max(dw, h))
    size = (max(1, round(dw * scale)), max(1, round(h * scale)))
    turn = _TURNS.get(frame_rotation(frame))
    # An interlaced frame holds two fields shot 1/50 s apart: motion shows as combs of
    # alternate lines. Keep the top field and stretch it back (FFmpeg's "bob", one field).
    interlaced = bool(getattr(frame, "interlaced_frame", False)) and h >= 4
    rgb, mapped = _to_rgb_frame(frame, (size[0], h) if interlaced else size)
    im = rgb.to_image().convert("RGB")
    if interlaced:
        field = Image.fromarray(np.asarray(im)[0::2])
        im = field.resize(size, Image.Resampling.BILINEAR)
    if turn is not None:
        im = im.transpose(turn)
    # What the picture needed, summed up per clip by picture_info.
    im.info.update(
        hdr=HDR_TRC.get(_trc(frame)),
        tone_mapped=mapped,
        interlaced=interlaced,
    )
    return im


def picture_info(frames: list[Image.Image]) -> dict[str, Any]:
    """``hdr``: the HDR transfer of the sampled frames (``pq``, ``hlg``; with `` as stored``
    where this PyAV could not tone-map them), None for SDR; ``interlaced``: the share of
    sampled frames that were interlaced (one field kept)."""
    hdr = next((f.info.get("hdr") for f in frames if f.info.get("hdr")), None)
    if hdr and not all(f.info.get("tone_mapped") for f in frames if f.info.get("hdr")):
        hdr += " as stored"
    share = sum(bool(f.info.get("interlaced")) for f in frames) / max(1, len(frames))
    return {"hdr": hdr, "interlaced": round(share, 3)}


def _frame_time(frame: Any, stream: Any) -> float | None:
    if frame.pts is None or stream.time_base is None:
        return None
    return float(frame.pts * stream.time_base)


def _check(t_end: float) -> None:
    if time.monotonic() > t_end:
        raise _Timeout


def _packet_time(packet: Any, time_base: Any) -> float | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or time_base is None:
        return None
    return float(ts * time_base)


class _Reader:
    """One clip's stream, decoded as a player decodes it: packet by packet, a packet that
    fails to decode skipped and counted (4 KB of damage mid-clip errored the whole sample,
    while FFmpeg's tool decodes the 60 frames of 75 around it), the work since the last key
    frame bounded (MAX_GOP_WORK), and where the packets end noted once demuxing runs out."""

    def __init__(self, data: bytes, container: Any, stream: Any, t_end: float) -> None:
        self.data, self.container, self.stream, self.t_end = data, container, stream, t_end
        self.base = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self.bad_packets = 0  # packets that failed to decode (or to be read), skipped
        self.over_budget = False  # the current decoding run stopped at MAX_GOP_WORK
        self.capped = False  # some run did: targets past it were given up
        self.end: float | None = None  # end of the last packet, once demuxing ran out
        self.whole_file = stream.duration is None  # the duration declared is the file's
        self._probe: Any = None  # a second demuxer on the same bytes: where seeks land
        rate = stream.average_rate or stream.guessed_rate
        self._frame_s = 1 / float(rate) if rate else 0.0

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def time(self, frame: Any) -> float | None:
        t = _frame_time(frame, self.stream)
        return None if t is None else t - self.base

    def shown_until(self, frame: Any) -> float | None:
        """When ``frame`` leaves the screen: its time plus its duration (one frame at the
        stream's rate where the decoder gives none)."""
        t = self.time(frame)
        if t is None:
            return None
        d = getattr(frame, "duration", None)
        tb = self.stream.time_base
        return t + (float(d * tb) if d and tb else self._frame_s)

    def seek(self, target: float, any_frame: bool = False) -> None:
        tb = self.stream.time_base
        ts = int((self.base + target) / tb) if tb else 0
        self.container.seek(max(ts, 0), stream=self.stream, backward=True, any_frame=any_frame)

    def packets(self) -> Iterator[Any]:
        """The stream's packets from where the clip's demuxer stands; the end of the timed ones
        is noted where they run out. A demuxer error ends what can be read."""
        import av

        stream = self.stream
        top = None  # the latest packet end, in the stream's time base (integers: no Fractions)
        try:
            for packet in self.container.demux(stream):
                _check(self.t_end)
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None and packet.size:
                    ts += packet.duration or 0
                    top = ts if top is None or ts > top else top
                yield packet
        except av.FFmpegError:
            self.bad_packets += 1
        if top is not None and stream.time_base is not None:
            end = float(top * stream.time_base) - self.base
            self.end = end if self.end is None else max(self.end, end)

    def decode(self) -> Iterator[Any]:
        """Frames from where the clip's container stands, a packet that fails to decode
        skipped; the run stops (``over_budget``) once the frames decoded since the last key
        frame pass MAX_GOP_WORK."""
        import av

        self.over_budget = False
        work = 0
        for packet in self.packets():
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.bad_packets += 1
                continue
            for frame in frames:
                if frame.key_frame:
                    work = 0
                work += max(frame.width * frame.height, MIN_FRAME_WORK)
                if work > MAX_GOP_WORK:
                    self.over_budget = self.capped = True
                    return
                yield frame

    def _second(self) -> Any:
        import av

        if self._probe is None:
            self._probe = av.open(io.BytesIO(self.data), mode="r", metadata_errors="ignore")
        return self._probe

    def landing(self, target: float) -> float | None:
        """The time of the key frame a seek to ``target`` lands on, read by a second demuxer
        on the same bytes without decoding (the clip's own keeps its place); None where it
        cannot be told."""
        try:
            probe = self._second()
            ps = probe.streams[self.stream.index]
            tb = ps.time_base
            ts = int((self.base + target) / tb) if tb else 0
            probe.seek(max(ts, 0), stream=ps, backward=True, any_frame=False)
            for packet in probe.demux(ps):
                t = _packet_time(packet, tb) if packet.size else None
                if t is None:
                    return None
                return t - self.base if packet.is_keyframe else None
        except Exception:  # a demuxer that cannot seek: decide as if unknown
            return None
        return None

    def reaches(self, t: float) -> tuple[bool | None, float | None]:
        """Whether the clip's packets reach time ``t`` (None: cannot be told), and where they
        end when they do not: a seek to ``t`` on any frame and the packets from there, no
        decoding; where none comes at all, the packets from the start on a fresh demuxer (a
        demuxer that cannot seek must not make a whole clip look cut short). Where the
        duration declared is the file's, not the stream's (Matroska), packets of every
        stream count: an audio track that outlasts the video is no cut."""
        import av

        if self.end is not None and (self.end >= t - 1e-6 or not self.whole_file):
            return self.end >= t - 1e-6, self.end
        try:
            self.seek(t, any_frame=True)
            reached, end = self._scan(self.container, t)
            if reached or end is not None:
                return reached, end
        except _Timeout:
            raise
        except Exception:  # a demuxer that cannot seek: read from the start below
            pass
        with av.open(io.BytesIO(self.data), mode="r", metadata_errors="ignore") as fresh:
            reached, end = self._scan(fresh, t)
        return (reached if reached or end is not None else None), end

    def runs_past(self, t: float) -> bool:
        """Whether a video packet starts after ``t``: a seek of a second demuxer there, no
        decoding (False where it cannot be told)."""
        try:
            probe = self._second()
            ps = probe.streams[self.stream.index]
            tb = ps.time_base
            if not tb:
                return False
            probe.seek(max(int((self.base + t) / tb), 0), stream=ps, backward=False)
            for packet in probe.demux(ps):
                _check(self.t_end)
                at = _packet_time(packet, tb) if packet.size else None
                if at is not None and at - self.base > t:
                    return True
        except _Timeout:
            raise
        except Exception:  # a demuxer that cannot seek: the declared duration stands
            return False
        return False

    def measured_end(self) -> float | None:
        """Where the clip's video packets end, read through from the start on a fresh demuxer
        without decoding; None where none is timed."""
        import av

        try:
            with av.open(io.BytesIO(self.data), mode="r", metadata_errors="ignore") as fresh:
                return self._scan(fresh, math.inf, every_stream=False)[1]
        except _Timeout:
            raise
        except Exception:  # unreadable from the start: no duration, as before
            return None

    def _scan(
        self, container: Any, t: float, every_stream: bool = True
    ) -> tuple[bool, float | None]:
        """Whether a packet from where ``container`` stands reaches ``t`` (of the clip's
        stream, or of any where the duration is the file's and ``every_stream``), and where
        those read end."""
        import av

        index = self.stream.index
        every = self.whole_file and every_stream
        streams = list(container.streams) if every else [container.streams[index]]
        end = None
        try:
            for packet in container.demux(streams):
                _check(self.t_end)
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None or not packet.size or packet.time_base is None:
                    continue
                e = float((ts + (packet.duration or 0)) * packet.time_base) - self.base
                if e >= t - 1e-6:
                    return True, e
                end = e if end is None else max(end, e)
        except av.FFmpegError:  # a demuxer error: what was read is what there is
            pass
        return False, end


# A target this close ahead of the last decoded frame is reached by decoding on: a seek lands on
# the key frame before the target and re-decodes up to a whole group of pictures, which for
# fps:F on a long-GOP 4K HEVC clip cost a group's worth of frames per target and ran past the
# deadline.
FORWARD_S = 2.0


def _at_times(reader: _Reader, targets: list[float]) -> VideoDecoded:
    """The first frame at or after each target time (ascending): decoding on from the last
    frame when the target is near or a seek would land at or behind it, else seeking to the
    key frame before it. Each decoded frame is taken once: a target whose frame was already
    taken (targets closer together than the clip's frames, or in a gap of a variable-frame-rate
    clip) adds nothing. A target past the last frame takes it only while it is still shown
    (a clip cut short gives its last frame for no later target), and a target that lies more
    than MAX_GOP_WORK past its key frame is given up (``reader.capped``)."""
    out = VideoDecoded()
    frames: Iterator[Any] | None = None  # the live decoding run, None before the first seek
    pos: float | None = None  # time of the last frame decoded
    last_key: float | None = None  # time of the last key frame decoded since the seek
    gop = 0.0  # the longest gap between two key frames decoded in a row
    stuck: float | None = None  # where the last run over budget stopped
    for target in targets:
        _check(reader.t_end)
        if pos is not None and out.times and pos >= target - 1e-6:
            # The last frame decoded is at or after this target, and every frame before it
            # is before the previous target: this target's frame is the one already taken.
            continue
        # On from here when no key frame is due before the target (a seek would land at or
        # behind the last frame decoded); before a key-frame gap is known, when it is near.
        ahead = None if pos is None else target - pos
        if frames is None or ahead is None or ahead < 0.0:
            near = False
        elif gop > 0 and last_key is not None:
            near = target < last_key + gop - 1e-6
        else:
            near = ahead <= FORWARD_S
        if not near and pos is not None and ahead is not None and ahead >= 0.0:
            # A clip with few key frames (one, in a 31-min clip) would land every seek on the
            # same key frame and decode up to the target again; ask where it would land.
            key = reader.landing(target)
            if key is not None and key <= pos + 1e-6:
                if stuck is not None:
                    continue  # past a run that already ran over budget from that key frame
                near = True
        got = last = None
        for attempt in ("forward", "seek") if near else ("seek",):
            ended = False  # decoding reached the end of the clip short of the target
            if attempt == "seek":
                reader.seek(target)
                frames, last_key, stuck = reader.decode(), None, None
            assert frames is not None
            for frame in frames:
                _check(reader.t_end)
                last = frame
                rel = reader.time(frame)
                if rel is not None:
                    pos = rel
                    if frame.key_frame:
                        gop = max(gop, rel - last_key) if last_key is not None else gop
                        last_key = rel
                if rel is None or rel >= target - 1e-6:
                    got = frame
                    break
            else:
                ended = True
            if reader.over_budget and attempt == "forward":
                # The run gave out short of the target; a seek helps only past a key frame.
                key = reader.landing(target)
                if key is not None and pos is not None and key > pos + 1e-6:
                    last = None
                    continue
                break
            if got is not None or last is not None or reader.over_budget:
                break  # decoding on ran out of frames: seek, to read the last ones there
        if reader.over_budget:  # no frame for this target; a later one may follow a key frame
            frames, stuck = None, pos
            continue
        if got is None and last is not None:  # past the last frame: it, while still shown
            until = reader.shown_until(last)
            got = last if until is None or target < until - 1e-6 else None
        if got is not None:
            t = reader.time(got)
            rel = round(t if t is not None else target, 4)
            if not out.times or rel > out.times[-1] + 1e-9:  # never a frame twice or backwards
                out.frames.append(_rgb(got, reader.stream))
                out.times.append(rel)
        if ended:
            break  # later targets are past the end too
    return out


def _sequential(
    reader: _Reader, info: dict[str, Any], every: float, limit: int
) -> tuple[list[Any], list[float]]:
    """Frames at least ``every`` seconds apart, decoding from the start (no duration known,
    or a scan); bounded by ``limit`` frames kept and the decode caps."""
    frames: list[Any] = []
    times: list[float] = []
    next_t = 0.0
    for decoded, frame in enumerate(reader.decode(), 1):
        _check(reader.t_end)
        t = reader.time(frame)
        rel = t if t is not None else decoded / (info["fps"] or 25.0)
        if rel >= next_t - 1e-6:
            frames.append(frame)
            times.append(round(rel, 4))
            next_t = rel + every
            if len(frames) >= limit:
                break
    return frames, times


def _in_one_pass(reader: _Reader, targets: list[float]) -> VideoDecoded:
    """The first frame at or after each target time, decoding from the start once (for a
    short clip: cheaper than a seek per target, which re-decodes from a key frame each time);
    past the last frame, it, while it is still shown."""
    out = VideoDecoded()
    k = 0
    last = None
    for frame in reader.decode():
        _check(reader.t_end)
        rel = reader.time(frame)
        last = frame
        if rel is not None and rel >= targets[k] - 1e-6:
            out.frames.append(_rgb(frame, reader.stream))
            out.times.append(round(rel, 4))
            while k < len(targets) and targets[k] - 1e-6 <= rel:
                k += 1
            if k == len(targets):
                break
    if k < len(targets) and last is not None and not reader.over_budget:
        t, until = reader.time(last), reader.shown_until(last)
        shown = until is None or targets[k] < until - 1e-6
        t_last = round(t if t is not None else targets[-1], 4)
        if shown and (not out.times or t_last > out.times[-1] + 1e-9):  # not taken already
            out.frames.append(_rgb(last, reader.stream))
            out.times.append(t_last)
    return out


# Up to this many frames (declared) a clip is sampled in one decoding pass, not by seeking,
# and up to this many pixels in them (600 frames of 720p): a 15 s 4K clip decoded whole cost
# twice what seeking does with a key frame a second (_at_times decodes on where that is cheaper).
ONE_PASS_FRAMES = 600
ONE_PASS_PIXELS = 600 * 1280 * 720


def _uniform(reader: _Reader, info: dict[str, Any], policy: SamplingPolicy) -> VideoDecoded:
    n = int(policy.value)
    if not info["duration"] or info["duration"] <= 0:  # no duration to divide: the first n
        frames, times = _sequential(reader, info, 0.0, n)
        return VideoDecoded([_rgb(f, reader.stream) for f in frames], times)
    return _spread(reader, info, n)


def _spread(reader: _Reader, info: dict[str, Any], n: int) -> VideoDecoded:
    """The frames at the centres of ``n`` equal spans of the clip's declared duration."""
    duration = info["duration"]
    targets = [(i + 0.5) * duration / n for i in range(n)]
    # Frames the clip holds: declared, or from its duration and rate where the container
    # counts none (MPEG transport and program streams, whose seeks land a group of pictures
    # off: a 2 s .ts clip gave 3 of 4 targets).
    fps = info.get("fps")
    declared = info.get("declared_frames") or (math.ceil(duration * fps) if fps else None)
    pixels = (info.get("width") or 0) * (info.get("height") or 0)
    if (
        declared is not None
        and declared <= ONE_PASS_FRAMES
        and declared * pixels <= ONE_PASS_PIXELS
    ):
        return _in_one_pass(reader, targets)
    return _at_times(reader, targets)


def _fps(reader: _Reader, info: dict[str, Any], policy: SamplingPolicy) -> VideoDecoded:
    """F frames a second from the start; where that is more than ``max_frames`` (a clip
    longer than max_frames / F seconds), ``max_frames`` spread over the whole clip as uniform
    spreads them, and ``capped`` says so: the first max_frames / F seconds alone would leave
    the rest of the clip unseen by every stage (an unsafe scene or a mark late in a clip)."""
    duration = info["duration"]
    if duration and duration > 0:
        count = max(1, int(duration * policy.value + 1e-9))
        if count > policy.max_frames:
            out = _spread(reader, info, policy.max_frames)
            out.info["capped"] = True
            return out
        return _at_times(reader, [i / policy.value for i in range(count)])
    # No duration to spread over: the first max_frames frames at 1/F apart.
    frames, times = _sequential(reader, info, 1 / policy.value, policy.max_frames)
    out = VideoDecoded([_rgb(f, reader.stream) for f in frames], times)
    out.info["capped"] = len(frames) >= policy.max_frames
    return out


def _key_times(reader: _Reader) -> list[float]:
    """Times of the stream's key frames from the packets' key flags, demuxed without decoding
    (about 10 us a packet). Decoders differ in what they skip for skip_frame = NONKEY (VP9's
    ignores it and returns every frame), packets' flags are the container's and do not."""
    tb = reader.stream.time_base
    times: set[float] = set()
    for packet in reader.packets():
        if not packet.is_keyframe or not packet.size:  # size 0: the demuxer's flush packet
            continue
        t = _packet_time(packet, tb)
        if t is not None:
            times.add(round(max(0.0, t - reader.base), 6))
    return sorted(times)


def _keyframes(reader: _Reader, info: dict[str, Any], policy: SamplingPolicy) -> VideoDecoded:
    """The key frames, found from the packets' key flags and decoded each after a seek to it;
    where there are more than ``max_frames``, ``max_frames`` of them evenly spread over the
    list (``capped``)."""
    keys = _key_times(reader)
    stream = reader.stream
    if not keys:  # no timed key packets: decode from the start and keep what the decoder flags
        reader.container.seek(0, stream=stream, backward=True, any_frame=False)
        stream.codec_context.skip_frame = "NONKEY"  # a hint some decoders take, VP9's not
        kept: list[Any] = []
        times: list[float] = []
        for frame in reader.decode():
            _check(reader.t_end)
            if frame.key_frame:
                t = reader.time(frame)
                kept.append(frame)
                times.append(round(t, 4) if t is not None else 0.0)
            if len(kept) > policy.max_frames:
                break
        n = policy.max_frames
        out = VideoDecoded([_rgb(f, stream) for f in kept[:n]], times[:n])
        out.info["capped"] = len(kept) > policy.max_frames
        return out
    n = policy.max_frames
    picked = keys if len(keys) <= n else [keys[int((i + 0.5) * len(keys) / n)] for i in range(n)]
    duration = info.get("duration") or 0.0
    if len(picked) < 3 and duration > 0:
        # One or two key frames, the first among them: a clip fading in from black was that
        # black frame alone or half its sample, and dropped as black_video (uniform:8 kept
        # it). Frames at a third and two thirds of it are read too.
        picked = sorted({*picked, round(duration / 3, 6), round(2 * duration / 3, 6)})
    out = _at_times(reader, picked)
    out.info["capped"] = len(keys) > n
    return out


def _scenes(reader: _Reader, info: dict[str, Any], policy: SamplingPolicy) -> VideoDecoded:
    scan = 4 * MAX_FRAMES
    frames, times = _sequential(reader, info, 1 / SCAN_FPS, scan)
    out = VideoDecoded()
    prev = None
    dark_start = False  # the current shot's frame taken so far is black
    for f, t in zip(frames, times, strict=True):
        im = _rgb(f, reader.stream)
        g = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)
        black = bool(g.mean() < 16 and g.std() < 8)  # as frame_stats counts black
        if prev is None or float(np.abs(g - prev).mean()) > SCENE_CUT:
            if len(out.frames) >= policy.max_frames:
                break
            out.frames.append(im)
            out.times.append(t)
            dark_start = black
        elif dark_start and not black:
            # A shot that opens black (a fade-in) stands for its first frame with content:
            # its black opening frame alone was the sample of a clip that fades in, dropped
            # as black_video while uniform:8 kept it. A shot black throughout stays black.
            out.frames[-1], out.times[-1] = im, t
            dark_start = False
        prev = g
    # The scan stops at its cap (32 s at 4 fps) or at max_frames shots: later shots unseen.
    out.info["capped"] = len(frames) >= scan or len(out.frames) >= policy.max_frames
    return out


_SAMPLERS = {"uniform": _uniform, "fps": _fps, "keyframes": _keyframes, "scenes": _scenes}


def frame_stats(frames: list[Image.Image]) -> dict[str, Any]:
    """Still and black measures over sampled frames: the largest mean absolute difference
    between any two 32x32 grey thumbnails (0: nothing moves), and the share of frames whose
    mean grey is under 16 with a spread under 8 (black or near black). Any two, not only
    consecutive ones: a slow pan moves little from frame to frame but adds up over the clip,
    while a still clip's encoding noise does not add up. Motion is None (no verdict, so no
    ``still_video``) with fewer than two frames: one frame cannot show movement, and the
    samplers never take a decoded frame twice."""
    if not frames:
        return {"motion": None, "black_share": None}
    g = np.stack(
        [
            np.asarray(f.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)
            for f in frames
        ]
    )
    black = float(((g.mean(axis=(1, 2)) < 16) & (g.std(axis=(1, 2)) < 8)).mean())
    if len(frames) < 2:
        return {"motion": None, "black_share": round(black, 3)}
    flat = g.reshape(len(g), -1)
    # Every pair: frames are few (at most MAX_FRAMES), the thumbnails small.
    pairs = np.abs(flat[:, None, :] - flat[None, :, :]).mean(axis=2)
    motion = float(pairs.max())
    return {"motion": round(motion, 3), "black_share": round(black, 3)}


def encode_video(
    frames: list[Image.Image],
    fps: float = 8.0,
    fmt: str = "mp4",
    crf: int = 23,
    rotation: int = 0,
) -> bytes:
    """Frames as an H.264 mp4 (or VP9 webm) in memory; even sizes, yuv420p, key frame every
    second; ``rotation`` (degrees counterclockwise) goes in the display matrix, as a phone
    writes a portrait clip. For the world's clips and the tests."""
    import av

    buf = io.BytesIO()
    w, h = frames[0].size
    w, h = w - w % 2, h - h % 2
    with av.open(buf, mode="w", format=fmt) as out:
        codec = "libvpx-vp9" if fmt == "webm" else "libx264"
        stream: Any = out.add_stream(codec, rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "g": str(max(1, round(fps)))}
        if codec == "libx264":
            stream.options["preset"] = "veryfast"
        if rotation:
            stream.set_display_rotation(rotation)
        for im in frames:
            frame = av.VideoFrame.from_image(im.convert("RGB").crop((0, 0, w, h)))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
