"""``clipaudit judge``: ask a native multimodal model about a run's borderline samples.

Selection (default): samples whose alignment lies within the pack's ``judge.alignment_margin``
of its cut get the ``faithful`` rubric, ranked by closeness to the cut; samples whose
visible-watermark score lies in ``judge.watermark_band`` get ``watermark``; then samples a
review route (action ``flag``) queued get ``route:NAME``, a yes/no question on what the
route is about (its verdict is recorded and reported, decide does not act on it). ``--select EXPR``
(the ``--where`` language over the decision table) replaces that with one rubric for every
selected sample. ``--budget`` caps the requests, closest first. Each sample's image is read
from the run's dataset, downscaled and sent on its own: the model never sees another sample.
A video or an animated image is sent as one sheet of up to four of the frames the run sampled
(judge/pictures.py), and the question says so.

Outputs in ``RUN/judge/``: ``answers.jsonl`` (every request's raw answer, verdict, tokens,
attempts; the resumable cache), ``verdicts.parquet`` (one row per sample and rubric asked
about, answered or not, with its status and problem; decide applies the ok verdicts),
``judge.json`` (settings without the key, counts, failures by problem, tokens, cost).
``--budget`` counts HTTP requests, retries included (client.RequestBudget).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.curate.rundir import RunDir
from clipaudit.errors import ClipauditError
from clipaudit.judge.answers import Answer, AnswerLog, answer_key, parse_answer
from clipaudit.judge.bounded import Interrupt
from clipaudit.judge.client import (
    Reply,
    RequestBudget,
    Settings,
    ask,
    image_data_url,
    jpeg_data_url,
    make_client,
    messages,
)
from clipaudit.rules.schema import Pack, load_pack
from clipaudit.rules.sections.judge import Rubric

JUDGE_DIR = "judge"
VERDICTS = "verdicts.parquet"
NO_PICTURE = "no picture (the sample did not decode)"


@dataclass(frozen=True)
class Job:
    id: str
    rubric: str
    priority: float  # lower is asked first


def clean_endpoint(url: str) -> str:
    """The endpoint without user, password, query or fragment: what the run may record."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClipauditError(
            f"--endpoint {url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8000/v1."
        )
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def select(run: RunDir, pack: Pack, select_expr: str | None, rubric: str | None) -> list[Job]:
    """The samples to ask about, most borderline first (see the module docstring)."""
    dec = pq.read_table(run.path / "decisions.parquet")
    ids = dec.column("id").to_pylist()
    if select_expr is not None:
        from clipaudit.search.where import parse_where

        name = rubric or "faithful"
        mask = parse_where(select_expr, dec.column_names).mask(dec)
        return [Job(ids[i], name, float(k)) for k, i in enumerate(np.flatnonzero(mask).tolist())]
    jobs: list[Job] = []
    stats = json.loads((run.path / "stats.json").read_text())
    cut = (stats.get("thresholds") or {}).get("alignment_min")
    j = pack.judge
    if (rubric in (None, "faithful")) and cut is not None and "alignment" in dec.column_names:
        al = np.array([np.nan if v is None else v for v in dec.column("alignment").to_pylist()])
        near = np.flatnonzero(np.abs(al - cut) <= j.alignment_margin)
        jobs += [Job(ids[i], "faithful", float(abs(al[i] - cut))) for i in near.tolist()]
    if rubric in (None, "watermark") and "visible_watermark_score" in dec.column_names:
        lo, hi = j.watermark_band
        ws = np.array(
            [np.nan if v is None else v for v in dec.column("visible_watermark_score").to_pylist()]
        )
        band = np.flatnonzero((ws >= lo) & (ws < hi))
        mid = (lo + hi) / 2
        jobs += [
            Job(ids[i], "watermark", float(abs(ws[i] - mid) / max(hi - lo, 1e-9)))
            for i in band.tolist()
        ]
    if rubric is None and "route" in dec.column_names:
        # Samples a review route queued: asked whether the image shows what the route is
        # about, after the borderline ones (priority 1).
        review = {n for n, r in pack.routes.items() if r.action == "flag"}
        for i, name in enumerate(dec.column("route").to_pylist()):
            if name in review:
                jobs.append(Job(ids[i], f"route:{name}", 1.0))
    return sorted(jobs, key=lambda x: (x.priority, x.id, x.rubric))


def why_none(run: RunDir, pack: Pack) -> str:
    """Why the default selection found no sample (a bare "selected 0" left the user to
    guess): what each borderline rule lacked in this run."""
    cols = pq.read_schema(run.path / "decisions.parquet").names
    thresholds = json.loads((run.path / "stats.json").read_text()).get("thresholds") or {}
    parts = []
    if "alignment" not in cols:
        parts.append("the run has no alignment scores")
    elif thresholds.get("alignment_min") is None:
        skipped = thresholds.get("alignment_skipped")
        parts.append(f"no alignment cut ({skipped})" if skipped else "no alignment cut")
    else:
        parts.append(f"no alignment within {pack.judge.alignment_margin} of the cut")
    if "visible_watermark_score" not in cols:
        parts.append("no visible-watermark scores")
    else:
        lo, hi = pack.judge.watermark_band
        parts.append(f"no visible-watermark score in [{lo}, {hi})")
    if not any(r.action == "flag" for r in pack.routes.values()):
        parts.append("no review route")
    return "nothing borderline: " + "; ".join(parts) + "; choose samples with --select EXPR."


def rubric_for(pack: Pack, name: str) -> Rubric | None:
    """A pack rubric, or for ``route:NAME`` a yes/no question on what the route is about."""
    if name.startswith("route:"):
        route = pack.routes.get(name[len("route:") :])
        if route is None:
            return None
        about = route.description or "; ".join(route.phrases) or route.where or name
        return Rubric(
            question=f"Does this image show the following: {about}? Answer yes or no.",
            about="other",
        )
    return pack.judge.rubric(name)


def _images(
    run: RunDir, ids: set[str], spill: Path, max_side: int = 512
) -> dict[str, tuple[Path | None, str | None, str]]:
    """id → (the JPEG to send, as a file in ``spill``, or None where nothing decoded;
    caption; what to tell the model about the picture before the question: "" for a still,
    the frame sheet's description for a clip or an animation), reading only the shards that
    hold them. Each picture is downscaled and written out as it is read, so memory holds
    paths and captions, not a budget's worth of decoded images (a --budget of 50,000
    full-size photos would not fit)."""
    from clipaudit.curate.rundir import open_run_dataset, recorded_source
    from clipaudit.data.decode import decode_sample
    from clipaudit.data.video import DEFAULT_POLICY, SamplingPolicy
    from clipaudit.judge.pictures import contact_sheet, frames_note, sheet_indices

    record = run.read_json("run.json")
    src = recorded_source(record) if record.get("dataset") else None
    if not src or not Path(src).exists():
        raise ClipauditError(
            f"the run's dataset {src!r} is not on this machine; the judge needs the images."
        )
    ds = open_run_dataset(record)
    # A clip's frames are sampled as the run sampled them (run.json records a policy other
    # than the default), so the sheet shows the frames the stages scored.
    recorded = (record.get("settings") or {}).get("video_sampling")
    policy = SamplingPolicy.parse(recorded) if recorded else DEFAULT_POLICY
    dec = pq.read_table(run.path / "decisions.parquet", columns=["id", "shard"]).to_pylist()
    shards = sorted({int(d["shard"]) for d in dec if d["id"] in ids})
    names = ds.shards()
    out: dict[str, tuple[Path | None, str | None, str]] = {}
    for k in shards:
        for s in ds.read_shard(names[k]):
            if s.id not in ids:
                continue
            d = decode_sample(s, policy)
            path, note = None, ""
            picture = d.image
            if picture is not None and d.frames and len(d.frames) > 1:
                shown = [d.frames[i] for i in sheet_indices(len(d.frames))]
                picture = contact_sheet(shown, max_side)
                note = frames_note(len(shown), "video" if s.media == "video" else "animation")
            if picture is not None:
                path = spill / f"{len(out)}.jpg"
                path.write_bytes(image_data_url(picture, max_side)[1])
            out[s.id] = (path, s.caption, note)
    return out


def run_judge(
    run_path: str | Path,
    endpoint: str,
    model: str,
    rules: str = "default",
    rubric: str | None = None,
    select_expr: str | None = None,
    budget: int = 200,
    concurrency: int = 4,
    api_key_env: str | None = "OPENAI_API_KEY",
    max_side: int = 512,
    deadline_s: float = 3600.0,
    read_timeout: float = 60.0,
    price_in: float | None = None,
    price_out: float | None = None,
) -> dict[str, Any]:
    """Ask, record, and write the verdicts decide reads; returns judge.json's content."""
    run = RunDir(run_path)
    if not (run.path / "decisions.parquet").is_file():
        raise ClipauditError(f"{str(run.path)!r} has no decisions; curate or decide it first.")
    if budget < 0 or concurrency < 1:
        raise ClipauditError("--budget must be 0 or more and --concurrency at least 1.")
    pack = load_pack(rules)
    if rubric is not None and pack.judge.rubric(rubric) is None:
        raise ClipauditError(
            f"Unknown rubric {rubric!r}; the pack has: {', '.join(pack.judge.names())}."
        )
    key: str = "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) take any key
    if api_key_env:
        if api_key_env in os.environ:
            key = os.environ[api_key_env]
        elif api_key_env != "OPENAI_API_KEY":
            raise ClipauditError(
                f"the environment variable {api_key_env!r} is not set; export it or drop "
                "--api-key-env."
            )
    ep = clean_endpoint(endpoint)
    settings = Settings(model=model, endpoint=endpoint, api_key=key, read_timeout=read_timeout)
    jobs = select(run, pack, select_expr, rubric)[:budget]
    folder = run.path / JUDGE_DIR
    log = AnswerLog(folder)
    # The pictures to send, downscaled, wait on disk (removed when the run ends).
    spill = tempfile.TemporaryDirectory(prefix=".images-", dir=folder)
    try:
        images = _images(run, {j.id for j in jobs}, Path(spill.name), max_side)
    except BaseException:
        spill.cleanup()
        log.close()
        raise
    deadline = time.monotonic() + deadline_s
    interrupt = Interrupt()
    client = make_client(settings, deadline, interrupt)
    requests = RequestBudget(budget)
    lock = threading.Lock()
    counts = {
        "asked": 0,  # sent to the server (at least one request)
        "not_sent": 0,  # selected, not cached, no request sent (budget, deadline, refusal)
        "cached": 0,
        "ok": 0,
        "unparseable": 0,
        "failed": 0,
        "no_image": 0,
    }
    failures: Counter[str] = Counter()  # problem → samples
    tokens = {"prompt": 0, "completion": 0}
    refused: list[str] = []  # the first reply refusing the key, model or endpoint

    def one(job: Job) -> None:
        r = rubric_for(pack, job.rubric)
        assert r is not None
        path, caption, note = images.get(job.id, (None, None, ""))
        question = note + r.question.replace("{caption}", json.dumps(caption or ""))
        if path is None:
            # Nothing to send, but the sample was selected: verdicts.parquet says so.
            k = answer_key(b"", question + "|" + "|".join(r.choices), model, ep)
            lost = Answer(k, job.id, job.rubric, model, ep, "failed", problem=NO_PICTURE)
            with lock:
                log.add(lost)
                counts["no_image"] += 1
            return
        jpeg = path.read_bytes()
        url = jpeg_data_url(jpeg)
        k = answer_key(jpeg, question + "|" + "|".join(r.choices), model, ep)
        if k in log.done:
            with lock:
                counts["cached"] += 1
            return
        msgs = messages(question, url, r.choices)
        if refused:  # every other request would be refused alike: not sent
            reply = Reply(None, f"not asked (the server refused: {refused[0]})", 0, 0.0)
        else:
            reply = ask(client, settings, msgs, r.choices, deadline, requests, interrupt)
            if reply.refused:
                with lock:
                    refused.append(str(reply.error))
        verdict: str | None = None
        problem: str | None = reply.error
        status = "failed"
        if reply.error is None:
            verdict, problem = parse_answer(reply.text, r.choices)
            status = "ok" if verdict is not None else "unparseable"
        ans = Answer(
            key=k,
            id=job.id,
            rubric=job.rubric,
            model=model,
            endpoint=ep,
            status=status,
            verdict=verdict,
            problem=problem,
            raw=reply.text,
            attempts=reply.attempts,
            seconds=round(reply.seconds, 3),
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            structured=reply.structured,
            order=list(r.choices),
        )
        with lock:
            log.add(ans)
            counts["asked" if reply.attempts else "not_sent"] += 1
            counts[status] += 1
            if status == "failed":
                failures[str(problem)] += 1
            tokens["prompt"] += reply.prompt_tokens
            tokens["completion"] += reply.completion_tokens

    t0 = time.monotonic()
    interrupted = False
    pool = ThreadPoolExecutor(concurrency)
    try:
        try:
            list(pool.map(one, jobs))
        except KeyboardInterrupt:
            # Nothing more is sent and the requests in flight end now; their samples are
            # recorded as failed ("interrupted"), asked again on the next run.
            interrupted = True
            interrupt.set()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        log.close()
        spill.cleanup()
    wall = time.monotonic() - t0
    _write_verdicts(folder, log)  # an interrupted run's answers too
    if interrupted:
        raise KeyboardInterrupt
    cost = None
    if price_in is not None or price_out is not None:
        cost = round(
            tokens["prompt"] / 1e6 * (price_in or 0)
            + tokens["completion"] / 1e6 * (price_out or 0),
            6,
        )
    info = {
        "endpoint": ep,
        "model": model,
        "rules": pack.name,
        "selection": select_expr or "borderline (pack judge section)",
        "rubric": rubric,
        "budget": budget,
        "concurrency": concurrency,
        "selected": len(jobs),
        "note": why_none(run, pack) if not jobs and select_expr is None else None,
        # The reply that refused the key, model or endpoint; the samples after it not sent.
        "refused": refused[0] if refused else None,
        **counts,
        # Selected samples with an answer (parsed or not; now or from an earlier run): none
        # of a non-empty selection makes the command exit 1.
        "answered": counts["ok"] + counts["unparseable"] + counts["cached"],
        "failures": dict(sorted(failures.items(), key=lambda x: (-x[1], x[0]))),
        "requests": requests.sent,
        "tokens": tokens,
        "cost": cost,
        "price_per_million_tokens": {"input": price_in, "output": price_out},
        "wall_s": round(wall, 3),
        "requests_per_s": round(counts["asked"] / wall, 2) if wall > 0 else None,
    }
    (folder / "judge.json").write_text(json.dumps(info, indent=2))
    return info


def _write_verdicts(folder: Path, log: AnswerLog) -> None:
    """One row per (sample, rubric) ever asked about: the latest answer (ok or unparseable),
    else the latest failure, so a sample that got no answer is listed rather than missing.
    Only ok rows carry a verdict, and decide (verdicts.load_verdicts) reads only those."""
    latest: dict[tuple[str, str], dict[str, Any]] = dict(log.failed)
    for rec in log.done.values():
        latest[(str(rec["id"]), str(rec["rubric"]))] = rec
    rows = sorted(latest.values(), key=lambda r: (str(r["id"]), str(r["rubric"])))
    table = pa.table(
        {
            "id": pa.array([str(r["id"]) for r in rows], pa.string()),
            "rubric": pa.array([str(r["rubric"]) for r in rows], pa.string()),
            "verdict": pa.array([r.get("verdict") for r in rows], pa.string()),
            "status": pa.array([str(r["status"]) for r in rows], pa.string()),
            "problem": pa.array([r.get("problem") for r in rows], pa.string()),
            "model": pa.array([str(r["model"]) for r in rows], pa.string()),
        }
    )
    pq.write_table(table, folder / VERDICTS)
