"""Hostile-input classes: build the datasets, curate them, sort every sample's fate.

Each ``run_*`` function returns :class:`ClassResult` rows of the reliability table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipaudit.data import Sample, write_dataset
from clipaudit.data.decode import DECODE_ERRORS
from tests.hostile import metadata, shards
from tests.hostile.images import IMAGE_CLASSES, OK, ImageCase
from tests.hostile.runner import (
    FAST_STAGES,
    FULL_STAGES,
    TEST_MODEL,
    ClassResult,
    Outcome,
    curate_and_account,
)
from tests.hostile.shards import DatasetCase

IMAGE_FORMATS = ("webdataset", "parquet", "imagefolder")


def image_samples(cases: list[ImageCase]) -> list[Sample]:
    return [
        Sample(
            f"{i:03d}_{c.name}",
            c.data,
            caption=c.caption,
            url=f"https://example.org/{i}",
            meta=dict(c.meta),
            image_ext=c.ext,
        )
        for i, c in enumerate(cases)
    ]


def run_image_class(
    name: str,
    make: Callable[[], list[ImageCase]],
    root: Path,
    stages: list[str] = FAST_STAGES,
    formats: tuple[str, ...] = IMAGE_FORMATS,
) -> ClassResult:
    """Every case of an image class, as samples of one dataset per format."""
    res = ClassResult(name, "input")
    t0 = time.perf_counter()
    cases = make()
    for fmt in formats:
        samples = image_samples(cases)
        data = root / f"{_slug(name)}-{fmt}"
        write_dataset(samples, data, fmt, shard_size=max(8, len(samples) // 2))
        run = curate_and_account(
            data, root / f"{_slug(name)}-{fmt}-run", [s.id for s in samples], stages, fmt=fmt
        )
        for case, sample in zip(cases, samples, strict=True):
            outcome = run.error or run.per_id[sample.id]
            expect: frozenset[str] = case.expect
            if outcome.category == "ok" and case.size is not None:
                row = run.rows[sample.id]
                got = (row.get("width"), row.get("height"))
                if got != case.size:
                    outcome = Outcome("ok", f"decoded as {got}, expected {case.size}")
                    expect = frozenset()
            res.add(f"{fmt}:{case.name}", outcome, expect)
    res.seconds = time.perf_counter() - t0
    return res


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)[:40]


READ_CODES = set(DECODE_ERRORS) | {"unsafe_path", "bad_metadata", "truncated_shard", "remote_path"}


def reader_reason(row: dict[str, Any]) -> str | None:
    """A reader or decoder code, also where the pack only flags it (``bad_metadata``)."""
    return next((r for r in row.get("reasons") or [] if r in READ_CODES), None)


def run_dataset_cases(
    name: str,
    cases: list[DatasetCase],
    root: Path,
    stages: list[str] = FAST_STAGES,
    classify: Callable[[dict[str, Any]], str | None] = reader_reason,
) -> ClassResult:
    """Per-sample dataset cases and whole-run cases; a run error must be a clear one."""
    res = ClassResult(name, "input")
    t0 = time.perf_counter()
    for n, case in enumerate(cases):
        ids = list(case.expect) if case.expect else None
        run = curate_and_account(
            case.path,
            root / f"run-{_slug(name)}-{n}",
            ids,
            stages,
            fmt=case.fmt,
            reason_codes=classify,
        )
        if run.error is not None:
            outcome = run.error
            if (
                outcome.category == "clear_error"
                and case.must_mention
                and case.must_mention not in outcome.detail
            ):
                outcome = Outcome(
                    "clear_error", f"does not name {case.must_mention!r}: " + outcome.detail
                )
                res.add(case.name, outcome, frozenset())
                continue
            res.add(case.name, outcome, case.expect_run or frozenset())
            continue
        if case.expect_run is not None and OK not in case.expect_run:
            res.add(case.name, Outcome("ok", "ran, but one clear error was expected"), frozenset())
            continue
        if not case.expect:
            # Only the count is known: every sample accounted for, none lost.
            lost = [i for i, o in run.per_id.items() if o.category == "lost"]
            res.add(
                case.name,
                Outcome("lost", ", ".join(lost))
                if lost
                else Outcome("ok", f"{len(run.per_id)} samples"),
                None,
            )
            continue
        extra = sorted(set(run.rows) - set(case.expect))
        if extra:
            res.add(f"{case.name}: unexpected ids", Outcome("ok", repr(extra[:5])), frozenset())
        for sample_id, expect in case.expect.items():
            res.add(f"{case.name}:{sample_id[:60]!r}", run.per_id[sample_id], expect)
    res.seconds = time.perf_counter() - t0
    return res


def _rights_error(row: dict[str, Any]) -> str | None:
    return row.get("rights_error") or None


def _c2pa_reason(row: dict[str, Any]) -> str | None:
    return next((r for r in row.get("reasons") or [] if r.startswith("c2pa")), None)


def run_xmp(root: Path) -> ClassResult:
    cases = metadata.xmp_cases()
    samples = [Sample(k, d, caption="xmp test", image_ext=e) for k, (d, e, _) in cases.items()]
    data = root / "xmp"
    write_dataset(samples, data, "webdataset", shard_size=64)
    expect = {k: frozenset(x if x else OK for x in errs) for k, (_, _, errs) in cases.items()}
    case = DatasetCase("xmp", data, "webdataset", expect)
    return run_dataset_cases(
        "XMP: entities, DTDs, malformed, huge", [case], root, ["quality", "rights"], _rights_error
    )


def run_c2pa(root: Path) -> ClassResult:
    cases = metadata.c2pa_cases()
    samples = [Sample(k, d, caption="c2pa test", image_ext=e) for k, (d, e) in cases.items()]
    data = root / "c2pa"
    write_dataset(samples, data, "webdataset", shard_size=64)
    allowed = frozenset({OK, "c2pa_invalid", "c2pa_unverifiable", "decode_error"})
    case = DatasetCase("c2pa", data, "webdataset", {k: allowed for k in cases})
    res = run_dataset_cases(
        "C2PA: malformed, cut, flipped manifests", [case], root, ["quality", "c2pa"], _c2pa_reason
    )
    if not metadata.C2PA_FIXTURES.is_dir():
        res.notes = "the signed fixtures were absent: only forged manifests ran"
    return res


def run_all_inputs(
    root: Path, stages: list[str] = FAST_STAGES, formats: tuple[str, ...] = IMAGE_FORMATS
) -> list[ClassResult]:
    out = [
        run_image_class(name, make, root, stages, formats) for name, make in IMAGE_CLASSES.items()
    ]
    (root / "tars").mkdir()
    t = root / "tars"
    out.append(
        run_dataset_cases(
            "tar members: SVG, non-image, ../ and absolute paths, links",
            [shards.tar_members(t), shards.tar_raw_names(t)],
            root,
            stages,
        )
    )
    out.append(
        run_dataset_cases("truncated and damaged tar shards", shards.tar_truncated(t), root, stages)
    )
    (root / "dups").mkdir()
    out.append(
        run_dataset_cases("duplicate keys and ids", shards.duplicates(root / "dups"), root, stages)
    )
    (root / "caps").mkdir()
    out.append(
        run_dataset_cases(
            "captions: not UTF-8, megabytes, surrogates, control",
            [shards.captions_tar(root / "caps"), shards.captions_parquet(root / "caps")],
            root,
            stages,
        )
    )
    (root / "pq").mkdir()
    out.append(
        run_dataset_cases(
            "parquet: NaN, wrong types, missing columns, damage",
            shards.parquet_columns(root / "pq"),
            root,
            stages,
        )
    )
    (root / "if").mkdir()
    out.append(
        run_dataset_cases(
            "imagefolder: escaping paths, links, FIFOs",
            shards.imagefolder_cases(root / "if"),
            root,
            stages,
        )
    )
    out.append(run_xmp(root))
    out.append(run_c2pa(root))
    return out


def run_images_all_stages(root: Path) -> ClassResult:
    """Every image class again, through the model stages too (alignment with a small random
    CLIP, invisible watermark, NSFW detector): their resizes and decoders see the same
    hostile pixels. One row: the sum over the classes."""
    res = ClassResult("every image class above, through alignment, watermark and nsfw", "input")
    t0 = time.perf_counter()
    for name, make in IMAGE_CLASSES.items():
        part = run_image_class(name, make, root / "all-stages", FULL_STAGES, ("webdataset",))
        res.cases += part.cases
        res.counts.update(part.counts)
        res.unexpected.extend(f"{name}: {u}" for u in part.unexpected)
    res.seconds = time.perf_counter() - t0
    res.notes = f"stages {','.join(FULL_STAGES)}; model {TEST_MODEL}; webdataset"
    return res
