from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipaudit.curate.stages.nsfw import NsfwStage, nsfw_rule, nsfw_stats
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.rules.schema import load_pack
from clipaudit.safety.cascade import audit_pick
from clipaudit.safety.nudity import EXPOSED_CLASSES, NudeNet
from clipaudit.safety.words import WordMatcher
from tests.test_nsfw_support import (
    StubClip,
    StubDetector,
    batch_of,
    ctx_for,
    png_bytes,
    safe_photo_paths,
    signals,
    solid,
)

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)


def _score(stage: NsfwStage, samples: list[Sample]) -> dict[str, np.ndarray]:
    """Run a set-up stage on samples and return the signal columns decide would read."""
    cols = stage.process(batch_of(samples))
    return signals([s.id for s in samples], cols)


# ---- nudenet on real safe photographs -------------------------------------------------


def test_nudenet_flags_no_real_safe_photograph(tmp_path: Path) -> None:
    photos = safe_photo_paths()
    assert {"sklearn:china.jpg", "sklearn:flower.jpg"} <= set(photos)
    det = NudeNet()
    samples = []
    for name, path in sorted(photos.items()):
        im = Image.open(path).convert("RGB")
        # The array route we use equals nudenet's own path route (colour order included).
        by_path: dict[str, float] = {}
        for d in det._det.detect(str(path)):
            by_path[d["class"]] = max(by_path.get(d["class"], 0.0), round(d["score"], 4))
        assert det.scores(im) == by_path
        w, h = im.size
        views = {"whole": im, "centre": im.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))}
        for view, v in views.items():
            samples.append(Sample(f"{name}:{view}", png_bytes(v), "a photograph"))
    stage = NsfwStage()
    stage.setup(ctx_for(tmp_path, "name: t\nextends: default\n"))
    sig = _score(stage, samples)
    ms = stage.detector_seconds * 1000 / stage.detector_calls
    for sid, raw in zip(sig["id"], sig["nsfw_detector"], strict=True):
        found = json.loads(raw)
        top = max((found.get(c, 0.0) for c in EXPOSED_CLASSES), default=0.0)
        print(f"{sid}: max exposed-class score {top:.3f}; all classes {found}")
        assert top < 0.5
    print(f"nudenet: {ms:.1f} ms per image (one intra-op thread)")
    assert nsfw_rule(sig, load_pack("default")) == [[] for _ in samples]
    assert len(samples) >= 4


# ---- the rule, with injected detector outputs -----------------------------------------


def _det_signals(outputs: list[dict[str, float] | None]) -> dict[str, np.ndarray]:
    n = len(outputs)
    return signals(
        [f"s{i}" for i in range(n)],
        {
            "nsfw_detector": [None if o is None else json.dumps(o) for o in outputs],
            "nsfw_phrases": [json.dumps({})] * n,
            "nsfw_words": ["[]"] * n,
            "nsfw_words_fp": [None] * n,
            "nsfw_cascade": [None] * n,
        },
    )


def test_rule_counts_only_the_packs_classes_at_their_thresholds(tmp_path: Path) -> None:
    outs: list[dict[str, float] | None] = [
        {"FEMALE_BREAST_EXPOSED": 0.81},
        {"BUTTOCKS_EXPOSED": 0.49},  # under 0.5
        {"FACE_FEMALE": 0.95, "FEMALE_BREAST_COVERED": 0.9},  # not explicit
        {"ANUS_EXPOSED": 0.5},  # at the threshold counts
        None,  # not run
        {},
    ]
    sig = _det_signals(outs)
    # The default pack drops from the thresholds calibrated on benign photos (0.8 for
    # breasts, 0.5 for the class no benign photo ever scored) and sends nudenet's own 0.5
    # band below them to review.
    default = load_pack("default")
    assert default.nsfw.classes["FEMALE_BREAST_EXPOSED"] == 0.8
    assert default.nsfw.review_classes["FEMALE_BREAST_EXPOSED"] == 0.5
    assert nsfw_rule(sig, default) == [["nsfw"], [], [], ["nsfw"], [], []]
    p = tmp_path / "p.yaml"
    p.write_text(
        "name: p\nextends: default\nnsfw:\n  detector_route: review\n  classes:\n"
        "    FEMALE_BREAST_EXPOSED: null\n    BUTTOCKS_EXPOSED: 0.4\n    FACE_FEMALE: 0.9\n"
        "  review_classes:\n    FEMALE_BREAST_EXPOSED: null\n"  # the two tiers are apart
    )
    pack = load_pack(str(p))
    assert pack.nsfw.classes["ANUS_EXPOSED"] == 0.5  # inherited from default
    got = nsfw_rule(sig, pack)
    assert got == [[], ["nsfw_review"], ["nsfw_review"], ["nsfw_review"], [], []]
    st = nsfw_stats(sig, pack, got)
    assert st["detector_by_class"] == {"ANUS_EXPOSED": 1, "BUTTOCKS_EXPOSED": 1, "FACE_FEMALE": 1}
    assert st["detector_runs"] == 5 and st["codes"] == {"nsfw": 0, "nsfw_review": 3}


def test_pack_refuses_unknown_class_and_ungated_cascade(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: p\nnsfw:\n  classes:\n    BREASTS: 0.5\n")
    with pytest.raises(ClipauditError, match="unknown nudenet class 'BREASTS'"):
        load_pack(str(p))
    p.write_text("name: p\nnsfw:\n  caption_words: []\n  cascade:\n    enabled: true\n")
    with pytest.raises(ClipauditError, match="no phrase has a bar"):
        load_pack(str(p))


# ---- caption words --------------------------------------------------------------------


def test_word_lists_match_whole_words_in_any_case_and_script() -> None:
    m = WordMatcher(["nude", "NSFW", "explicit sex", "порно", "xxx", "straße"])
    assert m.find("A NUDE study, charcoal") == ["nude"]
    assert m.find("Nudelsuppe with nudes") == []  # no partial words
    assert m.find("ＮＳＦＷ content") == ["nsfw"]  # full-width letters (NFKC)
    assert m.find("explicit \n  sex scene") == ["explicit sex"]
    assert m.find("Порно фото") == ["порно"]
    assert m.find("порнография") == []
    assert m.find("size XXXL shirt") == []
    assert m.find("xxx-rated") == ["xxx"]  # punctuation is a boundary
    assert m.find("STRASSE") == ["strasse"]  # full case folding (ß → ss)
    # Invisible characters inside a word: zero-width space, soft hyphen, word joiner, ZWJ.
    assert m.find("n\u200bude beach") == ["nude"]
    assert m.find("nu\u00adde, ns\u2060fw, x\u200dxx") == ["nsfw", "nude", "xxx"]
    # Scripts written without spaces: a Chinese word inside a Chinese sentence, a katakana
    # word only as a whole katakana run ("ヌードル" is noodle, not "ヌード").
    cjk = WordMatcher(["裸体", "ヌード"])
    assert cjk.find("一张裸体照片") == ["裸体"]
    assert cjk.find("ヌード写真") == ["ヌード"]
    assert cjk.find("私のヌードル") == []
    assert m.find(None) == [] and WordMatcher([]).find("nude") == []


def test_word_lists_route_and_refuse_other_lists(tmp_path: Path) -> None:
    yaml = (
        "name: w\nextends: default\nnsfw:\n  caption_words:\n"
        "    - words: [porn, xxx]\n      route: drop\n    - words: [nude]\n      route: review\n"
    )
    stage = NsfwStage(detector=StubDetector({}))
    stage.setup(ctx_for(tmp_path, yaml))
    caps = ["XXX movie night", "a Nude portrait", "nothing here", None, "porn and nude"]
    samples = [Sample(f"s{i}", solid(GREEN), c) for i, c in enumerate(caps)]
    sig = _score(stage, samples)
    pack = load_pack(str(tmp_path / "pack.yaml"))
    got = nsfw_rule(sig, pack)
    assert got == [["nsfw"], ["nsfw_review"], [], [], ["nsfw", "nsfw_review"]]
    st = nsfw_stats(sig, pack, got)
    assert st["by_word"] == {"nude": 2, "porn": 1, "xxx": 1}
    assert st["by_signal"] == {"detector": 0, "detector_review": 0, "phrases": 0, "words": 3}
    with pytest.raises(ClipauditError, match="other NSFW caption words"):
        nsfw_rule(sig, load_pack("default"))


# ---- policy phrases -------------------------------------------------------------------

PHRASES = (
    "name: ph\nextends: default\nnsfw:\n  phrases:\n"
    "    - {text: red thing, min_score: 0.9, route: drop}\n"
    "    - {text: blue thing, min_score: 0.9, route: review}\n"
)


def test_phrases_route_and_record_which_matched(tmp_path: Path) -> None:
    clip = StubClip()
    stage = NsfwStage(detector=StubDetector({}))
    stage.setup(ctx_for(tmp_path, PHRASES, clip))
    cols = [RED, BLUE, GREEN, (150, 0, 150)]  # purple: 0.707 to both, under 0.9
    samples = [Sample(f"s{i}", solid(c), "a thing") for i, c in enumerate(cols)]
    samples.append(Sample("broken", b"not an image", "a thing"))
    sig = _score(stage, samples)
    assert json.loads(sig["nsfw_phrases"][0]) == {"blue thing": 0.0, "red thing": 1.0}
    assert sig["nsfw_phrases"][4] is None and sig["nsfw_detector"][4] is None
    pack = load_pack(str(tmp_path / "pack.yaml"))
    got = nsfw_rule(sig, pack)
    assert got == [["nsfw"], ["nsfw_review"], [], [], []]
    st = nsfw_stats(sig, pack, got)
    assert st["by_phrase"]["red thing"] == {
        "route": "drop",
        "min_score": 0.9,
        "count": 1,
        "examples": ["s0"],
    }
    assert st["by_phrase"]["blue thing"]["examples"] == ["s1"]
    # Re-deciding with a subset of the scored phrases and another threshold works...
    sub = tmp_path / "sub.yaml"
    sub.write_text(
        "name: sub\nextends: default\nnsfw:\n  phrases:\n"
        "    - {text: blue thing, min_score: 0.5, route: review}\n"
    )
    assert nsfw_rule(sig, load_pack(str(sub))) == [[], ["nsfw_review"], [], ["nsfw_review"], []]
    # ...a phrase never scored is refused.
    sub.write_text(
        "name: sub\nextends: default\nnsfw:\n  phrases:\n"
        "    - {text: green thing, min_score: 0.5}\n"
    )
    with pytest.raises(ClipauditError, match="'green thing', which this run never scored"):
        nsfw_rule(sig, load_pack(str(sub)))


def test_phrases_reuse_alignment_embeddings(tmp_path: Path) -> None:
    clip = StubClip()
    stage = NsfwStage(detector=StubDetector({}))
    stage.setup(ctx_for(tmp_path, PHRASES, clip))
    batch = batch_of([Sample("a", solid(GREEN), "x"), Sample("b", solid(GREEN), "x")])
    batch.arrays["img_emb"] = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    out = stage.process(batch)
    assert clip.image_calls == 0
    assert json.loads(out["nsfw_phrases"][0])["red thing"] == 1.0
    assert json.loads(out["nsfw_phrases"][1])["blue thing"] == 1.0


def test_world_clip_routes_doctors_to_review(tmp_path: Path) -> None:
    """The bundled CLIP knows world concepts only: route 'a doctor' as a routing test."""
    from clipaudit.world.scenes import objects_scene, person_scene, rng_for
    from clipaudit.world.vocab import OCCUPATIONS

    scenes = [person_scene(rng_for(3, "nsfw", i), occupation=OCCUPATIONS[i % 5]) for i in range(30)]
    scenes += [objects_scene(rng_for(3, "nsfw", 100 + i)) for i in range(10)]
    samples = [
        Sample(f"w{i}", png_bytes(sc.render(128)), sc.caption) for i, sc in enumerate(scenes)
    ]
    yaml = (
        "name: doc\nextends: default\nnsfw:\n  phrases:\n"
        "    - {text: a doctor, min_score: 0.65, route: review}\n"
    )
    stage = NsfwStage(detector=StubDetector({}))
    ctx = ctx_for(tmp_path, yaml)
    ctx.model_spec = "bundled:world-clip"
    stage.setup(ctx)
    sig = _score(stage, samples)
    pack = load_pack(str(tmp_path / "pack.yaml"))
    got = nsfw_rule(sig, pack)
    score = np.array([json.loads(v)["a doctor"] for v in sig["nsfw_phrases"]])
    routed = {i for i, r in enumerate(got) if r == ["nsfw_review"]}
    assert routed == set(np.nonzero(score >= 0.65)[0].tolist())
    doctors = {i for i, sc in enumerate(scenes) if sc.truth().get("occupation") == "doctor"}
    tp = len(routed & doctors)
    print(
        f"world-clip 'a doctor' >= 0.65: routed {len(routed)} of {len(scenes)}, doctors "
        f"{len(doctors)}, routed doctors {tp}"
    )
    assert len(doctors) == 6 and tp / len(routed) >= 0.8 and tp / len(doctors) >= 0.6
    st = nsfw_stats(sig, pack, got)
    assert st["by_phrase"]["a doctor"]["count"] == len(routed)


# ---- the cascade ----------------------------------------------------------------------

CASCADE = (
    "name: c\nextends: default\nnsfw:\n"
    "  phrases:\n    - {text: red thing, min_score: 0.99, route: review, bar: 0.8}\n"
    "  caption_words:\n    - {words: [nude], route: review}\n"
    "  cascade: {enabled: true, audit_rate: 0.3, audit_seed: 5, detector_ms: 40}\n"
)


def test_cascade_saves_detector_runs_and_audits_what_it_would_miss(tmp_path: Path) -> None:
    bad = {"FEMALE_GENITALIA_EXPOSED": 0.9}
    det = StubDetector({RED: bad, BLUE: bad})  # blue: explicit but no cheap signal fires
    stage = NsfwStage(detector=det)
    stage.setup(ctx_for(tmp_path, CASCADE, StubClip()))
    samples = [Sample("r0", solid(RED), "a thing"), Sample("g0", solid(GREEN), "a nude")]
    samples += [Sample(f"b{i}", solid(BLUE), "a thing") for i in range(40)]
    samples += [Sample(f"g{i}", solid(GREEN), "a thing") for i in range(1, 41)]
    samples.append(Sample("none", None, "a nude"))
    sig = _score(stage, samples)
    audit = {s.id for s in samples[2:-1] if audit_pick(s.id, 5, 0.3)}
    want = ["pass", "pass"] + ["audit" if s.id in audit else "skip" for s in samples[2:-1]]
    assert list(sig["nsfw_cascade"]) == [*want, None]
    assert det.calls == 2 + len(audit) == stage.detector_calls
    ran = [i for i, v in enumerate(sig["nsfw_detector"]) if v is not None]
    assert ran == [i for i, s in enumerate(want) if s != "skip"]
    pack = load_pack(str(tmp_path / "pack.yaml"))
    reasons = nsfw_rule(sig, pack)
    st = nsfw_stats(sig, pack, reasons)["cascade"]
    misses = sorted(i for i in audit if i.startswith("b"))
    skipped = len(samples) - 3 - len(audit)
    print(f"cascade: {len(audit)} audited, misses {misses}, skipped {skipped}")
    assert 0 < len(misses) < 40 and len(audit) > len(misses)  # both colours were audited
    assert st == {
        "images": len(samples) - 1,
        "passed_bar": 2,
        "audited": len(audit),
        "skipped": skipped,
        "detector_runs": 2 + len(audit),
        "share_skipped": round(skipped / (len(samples) - 1), 4),
        "detector_ms_per_image": 40.0,
        "detector_seconds_saved_est": round(skipped * 0.04, 3),
        "audit_misses": len(misses),
        "audit_miss_ids": misses,
        "audit_miss_rate": round(len(misses) / len(audit), 4),
        "projected_misses_in_skipped": round(len(misses) / len(audit) * skipped, 1),
    }
    # Red: detector and phrase; the audited explicit blue ones are still caught.
    assert reasons[0] == ["nsfw", "nsfw_review"] and reasons[1] == ["nsfw_review"]
    assert all(reasons[i] == ["nsfw"] for i, s in enumerate(samples) if s.id in misses)


def test_audit_pick_is_seeded_and_near_its_rate() -> None:
    ids = [f"{i:06d}" for i in range(5000)]
    a = [audit_pick(i, 0, 0.1) for i in ids]
    assert a == [audit_pick(i, 0, 0.1) for i in ids]
    assert a != [audit_pick(i, 1, 0.1) for i in ids]
    assert 400 < sum(a) < 600 and not any(audit_pick(i, 0, 0.0) for i in ids)


def test_runs_without_the_stage_get_no_codes_and_say_so() -> None:
    sig = signals(["a", "b"], {"alignment": [0.3, 0.4]})
    pack = load_pack("default")
    assert nsfw_rule(sig, pack) == [[], []]
    assert nsfw_stats(sig, pack, [[], []]) == {"computed": False}


def test_the_review_band_below_the_calibrated_drop_threshold(tmp_path: Path) -> None:
    """A benign-looking score (a loaf at 0.64 'male genitalia') is reviewed, not dropped;
    above the calibrated threshold it is dropped; review_classes: null turns the band off."""
    outs: list[dict[str, float] | None] = [
        {"MALE_GENITALIA_EXPOSED": 0.64},
        {"MALE_GENITALIA_EXPOSED": 0.83},
        {"MALE_GENITALIA_EXPOSED": 0.45},
    ]
    sig = _det_signals(outs)
    pack = load_pack("default")
    got = nsfw_rule(sig, pack)
    assert got == [["nsfw_review"], ["nsfw"], []]
    st = nsfw_stats(sig, pack, got)
    assert st["by_signal"]["detector"] == 1 and st["by_signal"]["detector_review"] == 1
    assert st["detector_review_by_class"] == {"MALE_GENITALIA_EXPOSED": 1}
    p = tmp_path / "p.yaml"
    p.write_text(
        "name: p\nextends: default\nnsfw:\n  review_classes:\n    MALE_GENITALIA_EXPOSED: null\n"
    )
    assert nsfw_rule(sig, load_pack(str(p))) == [[], ["nsfw"], []]


def test_shipped_thresholds_are_the_ones_the_real_photo_bench_chose() -> None:
    """The package's thresholds are the bench's record, not numbers typed in by hand."""
    from clipaudit.safety.nsfw_thresholds import calibrated_classes, calibration

    bench = json.loads(
        (Path(__file__).parents[1] / "bench" / "results" / "real_photos.json").read_text()
    )["nsfw"]
    assert calibrated_classes() == bench["thresholds_chosen"]
    views = bench["views"]
    assert views[0] == "orig" and len(views) == 3
    for v in views:
        key = "dropped_chosen_held_out" + ("" if v == "orig" else f"_{v}")
        assert calibration()["held_out_dropped"][v] == bench[key]["count"]
        # Each threshold clears every benign calibration photo, in every view, by the margin.
        for c, t in bench["thresholds_chosen"].items():
            assert t >= max(0.5, bench["calibration_max_score"][v][c] + 0.1 - 1e-9)
        assert (
            bench["dropped_chosen_calibration" + key.removeprefix("dropped_chosen_held_out")][
                "count"
            ]
            == 0
        )


def test_clips_and_animations_are_judged_by_the_clip_thresholds(tmp_path: Path) -> None:
    """A sample scored on several frames (each class at its worst) meets the pack's
    video_classes; one picture meets classes; a run without the frame column, classes."""
    from clipaudit.curate.stages import Batch
    from clipaudit.data.decode import decode_sample

    p = tmp_path / "p.yaml"
    p.write_text(
        "name: p\nextends: default\nnsfw:\n  classes:\n    FEMALE_BREAST_EXPOSED: 0.8\n"
        "  video_classes:\n    FEMALE_BREAST_EXPOSED: 0.95\n    ANUS_EXPOSED: null\n"
    )
    pack = load_pack(str(p))
    outs: list[dict[str, float] | None] = [
        {"FEMALE_BREAST_EXPOSED": 0.9},  # a photo: over 0.8, dropped
        {"FEMALE_BREAST_EXPOSED": 0.9},  # a clip: under 0.95, reviewed (0.5 band)
        {"FEMALE_BREAST_EXPOSED": 0.96},  # a clip over 0.95: dropped
        {"ANUS_EXPOSED": 0.7},  # a clip, a class that never drops clips: reviewed
    ]
    sig = _det_signals(outs)
    sig["nsfw_frames"] = np.array([None, 8, 8, 8], dtype=object)
    assert nsfw_rule(sig, pack) == [["nsfw"], ["nsfw_review"], ["nsfw"], ["nsfw_review"]]
    del sig["nsfw_frames"]  # a run scored before the column: photo thresholds for all
    assert nsfw_rule(sig, pack) == [["nsfw"], ["nsfw"], ["nsfw"], ["nsfw"]]
    # The stage records the frames it read: 8 for an animation, none for a photo.
    frames = [Image.new("RGB", (64, 64), (i * 12, 40, 40)) for i in range(20)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    samples = [Sample("gif", buf.getvalue()), Sample("png", solid(RED))]
    stage = NsfwStage(detector=StubDetector({}))
    stage.setup(ctx_for(tmp_path, "name: s\nextends: default\n"))
    cols = stage.process(Batch(samples, [decode_sample(s) for s in samples]))
    assert cols["nsfw_frames"] == [8, None]
    # Unknown classes are refused here as in classes.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nextends: default\nnsfw:\n  video_classes:\n    NOSE: 0.5\n")
    with pytest.raises(ClipauditError, match="unknown nudenet class 'NOSE'"):
        load_pack(str(bad))


def test_shipped_clip_thresholds_are_the_ones_the_clip_bench_chose() -> None:
    """The clip thresholds are the filmed-clip bench's record, each at least the photo's."""
    from clipaudit.safety.nsfw_thresholds import (
        calibrated_classes,
        calibrated_video_classes,
        calibration,
    )

    bench = json.loads(
        (Path(__file__).parents[1] / "bench" / "results" / "video_nsfw_benign.json").read_text()
    )
    chosen = bench["calibration"]["clip_thresholds"]
    assert calibrated_video_classes() == chosen
    assert calibration()["video_held_out_dropped"] == bench["with_clip_thresholds"]["clips_dropped"]
    photo = calibrated_classes()
    top = bench["calibration"]["highest_clip_scores_by_class"]
    for c, t in chosen.items():
        if t is None:  # the rule passed 1.0: no benign-proof threshold exists for clips
            assert top[c][0] + 0.1 > 1.0
        else:
            assert t >= max(photo[c] or 0.0, top[c][0] + 0.1 - 1e-9)
