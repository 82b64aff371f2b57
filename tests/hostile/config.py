"""Bad configuration: rules packs that are malformed or mistyped, and model specs that name
nothing. Each must end in one ``ClipauditError`` sentence naming the file, the line, the
field and what is allowed (for packs), or listing the accepted spec forms (for models)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from tests.hostile.runner import ClassResult, Outcome, call_guarded


@dataclass
class PackCase:
    name: str
    text: str | bytes
    line: int | None  # the line the error must name (None: no line, e.g. an empty file)
    mentions: tuple[str, ...]  # the field and the allowed values the message must hold
    files: dict[str, str] | None = None  # other packs beside it (for extends)
    file: str | None = None  # the file the error must name, when not the pack itself


H = "name: bad\nextends: default\n"  # two lines: the cases' own lines start at 3
PACK_CASES = [
    PackCase(
        "unknown top-level field",
        H + "qualty:\n  min_side: 3\n",
        3,
        ("qualty", "quality", "dedup", "actions"),
    ),
    PackCase(
        "unknown nested field",
        H + "quality:\n  min_sid: 3\n",
        4,
        ("quality.min_sid", "min_side", "max_aspect"),
    ),
    PackCase(
        "string for an integer",
        H + "quality:\n  min_side: big\n",
        4,
        ("quality.min_side", "integer"),
    ),
    PackCase(
        "negative size",
        H + "quality:\n  min_side: -5\n",
        4,
        ("quality.min_side", "greater than or equal to 0"),
    ),
    PackCase(
        "percentile over 100",
        H + "alignment:\n  min_percentile: 150\n",
        4,
        ("alignment.min_percentile", "less than or equal to 100"),
    ),
    PackCase(
        "action that is not a word we know",
        H + "actions:\n  nsfw: delete\n",
        4,
        ("actions.nsfw", "'drop', 'flag' or 'keep'"),
    ),
    PackCase(
        "unknown reason code",
        H + "actions:\n  nsfww: drop\n",
        3,
        ("nsfww", "low_alignment", "unsafe_path"),
    ),
    PackCase(
        "unknown hash in a list",
        H + "dedup:\n  hashes: [phash, ahash]\n",
        4,
        ("dedup.hashes", "'phash' or 'dhash'"),
    ),
    PackCase(
        "unknown keeper key",
        H + "dedup:\n  keeper: [sharpness]\n",
        4,
        ("dedup.keeper", "'alignment', 'resolution' or 'id'"),
    ),
    PackCase(
        "unknown field inside a list item",
        H + "nsfw:\n  phrases:\n    - text: a nude photo\n      min_score: 0.3\n      rout: drop\n",
        7,
        ("nsfw.phrases.0.rout", "route", "min_score", "text"),
    ),
    PackCase(
        "unknown field under a model",
        H + "models:\n  'random:x':\n    alignment:\n      mn: 0.3\n",
        6,
        ("models.random:x.alignment.mn", "min", "min_percentile"),
    ),
    PackCase(
        "unknown nudenet class",
        H + "nsfw:\n  classes:\n    BELLY_EXPOSD: 0.5\n",
        4,
        ("nsfw.classes", "BELLY_EXPOSED"),
    ),
    PackCase(
        "list where a mapping belongs",
        H + "quality:\n  - min_side\n",
        3,
        ("quality", "min_side", "max_aspect"),
    ),
    PackCase(
        "string where a list belongs",
        H + "quality:\n  languages: en\n",
        4,
        ("quality.languages", "list"),
    ),
    PackCase(
        "share above 1",
        H + "gates:\n  min_caption_share: 2\n",
        4,
        ("gates.min_caption_share", "less than or equal to 1"),
    ),
    PackCase("YAML syntax error", H + "quality:\n  min_side: [64\n", 5, ("YAML",)),
    PackCase("tab indentation", H + "quality:\n\tmin_side: 64\n", 4, ("YAML",)),
    PackCase("empty file", "", None, ("mapping",)),
    PackCase("a list at the top", "- name: x\n", None, ("mapping",)),
    PackCase("not UTF-8", b"name: caf\xe9\nquality:\n  min_side: 1\n", None, ("UTF-8",)),
    PackCase("name missing", "quality:\n  min_side: 1\n", 1, ("'name'", "required")),
    PackCase(
        "extends an unknown pack",
        "name: x\nextends: nope\n",
        2,
        ("nope", "default", "laion", "strict"),
    ),
    PackCase("extends a number", "name: x\nextends: 5\n", 2, ("extends", "5")),
    PackCase(
        "extends loop",
        "name: a\nextends: b.yaml\n",
        2,
        ("loops",),
        {"b.yaml": "name: b\nextends: bad.yaml\n"},
    ),
    PackCase(
        "error inside the extended pack",
        "name: a\nextends: b.yaml\n",
        3,
        ("quality.min_sid", "min_side"),
        {"b.yaml": "name: b\nquality:\n  min_sid: 1\n"},
        "b.yaml",
    ),
    PackCase(
        "YAML alias bomb",
        "name: x\ndescription: &a [1,1,1,1,1,1,1,1]\n"
        + "".join(
            f"b{i}: &b{i} [" + ",".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 9) + "]\n"
            for i in range(8)
        ),
        2,
        ("description",),
    ),
]

MODEL_SPECS = [
    "",
    " ",
    "nope",
    "ViT-B-32",
    "bundled:",
    "bundled:nope",
    "bundled:../../etc",
    "random:",
    "random:nope",
    "local-dir:",
    "local-dir:/nonexistent",
    "hf-hub:org/repo",
    "NoArch:tag",
    "a:b:c",
    "ViT-B-32:no-such-tag",
    "\x00",
]
# Every accepted form must be named (the parts each message must hold one of).
SPEC_PARTS = ("bundled:", "random:", "local-dir:", "hf-hub:", "ARCH:")


def _check_message(case: PackCase, path: Path, msg: str) -> str | None:
    # The file with the mistake: the extended one where the case says so.
    need = [case.file or path.name, *case.mentions]
    if case.line is not None:
        need.append(f"line {case.line}")
    missing = [m for m in need if m not in msg]
    return f"lacks {missing}: {msg}" if missing else None


def run_packs(root: Path) -> ClassResult:
    from clipaudit.rules.schema import load_pack

    res = ClassResult("rules pack malformed or mistyped", "configuration")
    t0 = time.perf_counter()
    for n, case in enumerate(PACK_CASES):
        folder = root / f"pack{n}"
        folder.mkdir(parents=True)
        path = folder / "bad.yaml"
        path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
        for name, text in (case.files or {}).items():
            (folder / name).write_text(text)
        _, failure, _ = call_guarded(functools.partial(load_pack, str(path)), 20)
        if failure is None:
            res.add(case.name, Outcome("ok", "loaded without an error"), frozenset())
        elif failure.category == "clear_error":
            problem = _check_message(case, path, failure.detail)
            res.add(
                case.name,
                Outcome("clear_error", problem or failure.detail),
                frozenset() if problem else None,
            )
        else:
            res.add(case.name, failure, None)
    res.seconds = time.perf_counter() - t0
    return res


def run_model_specs() -> ClassResult:
    from clipaudit.models.loader import resolve_spec

    res = ClassResult("unknown or incomplete model spec", "configuration")
    t0 = time.perf_counter()
    for spec in MODEL_SPECS:
        _, failure, _ = call_guarded(functools.partial(resolve_spec, spec), 20)
        if failure is None:
            res.add(repr(spec), Outcome("ok", "resolved"), frozenset())
        elif failure.category != "clear_error":
            res.add(repr(spec), failure, None)
        else:
            msg = failure.detail
            # A spec of a known kind may instead list what that kind accepts (tags, names).
            listed = all(p in msg for p in SPEC_PARTS) or any(
                w in msg for w in ("are:", "one of", "point local-dir:", "'local-dir:")
            )
            named = repr(spec.split(":", 1)[-1]) in msg or repr(spec) in msg or not spec.strip()
            res.add(
                repr(spec), Outcome("clear_error", msg), None if listed and named else frozenset()
            )
    res.seconds = time.perf_counter() - t0
    return res
