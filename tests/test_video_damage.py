"""Clips a player still shows: a long group of pictures is decoded as far as its targets need
(within the decode bound, and a bound that stops sampling says so), packets that fail to decode
are skipped, and a clip cut short is a decode error under every policy, never sampled at times
its frames do not reach. Clips are made here with PyAV, small and short."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from clipaudit.curate.stages.video import COLUMNS, VideoStage
from clipaudit.data import video
from clipaudit.data.decode import decode_sample
from clipaudit.data.sample import Sample
from clipaudit.data.video import SamplingPolicy, decode_video

POLICIES = ("uniform:8", "fps:2", "scenes", "keyframes")


def _encode(frames: list[Image.Image], fps: int, keyint: int, path: Path | None = None) -> bytes:
    """H.264 mp4, a key frame every ``keyint`` frames and none at scene cuts, no B-frames
    (packets in time order); written to ``path`` with the index up front (faststart, as
    streamed files are) where given: FFmpeg's second pass needs a real file."""
    buf: Any = path if path is not None else io.BytesIO()
    options = {"movflags": "faststart"} if path is not None else {}
    with av.open(buf, mode="w", format="mp4", options=options) as out:
        stream: Any = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *frames[0].size, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0",
        }
        for im in frames:
            for packet in stream.encode(av.VideoFrame.from_image(im)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes() if path is not None else buf.getvalue()


def _key_packets(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as c:
        return sum(p.is_keyframe and p.size > 0 for p in c.demux(c.streams.video[0]))


def _grey(im: Image.Image) -> float:
    return float(np.asarray(im.convert("L"), np.float32).mean())


def _level(t: float) -> float:
    return 30 + 20 * (t // 15)  # a new grey every 15 s


def _one_key_frame_clip() -> bytes:
    """120 s at 10 fps, 64 px, one key frame: 1,200 frames after it, twice the 600 frames a
    seek used to decode at most."""
    frames = [Image.new("RGB", (64, 64), (int(_level(k / 10)),) * 3) for k in range(1200)]
    data = _encode(frames, fps=10, keyint=100_000)
    assert _key_packets(data) == 1
    return data


def test_a_long_group_of_pictures_is_decoded_as_far_as_its_targets() -> None:
    """uniform:8 on a clip with one key frame: the first frame at or after each target, the
    whole clip, not the first 60 s with the 600th frame given for every later target."""
    data = _one_key_frame_clip()
    v = decode_video(data, SamplingPolicy.parse("uniform:8"))
    targets = [(i + 0.5) * 15 for i in range(8)]
    assert v.error is None and v.info["capped"] is False
    assert v.times == pytest.approx(targets, abs=1e-3)
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - _level(t)) < 3, t
    # fps past the frame cap spreads 32 frames over the clip the same way.
    v32 = decode_video(data, SamplingPolicy.parse("fps:2"))
    spread = [(i + 0.5) * 120 / 32 for i in range(32)]
    assert len(v32.times) == 32 and v32.info["capped"] is True
    assert all(t - 1e-6 <= got < t + 0.1 for t, got in zip(spread, v32.times, strict=True))


def test_a_group_of_pictures_past_the_decode_bound_gives_up_its_targets_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the bound at 200 frames (20 s here), the target at 7.5 s is sampled and the later
    ones, all behind the one key frame, get no frame: no frame at a time before its target,
    and ``capped`` (video_capped) records that the bound stopped sampling."""
    data = _one_key_frame_clip()
    monkeypatch.setattr(video, "MAX_GOP_WORK", 200 * video.MIN_FRAME_WORK)
    v = decode_video(data, SamplingPolicy.parse("uniform:8"))
    assert v.error is None and v.times == pytest.approx([7.5], abs=1e-3)
    assert v.info["capped"] is True
    sample = Sample("v", data, image_ext="mp4")
    row = dict(zip(COLUMNS, VideoStage().prepare(sample, decode_sample(sample)), strict=True))
    assert row["video_capped"] is True and row["video_frames"] == 1


def _moving(n: int, size: int = 96) -> list[Image.Image]:
    """A textured picture sliding a pixel a frame: packets of a few hundred bytes each."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (size, 2 * size, 3), np.uint8)
    return [Image.fromarray(np.ascontiguousarray(tex[:, k : k + size])) for k in range(n)]


def _decodable_times(data: bytes) -> list[float]:
    """Times of the frames that decode, packet by packet, skipping those that fail."""
    times = []
    with av.open(io.BytesIO(data), mode="r") as c:
        s: Any = c.streams.video[0]
        for packet in c.demux(s):
            with contextlib.suppress(av.error.InvalidDataError):
                times += [round(float(f.pts * s.time_base), 4) for f in packet.decode()]
    return times


def test_packets_that_fail_to_decode_are_skipped_under_every_policy() -> None:
    """4 KB of 0xFF in the middle of a 3 s clip: the packets there fail to decode (FFmpeg's
    decoder raises on them, which errored the whole sample), the frames around them are
    sampled by every policy, each at or after its target, and the count is recorded."""
    data = bytearray(_encode(_moving(75), fps=25, keyint=25))
    mid = len(data) // 2
    data[mid : mid + 4000] = b"\xff" * 4000
    with av.open(io.BytesIO(bytes(data)), mode="r") as c, pytest.raises(av.error.InvalidDataError):
        list(c.decode(c.streams.video[0]))  # decoding without skipping stops at the damage
    for policy in POLICIES:
        v = decode_video(bytes(data), SamplingPolicy.parse(policy))
        assert v.error is None and v.frames, (policy, v.detail)
        assert v.times == sorted(set(v.times))
        if policy != "keyframes":  # key frames alone need not touch the damaged packets
            assert v.info["bad_packets"] > 0, policy
    # uniform:8 takes the first frame that decodes at or after each target, once.
    decodable = _decodable_times(bytes(data))
    assert 40 < len(decodable) < 75
    want = sorted({min(t for t in decodable if t >= (i + 0.5) * 3 / 8 - 1e-6) for i in range(8)})
    assert decode_video(bytes(data), SamplingPolicy.parse("uniform:8")).times == want
    clean = Sample("c", _encode(_moving(75), fps=25, keyint=25), image_ext="mp4")
    damaged = Sample("d", bytes(data), image_ext="mp4")
    stage = VideoStage()
    for sample, bad in ((clean, False), (damaged, True)):
        row = dict(zip(COLUMNS, stage.prepare(sample, decode_sample(sample)), strict=True))
        assert (row["video_bad_packets"] > 0) is bad and row["video_capped"] is False


def _cut_at(data: bytes, seconds: float) -> bytes:
    """The bytes of ``data`` (faststart, no B-frames) up to its first packet at ``seconds``."""
    with av.open(io.BytesIO(data), mode="r") as c:
        s: Any = c.streams.video[0]
        at = round(seconds / s.time_base)
        pos = next(p.pos for p in c.demux(s) if p.pts is not None and p.pts >= at)
    return data[:pos]


def test_a_clip_cut_short_is_a_decode_error_under_every_policy(tmp_path: Path) -> None:
    """The first half of a streamed (faststart) 3 s clip: its index declares 3 s, its packets
    end at 1.5 s. Every policy calls it a decode error (it was kept with two frames, the
    second the last decodable one given for a target it does not reach)."""
    data = _encode(_moving(75), fps=25, keyint=25, path=tmp_path / "c.mp4")
    half = _cut_at(data, 1.5)
    for policy in POLICIES:
        v = decode_video(half, SamplingPolicy.parse(policy))
        assert v.error == "video_decode_error", policy
        assert v.detail == "truncated: the packets end at 1.52 s of a declared 3 s", policy


def test_a_target_past_the_last_frame_gets_no_frame(tmp_path: Path) -> None:
    """The same clip missing its last 0.5 s (within the truncation tolerance, so kept): the
    targets it still reaches get the frames the whole clip gives them, and the last target
    (2.81 s) none, not the frame at 2.48 s."""
    data = _encode(_moving(75), fps=25, keyint=25, path=tmp_path / "c.mp4")
    whole = decode_video(data, SamplingPolicy.parse("uniform:8"))
    cut = decode_video(_cut_at(data, 2.5), SamplingPolicy.parse("uniform:8"))
    assert cut.error is None and whole.times[-1] > 2.5
    assert cut.times == [t for t in whole.times if t < 2.5]


def test_an_audio_track_outlasting_the_video_is_no_cut() -> None:
    """Matroska declares the file's duration (5 s here, the audio's), not the video's (2 s):
    the packets of every stream count, so the clip is kept, with no frame for the targets
    past its video."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as out:
        vs: Any = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        aus: Any = out.add_stream("aac", rate=8000)
        for im in _moving(20, size=64):
            for packet in vs.encode(av.VideoFrame.from_image(im)):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        tone = (np.sin(np.arange(40_000) / 5) * 3000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*aus.encode(frame), *aus.encode()]:
            out.mux(packet)
    v = decode_video(buf.getvalue(), SamplingPolicy.parse("uniform:8"))
    assert v.error is None, v.detail
    duration = v.info["duration"]
    assert duration > 4.5  # the audio's (and its encoder's padding)
    targets = [(i + 0.5) * duration / 8 for i in range(8)]
    # The frame at or after each target while the video lasts (frames 0.1 s apart to 2 s).
    assert v.times == [math.ceil(t * 10 - 1e-9) / 10 for t in targets if t < 2.0]
    assert len(v.times) < 8


def test_a_damaged_clip_is_flagged_by_the_default_pack_and_dropped_by_strict() -> None:
    """Skipped packets were counted but no rule read them: a damaged clip was kept silently."""
    from clipaudit.curate.stages.video import video_rule
    from clipaudit.rules.schema import load_pack

    cols = {
        "id": ["clean", "damaged", "image"],
        "media": ["video", "video", "image"],
        "video_motion": [5.0, 5.0, None],
        "video_black_share": [0.0, 0.0, None],
        "video_duration": [3.0, 3.0, None],
        "video_bad_packets": [0, 4, None],
    }
    sig = {k: np.array(v, dtype=object) for k, v in cols.items()}
    for pack, action in (("default", "flag"), ("strict", "drop")):
        p = load_pack(pack)
        assert video_rule(sig, p) == [[], ["video_damaged"], []]
        assert p.actions["video_damaged"] == action
