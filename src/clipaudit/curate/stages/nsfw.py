"""NSFW signals: nudenet's per-class scores, CLIP policy phrases and caption word lists.

Columns (JSON strings, so shards with different hits share one type):

* ``nsfw_detector``  class → max score, ``{}`` when nothing was found; null when not run;
* ``nsfw_phrases``   phrase → cosine for every pack phrase scored (a video: at its worst
  sampled frame); null without an image;
* ``nsfw_words``     the listed caption words found (normalised), with ``nsfw_words_fp``
  the word lists' fingerprint;
* ``nsfw_cascade``   ``pass`` (cheap signals reached a bar: detector ran), ``audit`` (below
  every bar, run anyway as part of the seeded audit sample) or ``skip``; null without cascade.

Per-phrase scores are stored, so re-deciding with fewer phrases or other thresholds works;
a pack phrase that was never scored, or other word lists, are refused with one sentence.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clipaudit.curate.signal_shards import floats
from clipaudit.curate.stages import FRAME_EMB, Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.safety.cascade import audit_pick
from clipaudit.safety.nudity import Detector, shared_detector
from clipaudit.safety.phrases import image_embeddings, phrase_scores
from clipaudit.safety.words import WordMatcher, fingerprint

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack
    from clipaudit.rules.sections.safety import NsfwRules, Route

ROUTE_CODE = {"drop": "nsfw", "review": "nsfw_review"}
DETECTOR_THREADS = 2  # cascade mode runs the detector in process(): a small pool of its own


def words_fingerprint(rules: NsfwRules) -> str:
    return fingerprint([sorted(WordMatcher(w.words).words) for w in rules.caption_words])


def _detect(detector: Detector, decoded: Decoded) -> str | None:
    if decoded.image is None:
        return None
    try:
        if not decoded.frames:
            return json.dumps(detector.scores(decoded.image), sort_keys=True)
        # A video: every sampled frame, each class at its worst frame.
        worst: dict[str, float] = {}
        for frame in decoded.frames:
            for k, v in detector.scores(frame).items():
                worst[k] = max(worst.get(k, v), v)
        return json.dumps(worst, sort_keys=True)
    except (ValueError, RuntimeError, MemoryError, OSError):
        return None  # odd pixels the detector cannot take: not scored, never a crash


@register_stage("nsfw")
class NsfwStage(Stage):
    columns = (
        "nsfw_detector",
        "nsfw_phrases",
        "nsfw_words",
        "nsfw_words_fp",
        "nsfw_cascade",
        "nsfw_frames",
    )
    needs_model = True

    def __init__(self, detector: Detector | None = None) -> None:
        self.detector = detector
        self.rules: NsfwRules | None = None
        self.clip: Any = None
        self.text_emb = np.zeros((0, 0), np.float32)
        self.matcher = WordMatcher([])
        self.words_fp = ""
        # What the detector cost in this process (seconds, calls): not written to the run,
        # whose files must not depend on machine speed.
        self.detector_seconds = 0.0
        self.detector_calls = 0
        self._lock = threading.Lock()

    def setup(self, ctx: StageContext) -> None:
        from clipaudit.rules.schema import load_pack

        self.rules = load_pack(str(ctx.options.get("rules") or "default")).nsfw
        if self.rules.cascade.enabled and ctx.options.get("model_fits") is False:
            # Phrase bars from a model that does not know the data fire at chance: gating
            # the detector on them would skip it on images a fitting model would send on.
            self.rules = self.rules.model_copy(
                update={"cascade": self.rules.cascade.model_copy(update={"enabled": False})}
            )
        if self.detector is None:
            self.detector = shared_detector()
        if self.rules.phrases:
            self.clip = ctx.clip()
            self.text_emb = self.clip.encode_texts([p.text for p in self.rules.phrases])
        self.matcher = WordMatcher([w for wl in self.rules.caption_words for w in wl.words])
        self.words_fp = words_fingerprint(self.rules)

    def _timed_detect(self, decoded: Decoded) -> str | None:
        assert self.detector is not None, "setup() was not called"
        t0 = time.perf_counter()
        out = _detect(self.detector, decoded)
        with self._lock:
            self.detector_seconds += time.perf_counter() - t0
            self.detector_calls += decoded.image is not None
        return out

    def prepare(self, sample: Sample, decoded: Decoded) -> Any:
        """Caption words; and, without the cascade, the detector (ONNX runs are thread-safe)."""
        assert self.rules is not None, "setup() was not called"
        words = self.matcher.find(sample.caption)
        det = None if self.rules.cascade.enabled else self._timed_detect(decoded)
        return words, det

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        assert self.rules is not None, "setup() was not called"
        r = self.rules
        n = len(batch.samples)
        prepared = self.prepared_for(batch)
        words: list[list[str]] = [p[0] for p in prepared]
        det: list[str | None] = [p[1] for p in prepared]
        has_image = [d.image is not None for d in batch.decoded]
        scores = np.zeros((n, len(r.phrases)), np.float32)
        if r.phrases and any(has_image):
            emb, _ = image_embeddings(batch, self.clip)
            scores = phrase_scores(emb, self.text_emb)
            # A video: each phrase at its worst frame, as the detector's classes (one unsafe
            # frame must not be averaged away). Frames are the alignment stage's; without it
            # a video is scored on its middle frame.
            for i, fe in enumerate(batch.prepared.get(FRAME_EMB) or []):
                if fe is not None:
                    scores[i] = phrase_scores(fe, self.text_emb).max(axis=0)
        cascade: list[str | None] = [None] * n
        if r.cascade.enabled:
            cascade, det = self._cascade(batch, words, scores, has_image)
        phrases_col: list[str | None] = [
            json.dumps(
                {p.text: round(float(scores[i, k]), 4) for k, p in enumerate(r.phrases)},
                sort_keys=True,
            )
            if has_image[i]
            else None
            for i in range(n)
        ]
        # Frames the detector read for a clip or an animation (its scores are each class's
        # worst frame, judged against the pack's video_classes); None for one picture.
        frames = [
            len(d.frames) if det[i] is not None and d.frames else None
            for i, d in enumerate(batch.decoded)
        ]
        return {
            "nsfw_detector": det,
            "nsfw_phrases": phrases_col,
            "nsfw_words": [json.dumps(w) for w in words],
            "nsfw_words_fp": [self.words_fp] * n,
            "nsfw_cascade": cascade,
            "nsfw_frames": frames,
        }

    def _cascade(
        self, batch: Batch, words: list[list[str]], scores: np.ndarray, has_image: list[bool]
    ) -> tuple[list[str | None], list[str | None]]:
        assert self.rules is not None
        r = self.rules
        gate_words = [set(WordMatcher(w.words).words) for w in r.caption_words if w.gate]
        state: list[str | None] = [None] * len(batch.samples)
        for i, s in enumerate(batch.samples):
            if not has_image[i]:
                continue
            hit = any(set(words[i]) & g for g in gate_words) or any(
                p.bar is not None and scores[i, k] >= p.bar for k, p in enumerate(r.phrases)
            )
            if hit:
                state[i] = "pass"
            elif audit_pick(s.id, r.cascade.audit_seed, r.cascade.audit_rate):
                state[i] = "audit"
            else:
                state[i] = "skip"
        run = [i for i, st in enumerate(state) if st in ("pass", "audit")]
        det: list[str | None] = [None] * len(batch.samples)
        with ThreadPoolExecutor(DETECTOR_THREADS) as pool:
            found = pool.map(lambda j: self._timed_detect(batch.decoded[j]), run)
            for i, out in zip(run, found, strict=True):
                det[i] = out
        return state, det

    def provenance(self) -> dict[str, Any]:
        if self.rules is None:
            return {}
        from importlib.metadata import version

        return {
            "detector": "nudenet 320n.onnx (in the nudenet wheel), one intra-op thread",
            "nudenet": version("nudenet"),
            "onnxruntime": version("onnxruntime"),
            "phrases": [p.text for p in self.rules.phrases],
            "phrases_fingerprint": fingerprint([p.text for p in self.rules.phrases]),
            "words_fingerprint": self.words_fp,
            "cascade": self.rules.cascade.model_dump(),
            "clip": self.clip.provenance.to_dict() if self.clip is not None else None,
        }


# ---- decide ----------------------------------------------------------------------------


@dataclass
class NsfwHits:
    """Per row, which signals fire under a pack (the rule and the stats share it)."""

    detector: list[list[str]] = field(default_factory=list)  # counted classes found
    # classes in the review band only (at a review threshold, below the drop threshold)
    detector_review: list[list[str]] = field(default_factory=list)
    phrases: list[list[str]] = field(default_factory=list)  # phrases at or above min_score
    words: list[list[str]] = field(default_factory=list)  # listed words found


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else None


def nsfw_hits(sig: dict[str, np.ndarray], pack: Pack) -> NsfwHits:
    """Evaluate the stored NSFW columns under ``pack``; refuses what was never scored."""
    r = pack.nsfw
    det, phr = column(sig, "nsfw_detector"), column(sig, "nsfw_phrases")
    wrd, wfp = column(sig, "nsfw_words"), column(sig, "nsfw_words_fp")
    want_fp = words_fingerprint(r)
    stale = {str(f) for f in wfp if f is not None and f != want_fp}
    if stale:
        raise ClipauditError(
            f"Pack {pack.name!r} lists other NSFW caption words than this run matched; "
            "curate again with this pack's nsfw.caption_words, or use the lists it was scored with."
        )
    counted = {c: t for c, t in r.classes.items() if t is not None}
    counted_frames = {c: t for c, t in r.video_classes.items() if t is not None}
    review = {c: t for c, t in r.review_classes.items() if t is not None}
    # Runs scored before the column existed hold no clips' frame counts: photo thresholds.
    frames = floats(column(sig, "nsfw_frames"))
    hits = NsfwHits()
    for i in range(len(sig["id"])):
        d = _loads(det[i]) or {}
        cut = counted_frames if frames[i] > 1 else counted  # NaN (one picture) is not
        found = sorted(c for c, t in cut.items() if d.get(c, 0.0) >= t)
        hits.detector.append(found)
        hits.detector_review.append(
            sorted(c for c, t in review.items() if c not in found and d.get(c, 0.0) >= t)
        )
        scored = _loads(phr[i])
        row: list[str] = []
        if scored is not None:
            for p in r.phrases:
                if p.text not in scored:
                    raise ClipauditError(
                        f"Pack {pack.name!r} has the NSFW phrase {p.text!r}, which this run "
                        "never scored; curate again with this pack or remove the phrase."
                    )
                if scored[p.text] >= p.min_score:
                    row.append(p.text)
        hits.phrases.append(row)
        hits.words.append(_loads(wrd[i]) or [])
    return hits


def _route_lists(pack: Pack) -> list[tuple[set[str], Route]]:
    return [(set(WordMatcher(w.words).words), w.route) for w in pack.nsfw.caption_words]


@register_rule("nsfw")
def nsfw_rule(sig: dict[str, np.ndarray], pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    out: list[list[str]] = [[] for _ in range(n)]
    if "nsfw_detector" not in sig:
        return out
    r = pack.nsfw
    hits = nsfw_hits(sig, pack)
    route = {p.text: p.route for p in r.phrases}
    lists = _route_lists(pack)
    for i in range(n):
        routes: set[str] = set()
        if hits.detector[i]:
            routes.add(r.detector_route)
        elif hits.detector_review[i]:
            routes.add("review")
        routes |= {route[t] for t in hits.phrases[i]}
        found = set(hits.words[i])
        routes |= {rt for words, rt in lists if words & found}
        out[i] = [ROUTE_CODE[rt] for rt in ("drop", "review") if rt in routes]
    return out


def _cascade_stats(
    cascade: np.ndarray, hits: NsfwHits, ids: np.ndarray, pack: Pack
) -> dict[str, Any] | None:
    states = [str(s) for s in cascade if s is not None]
    if not states:
        return None
    passed, audited, skipped = (states.count(s) for s in ("pass", "audit", "skip"))
    misses = [str(ids[i]) for i, s in enumerate(cascade) if s == "audit" and hits.detector[i]]
    rate = len(misses) / audited if audited else None
    ms = pack.nsfw.cascade.detector_ms
    return {
        "images": len(states),
        "passed_bar": passed,
        "audited": audited,
        "skipped": skipped,
        "detector_runs": passed + audited,
        "share_skipped": round(skipped / len(states), 4),
        "detector_ms_per_image": ms,
        "detector_seconds_saved_est": round(skipped * ms / 1000, 3),
        "audit_misses": len(misses),
        "audit_miss_ids": sorted(misses)[:20],
        "audit_miss_rate": None if rate is None else round(rate, 4),
        "projected_misses_in_skipped": None if rate is None else round(rate * skipped, 1),
    }


@register_stats("nsfw")
def nsfw_stats(sig: dict[str, np.ndarray], pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if "nsfw_detector" not in sig:
        return {"computed": False}
    r = pack.nsfw
    hits = nsfw_hits(sig, pack)
    ids = sig["id"]
    det = column(sig, "nsfw_detector")
    n_img = sum(v is not None for v in column(sig, "nsfw_phrases")) if r.phrases else None
    by_class: dict[str, int] = {}
    for h in hits.detector:
        for c in h:
            by_class[c] = by_class.get(c, 0) + 1
    review_by_class: dict[str, int] = {}
    for h, drop in zip(hits.detector_review, hits.detector, strict=True):
        for c in h if not drop else []:
            review_by_class[c] = review_by_class.get(c, 0) + 1
    by_phrase = {
        p.text: {
            "route": p.route,
            "min_score": p.min_score,
            "count": sum(p.text in h for h in hits.phrases),
            "examples": [str(ids[i]) for i, h in enumerate(hits.phrases) if p.text in h][:10],
        }
        for p in r.phrases
    }
    by_word: dict[str, int] = {}
    for h in hits.words:
        for w in h:
            by_word[w] = by_word.get(w, 0) + 1
    return {
        "computed": True,
        "detector_runs": sum(v is not None for v in det),
        "phrase_scored": n_img,
        "by_signal": {
            "detector": sum(bool(h) for h in hits.detector),
            "detector_review": sum(
                bool(h) and not d for h, d in zip(hits.detector_review, hits.detector, strict=True)
            ),
            "phrases": sum(bool(h) for h in hits.phrases),
            "words": sum(bool(h) for h in hits.words),
        },
        "detector_by_class": dict(sorted(by_class.items())),
        "detector_review_by_class": dict(sorted(review_by_class.items())),
        "detector_thresholds": {"drop": r.classes, "review": r.review_classes},
        "by_phrase": by_phrase,
        "by_word": dict(sorted(by_word.items())),
        "codes": {c: sum(c in rr for rr in reasons) for c in ("nsfw", "nsfw_review")},
        "cascade": _cascade_stats(column(sig, "nsfw_cascade"), hits, ids, pack),
    }
