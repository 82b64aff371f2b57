"""Video samples: readers, bounded PyAV decoding, frame sampling, the video stage, video
copies through decide, and the world's video pool against its truths."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from clipaudit.data.decode import decode_sample
from clipaudit.data.formats import open_dataset, write_dataset
from clipaudit.data.sample import Sample, sniff_image_ext
from clipaudit.data.video import (
    SamplingPolicy,
    decode_video,
    encode_video,
    frame_stats,
)
from clipaudit.errors import ClipauditError


def _moving(
    n: int = 24,
    size: int = 64,
    color: tuple[int, int, int] = (255, 0, 0),
    ground: tuple[int, int, int] = (200, 200, 200),
) -> list[Image.Image]:
    frames = []
    for k in range(n):
        im = Image.new("RGB", (size, size), ground)
        ImageDraw.Draw(im).ellipse((2 + k, 20, 22 + k, 40), fill=color)
        frames.append(im)
    return frames


def test_sampling_policies_pick_the_frames_they_promise() -> None:
    data = encode_video(_moving(24), fps=8)  # 3 s, a key frame every second
    v = decode_video(data, SamplingPolicy.parse("uniform:8"))
    assert v.error is None and len(v.frames) == 8
    assert v.times == pytest.approx([(i + 0.5) * 3 / 8 for i in range(8)], abs=0.07)
    assert v.info["duration"] == pytest.approx(3.0) and v.info["fps"] == pytest.approx(8.0)
    assert v.info["policy"] == "uniform:8" and v.frames[0].size == (64, 64)
    fps = decode_video(data, SamplingPolicy.parse("fps:2"))
    assert fps.times == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5], abs=0.07)
    keys = decode_video(data, SamplingPolicy.parse("keyframes"))
    assert keys.times == pytest.approx([0, 1, 2], abs=0.01)
    # Two shots: a cut from a light to a dark scene halfway.
    dark = _moving(16, color=(0, 0, 255), ground=(20, 20, 60))
    cut = encode_video(_moving(16) + dark, fps=8)
    scenes = decode_video(cut, SamplingPolicy.parse("scenes"))
    assert len(scenes.frames) == 2 and scenes.times[1] == pytest.approx(2.0, abs=0.3)
    for bad in ("uniform:0", "uniform:99", "fps:-1", "every:3", "keyframes:2"):
        with pytest.raises(ClipauditError, match="uniform:N"):
            SamplingPolicy.parse(bad)


def test_a_phone_clips_display_rotation_is_applied() -> None:
    """A portrait phone clip is stored sideways with a display matrix; its frames must come
    out as shown (as FFmpeg's own tool turns them), whatever the sampling policy."""
    im = Image.new("RGB", (64, 48), (0, 0, 255))
    ImageDraw.Draw(im).rectangle((0, 0, 15, 47), fill=(255, 0, 0))  # red on the stored left
    stored = [im] * 16
    for degrees, turn in (
        (90, Image.Transpose.ROTATE_90),
        (-90, Image.Transpose.ROTATE_270),
        (180, Image.Transpose.ROTATE_180),
    ):
        shown = np.asarray(im.transpose(turn), np.int16)
        data = encode_video(stored, fps=8, rotation=degrees)
        for policy in ("uniform:4", "fps:2", "keyframes", "scenes"):
            v = decode_video(data, SamplingPolicy.parse(policy))
            assert v.error is None and v.frames, (degrees, policy)
            assert v.frames[0].size == shown.shape[1::-1], (degrees, policy)
            got = np.asarray(v.frames[0], np.int16)
            assert np.abs(got - shown).mean() < 12, (degrees, policy)
        assert (v.info["width"], v.info["height"]) == shown.shape[1::-1]
    plain = decode_video(encode_video(stored, fps=8))
    assert plain.frames[0].size == (64, 48) and (plain.info["width"], plain.info["height"]) == (
        64,
        48,
    )


def test_fps_sampling_decodes_on_within_a_group_of_pictures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targets closer than the next key frame are reached by decoding on, not by seeking back
    to the key frame before each: same frames, one seek per group of pictures. Counted are
    the seeks of the clip's own demuxer to a key frame (the decoder's); the look-ups of a
    second demuxer (where a seek would land) and the check of the clip's end decode nothing."""
    import av.container

    frames = _moving(48, size=48)
    data = encode_video(frames, fps=8)  # 6 s, a key frame every second
    calls: list[tuple[int, bool]] = []
    real_seek = av.container.InputContainer.seek

    def counting_seek(self: object, *args: object, **kwargs: object) -> None:
        calls.append((id(self), bool(kwargs.get("any_frame"))))
        real_seek(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(av.container.InputContainer, "seek", counting_seek)
    v = decode_video(data, SamplingPolicy.parse("fps:4"))
    assert v.error is None and len(v.frames) == 24
    assert v.times == pytest.approx([i / 4 for i in range(24)], abs=0.07)
    # Each sampled frame is the one at its time: the ellipse has moved one pixel a frame.
    for t, im in zip(v.times, v.frames, strict=True):
        want = np.asarray(frames[round(t * 8)], np.int16)
        assert np.abs(np.asarray(im, np.int16) - want).mean() < 6, t
    seeks = [c for c in calls if c == (calls[0][0], False)]  # the clip's demuxer seeks first
    assert len(seeks) <= 7, len(seeks)  # one per key frame at most, not one per target (24)


def _mux(out: Any, stream: Any, frames: Any) -> None:
    """Encode ``frames`` (PIL images or PyAV frames) into ``stream`` of the open container
    ``out``, then flush it."""
    import av

    for frame in frames:
        if isinstance(frame, Image.Image):
            frame = av.VideoFrame.from_image(frame)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _picture_stream(out: Any, rate: int) -> Any:
    stream = out.add_stream("mjpeg", rate=rate)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"
    return stream


def test_a_cover_picture_stream_is_not_taken_for_the_clip() -> None:
    """A Matroska file whose first video stream is a one-frame JPEG cover: the clip is the
    H.264 stream after it (an MJPEG stream alone is still read); an audio file whose only
    picture is its attached cover has no video stream."""
    import io

    import av

    cover = [Image.new("RGB", (64, 64), (250, 250, 0))]
    moving = _moving(16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as out:
        pic = _picture_stream(out, 1)
        clip: Any = out.add_stream("libx264", rate=8)
        clip.width, clip.height, clip.pix_fmt = 64, 64, "yuv420p"
        _mux(out, pic, cover)
        _mux(out, clip, moving)
    v = decode_video(buf.getvalue(), SamplingPolicy.parse("uniform:4"))
    assert v.error is None and v.info["codec"] == "h264" and len(v.frames) == 4
    assert frame_stats(v.frames)["motion"] > 1.0  # the moving ellipse, not a still cover
    assert np.asarray(v.frames[0])[..., 2].mean() > 100  # grey ground, not the yellow cover
    alone = io.BytesIO()  # an MJPEG camera clip: its only stream is the clip
    with av.open(alone, mode="w", format="avi") as out:
        _mux(out, _picture_stream(out, 8), moving)
    v = decode_video(alone.getvalue(), SamplingPolicy.parse("uniform:4"))
    assert v.error is None and v.info["codec"] == "mjpeg" and len(v.frames) == 4
    song = io.BytesIO()  # audio with its cover art, flagged as an attached picture
    with av.open(song, mode="w", format="mp4") as out:
        sound: Any = out.add_stream("aac", rate=44100)
        art = _picture_stream(out, 1)
        art.disposition = av.stream.Disposition.attached_pic
        _mux(out, art, cover)
        silence = []
        for i in range(40):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            silence.append(frame)
        _mux(out, sound, silence)
    v = decode_video(song.getvalue())
    assert v.error == "no_video_stream" and "cover art" in (v.detail or "")


def test_large_frames_are_kept_small_and_the_clip_keeps_its_size() -> None:
    """Sampled frames are scaled to MAX_FRAME_SIDE on their longer side (every model reads
    320 px or less; full-HD frames held gigabytes a batch), while the clip's recorded size
    is its own, as shown (a phone's quarter turn applied)."""
    from clipaudit.data.video import MAX_FRAME_SIDE

    stored = []
    for k in range(16):
        im = Image.new("RGB", (1280, 720), (40, 120, 200))
        ImageDraw.Draw(im).rectangle((100 + 8 * k, 200, 400 + 8 * k, 500), fill=(250, 60, 0))
        stored.append(im)
    for degrees, shown in ((0, (1280, 720)), (90, (720, 1280))):
        data = encode_video(stored, fps=8, rotation=degrees)
        v = decode_video(data, SamplingPolicy.parse("uniform:4"))
        assert v.error is None and len(v.frames) == 4
        long_side = MAX_FRAME_SIDE
        short_side = round(MAX_FRAME_SIDE * 720 / 1280)
        want = (long_side, short_side) if shown[0] > shown[1] else (short_side, long_side)
        assert all(f.size == want for f in v.frames), [f.size for f in v.frames]
        assert (v.info["width"], v.info["height"]) == shown
        d = decode_sample(Sample("v", data, image_ext="mp4"), SamplingPolicy.parse("uniform:4"))
        assert d.video is not None and (d.video["width"], d.video["height"]) == shown
    # The content survives the scaling: the orange block of the last sampled frame.
    frame = np.asarray(v.frames[-1].transpose(Image.Transpose.ROTATE_270), np.int16)
    assert frame[..., 0].max() > 200 and frame[..., 2].min() < 40


def test_dci_and_camera_4k_pass_the_frame_size_cap_and_8k_does_not() -> None:
    """The cap was UHD's 3840 x 2160 pixels: DCI 4K (4096 x 2160) and the 4:3 4K of drones
    and action cameras were refused as video_too_large."""
    cases = (((4096, 2160), None), ((4096, 3072), None), ((7680, 4320), "video_too_large"))
    for size, error in cases:
        data = encode_video([Image.new("RGB", size, (30, 90, 160))] * 2, fps=2)
        v = decode_video(data, SamplingPolicy.parse("uniform:2"))
        assert v.error == error, (size, v.error, v.detail)
        assert (v.info["width"], v.info["height"]) == size


def test_decoding_is_bounded_and_never_raises() -> None:
    data = encode_video(_moving(24), fps=8)
    assert decode_video(data, deadline_s=0.0).error == "video_timeout"
    assert decode_video(b"").error == "empty_image"
    assert decode_video(None).error == "missing_image"
    assert decode_video(b"\x00\x00\x00\x18ftypmp42" + bytes(500)).error == "video_decode_error"


def test_still_and_black_measures() -> None:
    still = decode_video(encode_video([_moving(1)[0]] * 16, fps=8))
    moving = decode_video(encode_video(_moving(24), fps=8))
    black = decode_video(encode_video([Image.new("RGB", (64, 64))] * 16, fps=8))
    assert frame_stats(still.frames)["motion"] < 0.7 < frame_stats(moving.frames)["motion"]
    assert frame_stats(black.frames)["black_share"] == 1.0
    assert frame_stats(moving.frames)["black_share"] == 0.0


def test_a_slow_pan_is_not_a_still_clip() -> None:
    """A smooth ramp panned one pixel a frame: sampled frames (every third) differ by under
    the still cut from their neighbours, but the clip moves 21 pixels in all."""
    ramp = (60 + 0.15 * np.arange(64 + 24))[None, :, None].repeat(64, 0).repeat(3, 2)
    frames = [Image.fromarray(ramp[:, k : k + 64].round().astype(np.uint8)) for k in range(24)]
    v = decode_video(encode_video(frames, fps=8))
    grey = [np.asarray(f.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)
            for f in v.frames]  # fmt: skip
    steps = [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(grey)]
    assert len(v.frames) == 8 and max(steps) < 0.7
    assert frame_stats(v.frames)["motion"] > 2.0


def test_readers_know_a_sample_is_a_video(tmp_path: Path) -> None:
    vid = encode_video(_moving(16), fps=8)
    assert sniff_image_ext(vid) == "mp4"
    assert sniff_image_ext(encode_video(_moving(8), fps=8, fmt="webm")) == "webm"
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    samples = [
        Sample("clip", vid, caption="a red circle moving", image_ext="mp4"),
        Sample("pic", buf.getvalue(), caption="a green square", image_ext="png"),
    ]
    for fmt in ("webdataset", "parquet", "imagefolder"):
        write_dataset(samples, tmp_path / fmt, fmt)
        ds = open_dataset(str(tmp_path / fmt))
        got = {
            s.id if fmt != "imagefolder" else Path(s.id).stem: s
            for sh in ds.shards()
            for s in ds.read_shard(sh)
        }
        media = {k: s.media for k, s in got.items()}
        assert media == {"clip": "video", "pic": "image"}, (fmt, media)
        d = decode_sample(got["clip"])
        assert d.error is None and len(d.frames or []) == 8 and d.image is d.frames[4]  # type: ignore[index]


def _video_pool(tmp: Path, n: int = 120, seed: int = 2) -> tuple[Path, Path]:
    from clipaudit.demo.video import run_video_demo

    run_video_demo(tmp, n=n, seed=seed, log=lambda m: None)
    return tmp / "run", tmp / "pool" / "labels.jsonl"


@pytest.fixture(scope="module")
def video_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _video_pool(tmp_path_factory.mktemp("vdemo"))


def test_video_demo_finds_the_planted_truths(video_demo: tuple[Path, Path]) -> None:
    run, labels = video_demo
    stats = json.loads((run / "stats.json").read_text())
    t = stats["truth_scores"]
    assert stats["adds_up"] and stats["input"] == 120
    assert t["misaligned_caption"]["f1"] >= 0.9, t["misaligned_caption"]
    assert t["copy_pair_precision"] == 1.0
    by = t["copies_by_transform"]
    assert set(by) == {"reencode", "resize", "trim"}
    assert sum(v["found"] for v in by.values()) >= 0.95 * sum(v["planted"] for v in by.values())
    planted = t["signals_by_planted_issue"]
    assert planted["black"]["recall"] == 1.0 and planted["black"]["false_positives"] == 0
    assert planted["still"]["recall"] == 1.0 and planted["still"]["false_positives"] <= 2
    # One stand-in unsafe frame among eight decides its clip; no clean clip is dropped for it.
    assert planted["unsafe_frame"]["planted"] >= 3, planted["unsafe_frame"]
    assert planted["unsafe_frame"]["recall"] == 1.0, planted["unsafe_frame"]
    assert planted["unsafe_frame"]["false_positives"] == 0, planted["unsafe_frame"]
    # Mid-clip marks: no clean clip flagged here (recall: the test below, on more of them).
    assert planted["watermark_mid"]["false_positives"] == 0, planted["watermark_mid"]
    # Every sample once in the decision table, with its media and video columns.
    dec = pq.read_table(run / "decisions.parquet").to_pylist()
    ids = [json.loads(x)["id"] for x in labels.open()]
    assert sorted(d["id"] for d in dec) == sorted(ids)
    assert {d["media"] for d in dec} == {"video"}
    ok = [d for d in dec if d["error"] is None]
    assert all(d["video_frames"] == 8 and d["video_policy"] == "uniform:8" for d in ok)
    assert all(len(d["frame_phash"]) == 8 for d in ok)
    assert "frame_thumbs" not in dec[0]  # kept in signals/, not repeated in decisions
    assert stats["signals"]["video"]["videos"] == 120


def test_video_copies_are_found_through_decide_alone(video_demo: tuple[Path, Path]) -> None:
    """A video pairs through its frame hashes alone (its middle frame's image hashes take no
    part), confirmed on frame thumbnails read for the candidate pairs only: the compact
    columns the reduce holds for every sample carry none."""
    from clipaudit.curate.decide import decide_run, load_signals
    from clipaudit.curate.decide.rules import compact_columns
    from clipaudit.curate.rundir import RunDir

    run, labels = video_demo
    sig = load_signals(RunDir(run))
    compact = compact_columns(sig, np.arange(len(sig["id"])))
    assert "frame_thumbs" not in compact.column_names and "frame_phash" in compact.column_names
    assert compact.column("phash").null_count == len(sig["id"])  # all of them videos
    lab = {x["id"]: x for x in map(json.loads, labels.open())}
    stats = decide_run(run, "default", write_kept=False, gates=False)
    search = stats["duplicate_search"]
    assert search["video_pairs"] >= 1 and search["video_candidates"] >= search["video_pairs"]
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "duplicate_of"]).to_pylist()
    fam = {i: x["duplicate_of"] or i for i, x in lab.items()}
    assert all(fam[d["id"]] == fam[d["duplicate_of"]] for d in dec if d["duplicate_of"])


def test_frame_pairs_need_matching_thumbnails() -> None:
    from clipaudit.curate.decide.keeper import frame_corr, video_pairs

    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, (3, 8), dtype=np.int64).view(np.uint64)
    frames = base.copy()
    frames[1] = frames[0] ^ np.uint64(1)  # video 1: video 0's frames, one bit off
    valid = np.ones((3, 8), np.bool_)
    a, b = video_pairs(frames, valid, 4, 0.5)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 1)]
    thumbs = rng.integers(0, 256, (3, 8, 768), dtype=np.uint8)
    same = frame_corr(thumbs[[0]], valid[[0]], thumbs[[0]], valid[[0]])
    other = frame_corr(thumbs[[0]], valid[[0]], thumbs[[2]], valid[[2]])
    assert same[0] == pytest.approx(1.0, abs=1e-4) and other[0] < 0.3


def test_hostile_videos_end_in_a_code_or_a_bounded_result() -> None:
    from tests.hostile.videos import hostile_videos

    for case in hostile_videos():
        t0 = time.perf_counter()
        d = decode_sample(Sample("x", case.data, image_ext=case.ext))
        got = "ok" if d.error is None else d.error
        assert got in case.expect, (case.name, got)
        assert time.perf_counter() - t0 < 30, case.name  # a guard against a hang, not a bench


def test_embed_gives_a_video_the_mean_of_its_frames(tmp_path: Path) -> None:
    from clipaudit.models import load_clip
    from clipaudit.models.embed import embed_dataset

    vid = encode_video(_moving(16), fps=8)
    write_dataset(
        [Sample("clip", vid, caption="a red circle", image_ext="mp4")], tmp_path / "d", "webdataset"
    )
    clip = load_clip("random:clipaudit-tiny")
    embed_dataset(open_dataset(str(tmp_path / "d")), clip, tmp_path / "e", show_progress=False)
    got = np.load(tmp_path / "e" / "img_emb" / "img_emb_0.npy")[0]
    e = clip.encode_images(decode_video(vid).frames).mean(axis=0)
    assert np.allclose(got, e / np.linalg.norm(e), atol=1e-5)
    assert pq.read_table(tmp_path / "e" / "metadata" / "metadata_0.parquet")["image_ok"][0].as_py()
    assert json.loads((tmp_path / "e" / "embed.json").read_text())["video_sampling"] == "uniform:8"
    # Another sampling policy: the mean of those frames instead.
    embed_dataset(
        open_dataset(str(tmp_path / "d")), clip, tmp_path / "k", show_progress=False,
        policy=SamplingPolicy.parse("keyframes"),
    )  # fmt: skip
    got = np.load(tmp_path / "k" / "img_emb" / "img_emb_0.npy")[0]
    e = clip.encode_images(decode_video(vid, SamplingPolicy.parse("keyframes")).frames).mean(axis=0)
    assert np.allclose(got, e / np.linalg.norm(e), atol=1e-5)
    assert json.loads((tmp_path / "k" / "embed.json").read_text())["video_sampling"] == "keyframes"


def test_nsfw_takes_each_class_at_its_worst_frame() -> None:
    from clipaudit.curate.stages.nsfw import _detect
    from clipaudit.data.decode import Decoded

    class Fake:
        def scores(self, image: Image.Image) -> dict[str, float]:
            r, g, _ = (float(v) / 255 for v in np.asarray(image).mean(axis=(0, 1)))
            return {"RED": round(r, 3), "GREEN": round(g, 3)}

    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 51, 0), (0, 0, 0))]
    got = json.loads(_detect(Fake(), Decoded(frames[2], frames=frames)) or "{}")
    assert got == {"RED": 1.0, "GREEN": 0.2}
    assert json.loads(_detect(Fake(), Decoded(frames[1])) or "{}") == {"RED": 0.0, "GREEN": 0.2}


def test_the_report_shows_frame_strips_and_the_video_truths(video_demo: tuple[Path, Path]) -> None:
    from clipaudit.reports.render import write_report

    run, _ = video_demo
    html = Path(write_report([run], run / "r.html").html).read_text()
    assert html.count('<img class="strip"') >= 10
    assert "black_video" in html and "still_video" in html and "<script" not in html


def test_text_to_video_retrieval_on_the_world_video_pool(
    video_demo: tuple[Path, Path], tmp_path: Path
) -> None:
    """``eval retrieval`` reads video samples as the renormalised mean of their sampled
    frames, the same vectors ``clipaudit embed`` writes; text→video recall is far above
    chance on the pool's clips (misaligned captions and copies make it less than 1)."""
    from clipaudit.evaluate.images import embed_images
    from clipaudit.evaluate.retrieval import zeroshot_retrieval
    from clipaudit.evaluate.retrievaldata import load_retrieval
    from clipaudit.models import load_clip
    from clipaudit.models.embed import embed_dataset

    _, labels = video_demo
    data_dir = labels.parent / "data"
    clip = load_clip("bundled:world-clip")
    data = load_retrieval(str(data_dir))
    lab = {x["id"]: x for x in map(json.loads, labels.open())}
    # Clips with identical bytes (the black ones) are one gallery item with several captions.
    n = len(data.images.ids)
    assert 100 <= n < 120 and len(data.captions) == 120
    assert sum("black" in lab[i]["issues"] for i in data.images.ids) == 1
    emb = embed_images(clip, data.images, batch_size=32)
    assert emb.ok.sum() == n and not emb.errors
    assert np.allclose(np.linalg.norm(emb.emb, axis=1), 1.0, atol=1e-5)

    embed_dataset(open_dataset(str(data_dir)), clip, tmp_path / "emb", 32, show_progress=False)
    parts = range(len(list((tmp_path / "emb" / "img_emb").glob("*.npy"))))
    ref = np.concatenate([np.load(tmp_path / f"emb/img_emb/img_emb_{k}.npy") for k in parts])
    meta = [
        m
        for k in parts
        for m in pq.read_table(tmp_path / f"emb/metadata/metadata_{k}.parquet").to_pylist()
    ]
    row = {m["id"]: k for k, m in enumerate(meta)}
    same = ref[[row[i] for i in data.images.ids]]
    assert np.min(np.sum(same * emb.emb, axis=1)) > 0.9999

    # The gallery embedded above, not a third decode of every clip (the suite's longest test).
    res = zeroshot_retrieval(clip, data, embedded=emb, batch_size=32)
    m = {k: v["value"] for k, v in res["metrics"].items()}
    chance5 = 5 / n
    assert m["text_to_image_recall@5"] >= 10 * chance5, m
    assert m["text_to_image_recall@1"] <= m["text_to_image_recall@5"] <= 1.0
    assert m["image_to_text_recall@5"] >= 10 * chance5, m


def test_video_watermark_score_is_the_best_window_of_consecutive_frames() -> None:
    from clipaudit.safety.visible.video import aggregate

    # A mark on the last three of eight frames scores as those frames do.
    assert aggregate([0.02] * 5 + [0.99] * 3) == pytest.approx(0.99, abs=1e-6)
    # One frame's false alarm is averaged with its neighbours: far below the frame's score.
    assert aggregate([0.02, 0.02, 0.999, 0.02, 0.02]) < 0.5
    # The same alarm on three consecutive frames is a persistent mark.
    assert aggregate([0.02, 0.999, 0.999, 0.999, 0.02]) == pytest.approx(0.999, abs=1e-6)
    # Fewer frames than the window: the mean of all of them.
    assert aggregate([0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        aggregate([])


def test_a_video_is_judged_against_the_packs_video_threshold() -> None:
    from clipaudit.curate.stages.visible import visible_watermark_rule
    from clipaudit.rules.schema import load_pack

    pack = load_pack("default")
    image_thr, video_thr = pack.visible_watermark.threshold, pack.visible_watermark.video_threshold
    assert video_thr < image_thr  # squashed, re-encoded frames score lower than photos
    between = (image_thr + video_thr) / 2
    sig = {
        "id": np.array(["img", "vid", "vid-low", "broken"], object),
        "visible_watermark_score": np.array([between, between, video_thr - 0.01, None], object),
        "visible_watermark_frames": np.array([None, 8, 8, None], object),
    }
    got = visible_watermark_rule(sig, pack)
    assert got == [[], ["watermark_suspect"], [], []]
    # A run scored before the frames column existed: every row against the image threshold.
    old = {k: v for k, v in sig.items() if k != "visible_watermark_frames"}
    assert visible_watermark_rule(old, pack) == [[], [], [], []]


def test_curate_samples_video_frames_by_the_chosen_policy(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clipaudit.cli import app

    clips = [Sample(f"c{k}", encode_video(_moving(32), fps=8), caption="a red circle",
                    image_ext="mp4") for k in range(2)]  # fmt: skip
    write_dataset(clips, tmp_path / "d", "webdataset")
    runner = CliRunner()
    args = ["curate", str(tmp_path / "d"), "--stages", "quality,video", "--rules", "keep-all"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--video-sampling", "fps:2"])
    assert r.exit_code == 0, r.output
    dec = pq.read_table(tmp_path / "r" / "decisions.parquet").to_pylist()
    # 4 s at 2 frames a second.
    assert [(d["video_policy"], d["video_frames"]) for d in dec] == [("fps:2", 8)] * 2
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["settings"]["video_sampling"] == "fps:2"
    assert run["stage_provenance"]["video"]["policy"] == "fps:2"
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r2"), "--video-sampling", "every:3"])
    # A user error (main() prints it as one line and exits 2), raised before any work.
    assert isinstance(r.exception, ClipauditError), r.output
    assert str(r.exception).startswith("Unknown frame sampling 'every:3'; use uniform:N")
    assert not (tmp_path / "r2" / "run.json").exists()


def test_eval_retrieval_samples_video_frames_by_the_chosen_policy(tmp_path: Path) -> None:
    """``eval retrieval --video-sampling``: a clip's vector is the mean of the frames the
    policy picks (the same vector ``embed`` writes with that policy), and the run says so."""
    from typer.testing import CliRunner

    from clipaudit.cli import app
    from clipaudit.data.video import SamplingPolicy
    from clipaudit.evaluate.images import embed_images
    from clipaudit.evaluate.retrievaldata import load_retrieval
    from clipaudit.models import load_clip
    from clipaudit.models.embed import embed_dataset

    clips = [
        Sample(f"c{k}", encode_video(_moving(32, color=(255, 60 * k, 0)), fps=8),
               caption=f"clip {k}", image_ext="mp4")
        for k in range(3)
    ]  # fmt: skip
    write_dataset(clips, tmp_path / "d", "webdataset")
    clip = load_clip("random:clipaudit-tiny")
    two = SamplingPolicy.parse("uniform:2")
    default = load_retrieval(str(tmp_path / "d"))
    sampled = load_retrieval(str(tmp_path / "d"), policy=two)
    assert default.info["video_sampling"] == "uniform:8" and default.info["videos"] == 3
    assert sampled.info["video_sampling"] == "uniform:2"
    e8 = embed_images(clip, default.images, batch_size=8).emb
    e2 = embed_images(clip, sampled.images, batch_size=8).emb
    assert np.max(np.abs(e8 - e2)) > 1e-3  # other frames, another mean
    embed_dataset(open_dataset(str(tmp_path / "d")), clip, tmp_path / "emb", 8,
                  show_progress=False, policy=two)  # fmt: skip
    ref = np.load(tmp_path / "emb" / "img_emb" / "img_emb_0.npy")
    assert np.min(np.sum(ref * e2, axis=1)) > 0.9999
    runner = CliRunner()
    args = ["eval", "retrieval", str(tmp_path / "d"), "--model", "random:clipaudit-tiny"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--video-sampling", "nth:2"])
    assert isinstance(r.exception, ClipauditError), r.output
    assert str(r.exception).startswith("Unknown frame sampling 'nth:2'; use uniform:N")
    assert not (tmp_path / "r").exists()


def test_mid_clip_watermarks_are_found_at_the_video_threshold(tmp_path: Path) -> None:
    """The world's mark stamped on the screen over the last third of a clip (3 of the 8
    sampled frames), judged at the default pack's video threshold (calibrated on clips filmed
    from real photos, not on the world): most found, no clean clip flagged."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.world.video import VideoPoolConfig, write_video_world

    cfg = VideoPoolConfig(n=80, seed=31, watermark_mid=0.4, misaligned=0.0, copies=0.0,
                          still=0.0, black=0.0, unsafe_frame=0.0)  # fmt: skip
    write_video_world(tmp_path / "pool", cfg)
    curate(CurateConfig(str(tmp_path / "pool" / "data"), str(tmp_path / "run"),
                        stages=["quality", "visible_watermark", "video"]))  # fmt: skip
    marked = {
        x["id"] for x in map(json.loads, (tmp_path / "pool" / "labels.jsonl").open())
        if "watermark_mid" in x["issues"]
    }  # fmt: skip
    dec = pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()
    assert all(d["visible_watermark_frames"] == 8 for d in dec)
    hit = {d["id"] for d in dec if "watermark_suspect" in d["reasons"]}
    assert len(marked) >= 25
    assert len(hit & marked) >= 0.6 * len(marked), (len(hit & marked), len(marked))
    assert not hit - marked


def _first_frame_as_stored(data: bytes) -> np.ndarray:
    import io

    import av

    with av.open(io.BytesIO(data)) as c:
        return np.asarray(next(iter(c.decode(video=0))).to_image()).astype(int)


def _bars_picture(w: int = 320, h: int = 180) -> Image.Image:
    im = Image.new("RGB", (w, h), (40, 40, 40))
    colours = [(220, 30, 30), (30, 200, 40), (30, 60, 220), (240, 220, 20), (250, 250, 250)]
    step = w // 5
    for i, c in enumerate(colours):
        ImageDraw.Draw(im).rectangle((i * step, 20, i * step + step - 1, h - 21), fill=c)
    return im


@pytest.mark.parametrize(
    ("transfer", "codec", "stored_off"),
    [("pq", "libx265", 45), ("hlg", "libx265", 25), ("pq", "libsvtav1", 45)],
)
def test_an_hdr_clip_is_tone_mapped_to_what_it_shows(
    transfer: str, codec: str, stored_off: int
) -> None:
    """PQ (HDR10) and HLG (what phones record) in HEVC, and PQ in AV1, each made here from
    an sRGB picture with sRGB white at 203 nits (ITU-R BT.2408)."""
    from tests.video_clips import hdr_clip

    im = _bars_picture()
    shown = np.asarray(im).astype(int)
    data = hdr_clip(np.asarray(im), transfer, codec=codec)
    v = decode_video(data, SamplingPolicy.parse("uniform:2"))
    assert v.error is None and v.info["hdr"] == transfer
    ours = np.asarray(v.frames[0]).astype(int)
    # Read as SDR numbers the clip is a grey wash (PQ 63 levels off on average, HLG 35);
    # tone-mapped, each colour within reach of the picture that was filmed (10 for both).
    assert np.abs(_first_frame_as_stored(data) - shown).mean() > stored_off
    assert np.abs(ours - shown).mean() < 15
    centres = ours[90, 32::64]
    assert centres[0].argmax() == 0 and centres[1].argmax() == 1 and centres[2].argmax() == 2
    assert centres[4].min() > 200  # white stays white, not the grey of the raw signal


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_a_vp9_hdr_clip_is_tone_mapped_from_its_container_tags(transfer: str) -> None:
    """VP9 profile 2 in WebM (YouTube's HDR): the VP9 stream states no transfer function, the
    WebM Colour element does; the fixtures were made with the FFmpeg command line."""
    from pathlib import Path

    data = (Path(__file__).parent / "fixtures" / "video" / f"bars_{transfer}_vp9.webm").read_bytes()
    shown = np.asarray(_bars_picture()).astype(int)
    v = decode_video(data, SamplingPolicy.parse("uniform:2"))
    assert v.error is None and v.info["hdr"] == transfer
    assert np.abs(_first_frame_as_stored(data) - shown).mean() > 25
    ours = np.asarray(v.frames[0]).astype(int)
    assert np.abs(ours - shown).mean() < 15
    assert ours[90, 32 + 4 * 64].min() > 200


def test_hdr_frames_are_the_same_at_every_decode() -> None:
    """FFmpeg 8.1's sliced scaler changed one 8-pixel run at a slice edge of this clip in
    about one call in five; frames (and so hashes and embeddings) must not vary by call."""
    from tests.video_clips import hdr_clip

    clip = hdr_clip(np.asarray(_bars_picture(200, 320)), "hlg")
    first = np.asarray(decode_video(clip, SamplingPolicy.parse("uniform:1")).frames[0])
    for _ in range(15):
        again = decode_video(clip, SamplingPolicy.parse("uniform:1")).frames[0]
        assert np.array_equal(np.asarray(again), first)


def test_one_tone_mapping_serves_every_frame_size() -> None:
    """Setting FFmpeg's HDR conversion up takes ~2 s and is redone for every frame size: the
    frames are mapped on one fixed canvas instead, with the same pixels as a conversion built
    for their own size."""
    import io

    import av
    from av.video.reformatter import VideoReformatter

    from clipaudit.data import video as video_module
    from tests.video_clips import hdr_clip

    video_module._tone_maps.kept = {}
    clips = [hdr_clip(np.asarray(_bars_picture(w, h)), "hlg") for w, h in ((320, 180), (200, 320))]
    frames = [decode_video(c, SamplingPolicy.parse("uniform:1")).frames[0] for c in clips]
    assert [f.size for f in frames] == [(320, 180), (200, 320)]
    assert len(video_module._tone_maps.kept) == 1
    # An HDR10 clip's light levels (4,000-nit master, MaxCLL 4,000) set the peak FFmpeg
    # compresses from: the canvas carries them (without them a 2,000-nit white came out 255
    # where the clip's own conversion gives 187).
    levels = (
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
        "L(40000000,50):max-cll=4000,1000"
    )
    clips.append(hdr_clip(np.asarray(_bars_picture()), "pq", white=2000, x265=levels))
    frames.append(decode_video(clips[-1], SamplingPolicy.parse("uniform:1")).frames[0])
    assert np.asarray(frames[-1])[90, 288].max() < 230
    for clip, got in zip(clips, frames, strict=True):
        with av.open(io.BytesIO(clip)) as c:
            f = next(iter(c.decode(video=0)))
        small = f.reformat(format="yuv444p16le", interpolation="AREA", threads=1)
        small.color_trc, small.color_primaries = f.color_trc, f.color_primaries
        direct = VideoReformatter().reformat(
            small, format="rgb24", dst_color_trc=1, dst_color_primaries=1, threads=1
        )
        assert np.array_equal(np.asarray(got), direct.to_ndarray())


@pytest.mark.parametrize("codec", ["libx264", "mpeg2video"])
def test_interlaced_frames_keep_one_field_not_combs(codec: str) -> None:
    from tests.video_clips import interlaced_clip

    def comb(a: np.ndarray) -> float:
        g = a.astype(float).mean(axis=2)
        return float(np.abs(np.diff(g, axis=0)).mean())

    data = interlaced_clip(codec=codec)
    v = decode_video(data, SamplingPolicy.parse("uniform:3"))
    assert v.error is None and v.info["interlaced"] == 1.0
    assert comb(_first_frame_as_stored(data)) > 50  # alternate lines 20 px apart
    assert all(comb(np.asarray(f)) < 5 for f in v.frames)
    assert v.frames[0].size == (512, 410)  # 720x576 at most 512 long, the field stretched


def test_an_anamorphic_clip_is_shown_at_its_display_aspect() -> None:
    from fractions import Fraction

    from tests.video_clips import anamorphic_clip

    # A circle as a 16:9 PAL DVD stores it: squeezed to 45/64 of its width.
    im = Image.new("RGB", (720, 576), (230, 230, 230))
    ImageDraw.Draw(im).ellipse((360 - 141, 88, 360 + 141, 488), fill=(20, 20, 160))
    data = anamorphic_clip([np.asarray(im)] * 4, Fraction(64, 45))
    v = decode_video(data, SamplingPolicy.parse("uniform:2"))
    assert v.error is None
    assert (v.info["width"], v.info["height"]) == (1024, 576)
    frame = v.frames[0]
    assert frame.size == (512, 288)
    ys, xs = np.nonzero(np.asarray(frame)[..., 2].astype(int) - np.asarray(frame)[..., 0] > 80)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1.0) < 0.05  # round again, not 0.70 wide
    assert v.info["hdr"] is None and v.info["interlaced"] == 0.0


def _contained(fmt: str, codec: str, frames: list[Image.Image]) -> bytes:
    """The frames in another container (PyAV's own muxers and encoders)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=25)  # MPEG-1 knows only the standard rates
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for im in frames:
            for packet in stream.encode(av.VideoFrame.from_image(im)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def test_broadcast_and_older_web_containers_are_clips(tmp_path: Path) -> None:
    """An image folder of .ts, .mpg, .flv and .3gp clips was read as empty ("samples 1" of
    five, no word); they are clips, told by their own magic in a column with no names, and
    sampled over their whole length."""
    containers = {
        "ts": ("mpegts", "mpeg2video"),
        "mpg": ("mpeg", "mpeg1video"),
        "flv": ("flv", "flv"),
        "3gp": ("3gp", "mpeg4"),
    }
    folder = tmp_path / "clips"
    folder.mkdir()
    for ext, (fmt, codec) in containers.items():
        data = _contained(fmt, codec, _moving(48))  # 1.92 s
        assert sniff_image_ext(data) == ("mp4" if ext == "3gp" else ext), ext
        (folder / f"clip_{ext}.{ext}").write_bytes(data)
        (folder / f"clip_{ext}.txt").write_text(f"a red ball, {ext}")
    ds = open_dataset(folder)
    samples = [s for shard in ds.shards() for s in ds.read_shard(shard)]
    assert sorted(s.image_ext or "" for s in samples) == sorted(containers)
    for s in samples:
        d = decode_sample(s, SamplingPolicy.parse("uniform:4"))
        assert s.media == "video" and d.error is None, (s.image_ext, d.error, d.detail)
        assert d.video is not None and len(d.frames or []) == 4, (s.image_ext, d.video)
        # MPEG program streams declare a bit-rate guess (0.02 s for a 0.64 s clip, which
        # sampled its first frame only): the packets' own end stands instead.
        assert abs(d.video["duration"] - 1.92) < 0.1, (s.image_ext, d.video)


def test_a_clip_with_a_poster_frame_is_curated_as_the_clip(tmp_path: Path) -> None:
    """Video corpora keep a poster .jpg beside each .mp4 under one key: the poster was
    taken for the sample and the clip never decoded."""
    import io
    import tarfile

    black = encode_video(_moving(8) + [Image.new("RGB", (64, 64))] * 40, fps=8)
    poster = io.BytesIO()
    _moving(1)[0].save(poster, "JPEG")
    with tarfile.open(tmp_path / "clips.tar", "w") as tar:
        for name, data in (("a.mp4", black), ("a.jpg", poster.getvalue()), ("a.txt", b"a ball")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (sample,) = [s for s in open_dataset(tmp_path / "clips.tar").read_shard("clips.tar")]
    assert sample.image_ext == "mp4" and sample.media == "video"


def test_two_clips_sharing_a_black_middle_frame_are_not_exact_copies() -> None:
    """A clip's pixel hash was its middle sampled frame's: two different clips with a black
    transition there were exact duplicates. It covers every sampled frame now."""
    from clipaudit.curate.stages.hashes import HashStage, pixel_hash

    black = [Image.new("RGB", (64, 64))] * 10
    a = _moving(20) + black + _moving(18)
    b = _moving(20, color=(0, 160, 0), ground=(250, 250, 250)) + black
    b += _moving(18, color=(0, 0, 200))
    policy = SamplingPolicy.parse("uniform:8")
    da, db = (
        decode_sample(Sample(k, encode_video(f, fps=8), image_ext="mp4"), policy)
        for k, f in (("a", a), ("b", b))
    )
    assert da.image is not None and db.image is not None
    assert pixel_hash(da.image) == pixel_hash(db.image)  # the middle frames: both black
    rows = HashStage().prepare_batch([Sample("a", None), Sample("b", None)], [da, db])
    assert rows[0][2] != rows[1][2]
    again = decode_sample(Sample("a2", encode_video(a, fps=8), image_ext="mp4"), policy)
    assert HashStage().prepare_batch([Sample("a2", None)], [again])[0][2] == rows[0][2]


def test_the_longer_and_less_compressed_clip_is_the_one_kept(tmp_path: Path) -> None:
    """The keeper ranked clips by frame size alone: a 6 s original was dropped for its 5 s
    trim, and an original for its CRF 45 re-encode, by id order. A clip's size is its
    pixels times its seconds, and of one size the one with more bytes is kept."""
    from clipaudit.curate.pipeline import CurateConfig, curate

    frames = _moving(48, size=96)
    clips = {
        "a_trim": encode_video(frames[:40], fps=8),
        "b_crf45": encode_video(frames, fps=8, crf=45),
        "z_original": encode_video(frames, fps=8, crf=18),
    }
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, data in clips.items():
        (folder / f"{name}.mp4").write_bytes(data)
        (folder / f"{name}.txt").write_text("a red ball rolls by")
    assert len(clips["b_crf45"]) < len(clips["z_original"])
    stages = ["quality", "hashes", "video"]
    curate(CurateConfig(str(folder), str(tmp_path / "run"), stages=stages, gates=False))
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()}
    assert rows["z_original.mp4"]["decision"] == "keep", rows["z_original.mp4"]["reasons"]
    assert rows["a_trim.mp4"]["duplicate_of"] == "z_original.mp4"
    assert rows["b_crf45.mp4"]["duplicate_of"] == "z_original.mp4"


def test_a_clip_fading_in_from_black_is_not_black_under_keyframes_or_scenes() -> None:
    """keyframes and scenes always took the first frame; with one key frame that black frame
    was the whole sample, under scenes the first shot's, and a clip that fades in was
    dropped as black_video while uniform:8 kept it. keyframes now also reads frames at a
    third and two thirds of a clip with fewer than three key frames, and scenes lets a shot
    that opens black stand for its first frame with content."""
    import io

    import av

    fade = [Image.new("RGB", (64, 64), (k * 12, k * 12, k * 12)) for k in range(8)]
    frames = fade + _moving(40, color=(250, 0, 0), ground=(90, 160, 220))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream: Any = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"g": "1000", "preset": "veryfast"}  # one key frame: the first
        for im in frames:
            for packet in stream.encode(av.VideoFrame.from_image(im)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for policy in ("keyframes", "scenes", "uniform:8"):
        v = decode_video(buf.getvalue(), SamplingPolicy.parse(policy))
        stats = frame_stats(v.frames)
        assert v.error is None and len(v.frames) >= 2, (policy, v.times)
        assert stats["black_share"] < 0.5, (policy, v.times, stats)
