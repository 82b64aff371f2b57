"""Which frames each video sampling policy takes: fps over the whole of a long clip once the
frame cap applies, key frames by the packets' flags for every codec (VP9 included), each
decoded frame at most once, and no still-video verdict from a single frame."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipaudit.data.decode import decode_sample
from clipaudit.data.formats import write_dataset
from clipaudit.data.sample import Sample
from clipaudit.data.video import MAX_FRAMES, SamplingPolicy, decode_video, encode_video


def _levels(n: int, fps: float, level: Any, size: int = 32) -> list[Image.Image]:
    """``n`` flat grey frames, frame k at grey ``level(k / fps)``: a sampled frame's mean
    says which frame it is."""
    return [Image.new("RGB", (size, size), (int(level(k / fps)),) * 3) for k in range(n)]


def _grey(im: Image.Image) -> float:
    return float(np.asarray(im.convert("L"), np.float32).mean())


def _sample(data: bytes, policy: str) -> Any:
    return decode_video(data, SamplingPolicy.parse(policy))


@pytest.mark.parametrize(("rate", "seconds"), [(4, 20), (16, 40)])
def test_fps_past_the_frame_cap_spreads_the_frames_over_the_whole_clip(
    rate: int, seconds: int
) -> None:
    """fps:2 on a 20 s (40 s) clip asks for 40 (80) frames: the 32 kept spread over the whole
    clip as uniform:32 does, not the first 16 s; the clip records that the cap applied. The
    4 fps clip is sampled in one decoding pass, the 16 fps one (640 frames) by seeking."""

    def level(t: float) -> float:
        return 20 + 5 * int(t)  # a new grey every second

    data = encode_video(_levels(rate * seconds, rate, level), fps=rate)
    v = _sample(data, "fps:2")
    assert v.error is None and len(v.frames) == MAX_FRAMES
    assert v.times[-1] > seconds - 1 and v.times[0] < 1
    targets = [(i + 0.5) * seconds / MAX_FRAMES for i in range(MAX_FRAMES)]
    # The first frame at or after each target (frames are 1/rate apart).
    assert all(t - 1e-6 <= got < t + 1 / rate for t, got in zip(targets, v.times, strict=True))
    assert v.info["capped"] is True and v.info["policy"] == "fps:2"
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - level(t)) < 2.5, t
    # Under the cap: F frames a second from the start, as before.
    one = _sample(data, "fps:1" if seconds <= MAX_FRAMES else "fps:0.5")
    step = 1.0 if seconds <= MAX_FRAMES else 2.0
    assert one.times == pytest.approx([i * step for i in range(int(seconds / step))], abs=1e-3)
    assert one.info["capped"] is False


def test_the_video_stage_records_that_the_frame_cap_applied() -> None:
    from clipaudit.curate.stages.video import COLUMNS, VideoStage

    data = encode_video(_levels(80, 4, lambda t: 20 + 5 * int(t)), fps=4)  # 20 s
    stage = VideoStage()
    row = {}
    for policy, capped in (("fps:2", True), ("fps:1", False), ("uniform:8", False)):
        sample = Sample("v", data, image_ext="mp4")
        d = decode_sample(sample, SamplingPolicy.parse(policy))
        row = dict(zip(COLUMNS, stage.prepare(sample, d), strict=True))
        assert row["video_capped"] is capped, policy
        assert row["video_policy"] == policy
    assert row["video_frames"] == 8


def _demuxed_keys(data: bytes) -> list[float]:
    import av

    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        keys = [p for p in c.demux(s) if p.size and p.is_keyframe]
        return [round(float(p.pts * s.time_base), 4) for p in keys]


@pytest.mark.parametrize("fmt", ["webm", "mp4"])
def test_keyframes_are_the_key_frames_for_every_codec(fmt: str) -> None:
    """VP9's decoder ignores skip_frame = NONKEY, so keyframes on a WebM clip took its first
    32 frames; the packets' key flags say which frames are key, for every codec."""

    def level(t: float) -> float:
        return 10 + 9 * t * 8  # a new grey every frame (24 frames at 8 fps)

    data = encode_video(_levels(24, 8, level), fps=8, fmt=fmt)  # a key frame a second at most
    keys = _demuxed_keys(data)  # x264 also puts one at scene cuts: every frame is one here
    assert keys == [0.0, 1.0, 2.0] if fmt == "webm" else len(keys) >= 3
    v = _sample(data, "keyframes")
    assert v.error is None and v.info["codec"] == ("vp9" if fmt == "webm" else "h264")
    assert v.times == pytest.approx(keys, abs=1e-3) and len(v.frames) == len(keys)
    assert v.info["capped"] is False
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - level(t)) < 4, t


def test_more_key_frames_than_the_cap_are_spread_over_the_clip() -> None:
    """40 key frames (a VP9 clip of one frame a second, every frame key): 32 of them, evenly
    spread over the list, the last near the end; the first 32 alone stopped at 31 s."""
    data = encode_video(_levels(40, 1, lambda t: 20 + 5 * t), fps=1, fmt="webm")
    keys = _demuxed_keys(data)
    assert len(keys) == 40
    v = _sample(data, "keyframes")
    want = [keys[int((i + 0.5) * 40 / MAX_FRAMES)] for i in range(MAX_FRAMES)]
    assert v.times == pytest.approx(want, abs=1e-3) and v.times[-1] == pytest.approx(39.0)
    assert v.error is None and v.info["capped"] is True and len(v.frames) == MAX_FRAMES
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - (20 + 5 * t)) < 2.5, t


def test_fps_above_the_clips_rate_takes_each_frame_once() -> None:
    """fps:30 on a 1 s clip at 25 fps: 30 targets, 25 frames; each frame once (repeats
    weighed those frames twice in the clip's mean embedding and inflated video_frames)."""

    def level(t: float) -> float:
        return 10 + 9 * round(t * 25)

    data = encode_video(_levels(25, 25, level), fps=25)
    v = _sample(data, "fps:30")
    assert v.times == pytest.approx([k / 25 for k in range(25)], abs=1e-3)
    assert v.info["capped"] is False
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - level(t)) < 2.5, t
    d = decode_sample(Sample("v", data, image_ext="mp4"), SamplingPolicy.parse("fps:30"))
    assert d.frames is not None and len(d.frames) == 25


def _vfr_clip(pts_ms: list[int]) -> bytes:
    """An H.264 mp4 whose frames sit at ``pts_ms`` (variable frame rate), frame k grey
    10 + 9k."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        s: Any = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"preset": "veryfast", "bf": "0"}
        for k, ms in enumerate(pts_ms):
            frame = av.VideoFrame.from_image(Image.new("RGB", (32, 32), (10 + 9 * k,) * 3))
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return buf.getvalue()


def test_fps_on_a_variable_frame_rate_clip_takes_each_frame_once() -> None:
    """10 fps for a second, no frame from 1.0 to 1.5 s, then 30 fps: fps:10's targets in
    the gap all land on the frame at 1.5 s, which is taken once."""
    pts = [100 * k for k in range(10)] + [1500 + round(100 * j / 3) for j in range(15)]
    data = _vfr_clip(pts)
    v = _sample(data, "fps:10")
    assert v.error is None
    count = int(v.info["duration"] * 10 + 1e-9)
    targets = [i / 10 for i in range(count)]
    want = sorted({min(p for p in pts if p >= round(t * 1000)) / 1000 for t in targets})
    assert v.times == pytest.approx(want, abs=1e-3)
    assert len(set(v.times)) == len(v.times) and 1.5 in v.times and 1.0 not in v.times
    assert v.info["capped"] is False
    for t, im in zip(v.times, v.frames, strict=True):
        assert abs(_grey(im) - (10 + 9 * pts.index(round(t * 1000)))) < 2.5, t


def test_one_sampled_frame_gives_no_motion_verdict(tmp_path: Path) -> None:
    """uniform:1 samples one frame: motion is null, not 0, and the clip is not dropped as a
    still video; with two or more frames a still clip still is. keyframes on a short clip
    with one key frame also reads frames at a third and two thirds of it (its first frame
    alone made a fade-in from black a black_video), so it has a verdict."""
    from typer.testing import CliRunner

    from clipaudit.cli import app

    still = encode_video([Image.new("RGB", (32, 32), (120, 60, 30))] * 24, fps=8)
    moving = encode_video(_levels(24, 8, lambda t: 20 + 60 * t), fps=8)
    for data in (still, moving):
        for policy in ("uniform:1", "keyframes"):  # a key frame every second: 3 of them
            d = decode_sample(Sample("v", data, image_ext="mp4"), SamplingPolicy.parse(policy))
            assert d.video is not None and d.frames is not None
            assert (d.video["motion"] is None) == (len(d.frames) == 1), policy
    one_key = encode_video([Image.new("RGB", (32, 32), (120, 60, 30))] * 6, fps=8)  # 0.75 s
    d = decode_sample(Sample("v", one_key, image_ext="mp4"), SamplingPolicy.parse("keyframes"))
    assert d.frames is not None and len(d.frames) == 3 and d.video is not None
    assert d.video["motion"] == 0.0 and d.video["black_share"] == 0.0
    # The rule: null motion is no verdict; 0 (two frames or more alike) is a still video.
    from clipaudit.curate.stages.video import video_rule
    from clipaudit.rules.schema import load_pack

    sig = {
        "id": np.array(["one", "still", "moving"], object),
        "media": np.array(["video"] * 3, object),
        "video_motion": np.array([None, 0.0, 5.0], object),
        "video_black_share": np.array([0.0] * 3, object),
        "video_duration": np.array([3.0] * 3, object),
    }
    assert video_rule(sig, load_pack("default")) == [[], ["still_video"], []]
    # End to end: curate with uniform:1 drops neither clip as still.
    clips = [Sample("still", still, caption="a brown square", image_ext="mp4"),
             Sample("moving", moving, caption="a grey square", image_ext="mp4")]  # fmt: skip
    write_dataset(clips, tmp_path / "d", "webdataset")
    args = ["curate", str(tmp_path / "d"), "--stages", "video", "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(app, [*args, "--video-sampling", "uniform:1"])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(tmp_path / "r" / "decisions.parquet").to_pylist()
    assert len(rows) == 2
    for d in rows:
        assert d["video_frames"] == 1 and d["video_motion"] is None
        assert "still_video" not in d["reasons"], d["id"]
