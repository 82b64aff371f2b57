"""Scoring a dataset into a run folder: check and record the run, then hand the shards still
to score to an engine.

The run is resumable: each finished shard leaves a marker, and a run folder only resumes
onto the same data and settings (the fingerprint in ``run.json``), so a killed run ends with
the same bytes. Deciding is not done here (``pipeline.curate`` composes the two), which lets
a reference set be hashed for ``--against`` without a decision.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipaudit import __version__
from clipaudit.curate.config import CurateConfig
from clipaudit.curate.engines import Engine, EngineJob, get_engine
from clipaudit.curate.rundir import (
    RunDir,
    acquire_run_lock,
    other_shards,
    release_run_lock,
    resolved_source,
)
from clipaudit.curate.stages import StageContext, make_stages, plan_stages
from clipaudit.data.formats import Dataset, get_format, open_dataset, output_errors
from clipaudit.data.video import DEFAULT_POLICY, SamplingPolicy
from clipaudit.errors import ClipauditError
from clipaudit.models.provenance import library_versions

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack


@dataclass
class Scored:
    """What scoring leaves for decide: the opened dataset, the run folder, the engine that
    scored it, counts, and seconds per step (never written: they depend on the machine)."""

    ds: Dataset
    run: RunDir
    engine: Engine
    scored: int
    resumed: bool
    shards: int
    timings: dict[str, float]
    wall: float


# The stage that reads each stage option: the option means nothing without it.
OPTION_STAGES = {"optout_cache": "optout", "c2pa_trust_anchors": "c2pa"}


def input_fingerprint(ds: Dataset, legacy: bool = False) -> str:
    """The input's identity: its resolved path, shard names with their sizes and times, and
    for an image folder every file under it (name, size, time), which its row shards do not
    show: enough to refuse resuming onto other data.

    ``legacy``: the fingerprint as runs before 2026-12-06 computed it (the path as typed, an
    image folder's files left out), so their resumes are still recognised. The same folder
    given by another path was then "a different run", and an image folder with files added
    resumed silently without them."""
    where = ds.describe()
    if not legacy and isinstance(getattr(ds, "source", None), (str, Path)):
        with contextlib.suppress(OSError):
            where = str(Path(ds.source).resolve())
    h = hashlib.sha256(f"{ds.format}|{where}".encode())
    for shard in ds.shards():
        h.update(shard.encode())
        path = getattr(ds, "_files", {}).get(shard)
        if path is not None and Path(path).exists():
            st = Path(path).stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    if not legacy and ds.format == "imagefolder":
        root = Path(ds.source)
        for f in sorted(root.rglob("*")):
            with contextlib.suppress(OSError):
                if f.is_file():
                    st = f.stat()
                    h.update(
                        f"{f.relative_to(root).as_posix()}|{st.st_size}:{st.st_mtime_ns}".encode()
                    )
    return h.hexdigest()


def uses_clip(stages: list[str], pack: Pack) -> bool:
    """Whether these stages score anything with the run's CLIP model under ``pack``: alignment,
    the watermark phrase, NSFW phrases (the NSFW stage reads the model only for those)."""
    return bool(
        {"alignment", "watermark"} & set(stages) or ("nsfw" in stages and pack.nsfw.phrases)
    )


def score(
    cfg: CurateConfig,
    progress: Callable[[int, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Scored:
    """Score (or resume scoring) ``cfg.dataset`` into ``cfg.out`` with ``cfg.engine``."""
    from clipaudit.models.spec_paths import portable_spec
    from clipaudit.rules.schema import load_pack

    # A relative model folder is recorded as an absolute path: `local-dir:m` stored as typed
    # made search and routes fail from any other folder ("'m' has no open_clip_config.json").
    typed = cfg.stages if "quality" in cfg.stages else ["quality", *cfg.stages]
    cfg = replace(cfg, stages=plan_stages(cfg.stages), model=portable_spec(cfg.model))
    engine = get_engine(cfg.engine)  # an unknown or uninstalled engine fails before any work
    policy = SamplingPolicy.parse(cfg.video_sampling)  # so does a bad sampling policy

    if cfg.out_format is not None:  # so does a kept format nobody can write
        get_format(cfg.out_format)
    src = Path(cfg.dataset)
    if src.is_dir() and Path(cfg.out).resolve().is_relative_to(src.resolve()):
        # The run's own parquet and tar files (signals, kept/) would be read as part of the
        # dataset: the next decide failed on "No image column in .../compact-00000.parquet".
        raise ClipauditError(
            f"--out {cfg.out!r} is inside the dataset folder {cfg.dataset!r}, whose files "
            "the run would then read as input; choose an --out folder outside it."
        )
    ds = open_dataset(cfg.dataset, format=cfg.format, options=cfg.read)
    pack = load_pack(cfg.rules)  # fail on a bad pack before any scoring work
    phrase_routes = [name for name, r in pack.routes.items() if r.phrases]
    if cfg.decide and phrase_routes and "alignment" not in cfg.stages:
        # Found at decide time, after every shard was scored, and the advice to add the
        # stage was then refused as "a different run".
        raise ClipauditError(
            f"the pack {pack.name!r} routes by phrases ({', '.join(phrase_routes)}), which are "
            "scored on the images' embeddings: add the alignment stage (--stages "
            f"{','.join([*cfg.stages, 'alignment'])}) or choose a pack without phrase routes."
        )
    fit = None
    if uses_clip(cfg.stages, pack):
        from clipaudit.models.domain import model_fit

        fit = model_fit(cfg.model, ds)
        if warn and fit and fit["note"]:
            warn(fit["note"])
        if warn and fit and fit["note"] and "nsfw" in cfg.stages and pack.nsfw.cascade.enabled:
            warn("the NSFW cascade's phrase bars rest on it, so the detector reads every image.")
    stages = make_stages(cfg.stages)
    # File options as absolute paths: recorded as typed, a relative --optout-cache made the
    # printed resume command fail from another folder (--c2pa-trust-anchors already was).
    options = {
        k: str(Path(v).resolve()) if k in OPTION_STAGES and Path(v).exists() else v
        for k, v in cfg.options.items()
    }
    ctx = StageContext(
        model_spec=cfg.model,
        device=cfg.device,
        batch_size=cfg.batch_size,
        options={
            **options,
            "rules": cfg.rules,
            "video_sampling": cfg.video_sampling,
            "model_fits": None if fit is None else fit["fits_data"],
        },
    )
    uses_model = any(s.needs_model for s in stages)
    if warn and not uses_model and cfg.model != portable_spec(CurateConfig.model):
        # Not loaded, so not checked: a mistyped spec would otherwise pass unnoticed.
        warn(
            f"--model {cfg.model!r} is not used: none of the stages "
            f"({', '.join(cfg.stages)}) scores with a model, so it is neither loaded nor "
            "checked nor recorded."
        )
    # An option for a stage the run does not score: said, and not recorded (it made the run
    # "a different run" from the same run without it).
    unused = [k for k in cfg.options if k in OPTION_STAGES and OPTION_STAGES[k] not in cfg.stages]
    for key in unused:
        if warn:
            warn(
                f"--{key.replace('_', '-')} is not used: the {OPTION_STAGES[key]} stage is not "
                f"among the stages ({', '.join(cfg.stages)}), so it is neither read nor recorded."
            )
    settings: dict[str, Any] = {
        "stages": cfg.stages,
        "model": cfg.model if uses_model else None,
        "batch_size": cfg.batch_size,
        "read": asdict(cfg.read),
        "options": {k: v for k, v in options.items() if k not in unused},
    }
    if cfg.batch_megapixels != CurateConfig.batch_megapixels:  # absent by default, as above
        settings["batch_megapixels"] = cfg.batch_megapixels
    # Settings of what the run does not do: earlier versions recorded them (a different run).
    as_before = dict(settings)
    if cfg.model_threads is not None:  # absent by default: earlier runs keep their fingerprint
        as_before["model_threads"] = cfg.model_threads
        if uses_model:
            settings["model_threads"] = cfg.model_threads
        elif warn:
            warn("--model-threads is not used: no stage scores with a model; not recorded.")
    if str(policy) != str(DEFAULT_POLICY):  # absent by default, as model_threads
        # Recorded with or without the video stage: every stage reads a clip's frames as
        # sampled, and the judge sends the run's samples.
        settings["video_sampling"] = as_before["video_sampling"] = str(policy)

    inputs = {old: input_fingerprint(ds, old) for old in (False, True)}  # walked once each

    def fingerprint_of(
        legacy_input: bool, stage_list: list[str], options: object, base: dict[str, Any]
    ) -> str:
        said = json.dumps({**base, "stages": stage_list, "options": options}, sort_keys=True)
        return hashlib.sha256((inputs[legacy_input] + said).encode()).hexdigest()

    fingerprint = fingerprint_of(False, cfg.stages, settings["options"], settings)
    # Fingerprints earlier versions gave the same run, so the runs they started resume: the
    # input's path as typed (before 2026-12-06), the stages in the order typed, the options
    # of stages not run and --model-threads of a run without a model (before these were
    # made one run), file options as typed (before 2026-12-07).
    typed_options = {k: v for k, v in cfg.options.items() if k not in unused}
    legacy = sorted(
        {
            fingerprint_of(old_input, stage_list, options, base)
            for old_input in (False, True)
            for stage_list in (cfg.stages, typed)
            for options in (settings["options"], cfg.options, typed_options)
            for base in (settings, as_before)
        }
        - {fingerprint}
    )
    record = {
        "clipaudit": __version__,
        "dataset": {
            "source": str(cfg.dataset),
            # The absolute path too, so decide and report work from any folder.
            "resolved": resolved_source(str(cfg.dataset)),
            "format": ds.format,
            "shards": ds.shards(),
        },
        "settings": settings,
        "fingerprint": fingerprint,
        "versions": library_versions(),
        "out_format": cfg.out_format or ds.format,
    }
    if fit is not None:  # decide leaves alignment out where the model does not know the data
        record["model_fit"] = fit
    run = RunDir(cfg.out)
    # The lock first: a curate refused as "in use" had already rewritten run.json and
    # removed the running command's temporary files. Held through curate's decide too
    # (pipeline.curate releases it).
    run.refuse_foreign()  # no lock file left in a folder that is not a run
    with output_errors(run.path):
        run.path.mkdir(parents=True, exist_ok=True)
    acquire_run_lock(run.path)
    try:
        resumed = run.prepare(record, legacy_fingerprints=legacy)
        shards = ds.shards()
        todo = [k for k in range(len(shards)) if not run.shard_done(k)]
        if resumed and warn:  # said: a resumed run looked like a fresh one, or like a no-op
            left = (
                f"scoring {other_shards(len(todo))}"
                if todo
                else "nothing is left to score" + (", deciding again" if cfg.decide else "")
            )
            warn(
                f"resuming {cfg.out}: {len(shards) - len(todo)} of {len(shards)} shards were "
                f"already scored with these settings; {left}."
            )
        if resumed and not todo:
            # The kept format is not part of the run's identity: the latest command's holds.
            old = run.read_json("run.json")
            if old.get("out_format") != record["out_format"]:
                run.write_json("run.json", {**old, "out_format": record["out_format"]})
        if todo:
            for stage in stages:
                stage.setup(ctx)
            prov = {s.name: s.provenance() for s in stages}
            run.write_json("run.json", {**record, "stage_provenance": prov})
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        job = EngineJob(cfg, ds, shards, todo, stages, ctx, run, progress, timings)
        scored = engine.score(job) if todo else 0
        wall = time.perf_counter() - t_start
    except BaseException:
        release_run_lock(run.path)
        raise
    return Scored(ds, run, engine, scored, resumed, len(shards), timings, wall)
