"""Class names and prompt templates: built-in sets, CLIP_benchmark JSON files, validation.

Two shapes, as in CLIP_benchmark: a list of templates holding ``{c}`` (each is formatted
with every class name), or a dict of per-class prompt lists (CuPL style, and the world's).
Whatever the source, evaluation sees a :class:`Prompts`: class names in label order and the
texts of each class, with a fingerprint that names exactly those texts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipaudit.errors import ClipauditError

TemplateSource = list[str] | dict[str, list[str]]
TEMPLATE_SETS: dict[str, Callable[[], TemplateSource]] = {}


def template_set(
    name: str,
) -> Callable[[Callable[[], TemplateSource]], Callable[[], TemplateSource]]:
    def deco(fn: Callable[[], TemplateSource]) -> Callable[[], TemplateSource]:
        TEMPLATE_SETS[name] = fn
        return fn

    return deco


def _from_lambdas(fns: Any) -> list[str]:
    # open_clip ships templates as lambdas; formatting with "{c}" turns them back into strings.
    return [str(fn("{c}")) for fn in fns]


@template_set("openai")
def _openai() -> TemplateSource:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return _from_lambdas(OPENAI_IMAGENET_TEMPLATES)


@template_set("simple")
def _simple() -> TemplateSource:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    return _from_lambdas(SIMPLE_IMAGENET_TEMPLATES)


@template_set("world-colors")
def _world_colors() -> TemplateSource:
    from clipaudit.world.prompts import color_prompts

    return color_prompts()


@template_set("world-shapes")
def _world_shapes() -> TemplateSource:
    from clipaudit.world.prompts import shape_prompts

    return shape_prompts()


@template_set("world-occupations")
def _world_occupations() -> TemplateSource:
    from clipaudit.world.prompts import occupation_prompts

    return occupation_prompts()


@template_set("world-groups")
def _world_groups() -> TemplateSource:
    from clipaudit.world.prompts import group_prompts

    return group_prompts()


@template_set("classname")
def _bare() -> TemplateSource:
    return ["{c}"]


@dataclass(frozen=True)
class Prompts:
    """Class names in label order and, per class, the texts its head averages."""

    classnames: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...]
    source: str

    @property
    def fingerprint(self) -> str:
        payload = json.dumps([self.classnames, self.texts], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, Any]:
        counts = {len(t) for t in self.texts}
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n_classes": len(self.classnames),
            "prompts_per_class": counts.pop() if len(counts) == 1 else sorted(counts),
            "classnames": list(self.classnames),
        }


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipauditError(
            f"The {what} file {str(path)!r} does not exist; check the path."
        ) from None
    except ValueError as exc:
        raise ClipauditError(f"The {what} file {str(path)!r} is not valid JSON ({exc}).") from None


def _select(obj: Any, key: str | None, spec: str, what: str) -> Any:
    # CLIP_benchmark keeps one file for all datasets, keyed by dataset name: FILE#KEY picks one.
    if key is None:
        return obj
    if not isinstance(obj, dict) or key not in obj:
        keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else "none (not a JSON object)"
        raise ClipauditError(f"The {what} file {spec!r} has no entry {key!r}; its keys are {keys}.")
    return obj[key]


def _split_spec(spec: str) -> tuple[Path, str | None]:
    path, sep, key = spec.partition("#")
    return Path(path), (key if sep else None)


def load_templates(spec: str) -> TemplateSource:
    """A built-in set name, or a JSON file (``FILE`` or ``FILE#DATASET``) in either shape."""
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]()
    path, key = _split_spec(spec)
    if not path.suffix == ".json" and not path.exists():
        raise ClipauditError(
            f"Unknown template set {spec!r}; use one of {', '.join(sorted(TEMPLATE_SETS))} "
            "or a JSON file of templates."
        )
    data = _select(_load_json(path, "templates"), key, spec, "templates")
    if isinstance(data, list) and all(isinstance(t, str) for t in data):
        return list(data)
    if isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        return {str(k): list(v) for k, v in data.items()}
    raise ClipauditError(
        f"The templates file {spec!r} must hold a list of templates with '{{c}}' or an object "
        "mapping each class name to a list of prompts (add '#DATASET' to pick one entry)."
    )


def load_classnames(spec: str) -> list[str]:
    """A JSON list (``FILE`` or ``FILE#DATASET``) or a text file with one class a line."""
    path, key = _split_spec(spec)
    if path.suffix == ".json":
        data = _select(_load_json(path, "class names"), key, spec, "class names")
    else:
        try:
            data = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        except FileNotFoundError:
            raise ClipauditError(
                f"The class names file {spec!r} does not exist; check the path."
            ) from None
        data = [ln for ln in data if ln]
    if not isinstance(data, list) or not data or not all(isinstance(c, str) for c in data):
        raise ClipauditError(
            f"The class names file {spec!r} must hold a non-empty list of strings "
            "(add '#DATASET' to pick one entry of a CLIP_benchmark file)."
        )
    dupes = sorted({c for c in data if data.count(c) > 1})
    if dupes:
        raise ClipauditError(f"The class name {dupes[0]!r} appears twice in {spec!r}; remove one.")
    return list(data)


def build_prompts(classnames: list[str], templates: TemplateSource, source: str) -> Prompts:
    """Expand templates over class names; every mistake is one sentence naming the culprit."""
    if not classnames:
        raise ClipauditError("There are no class names to evaluate; pass --classes.")
    if isinstance(templates, dict):
        missing = [c for c in classnames if c not in templates]
        if missing:
            raise ClipauditError(
                f"The per-class prompts in {source!r} have no entry for class {missing[0]!r}; "
                "add its prompts or remove the class."
            )
        texts = [list(templates[c]) for c in classnames]
        empty = [c for c, t in zip(classnames, texts, strict=True) if not t]
        if empty:
            raise ClipauditError(f"The class {empty[0]!r} has no prompts in {source!r}; add some.")
    else:
        if not templates:
            raise ClipauditError(
                f"The template list {source!r} is empty; add a template with '{{c}}'."
            )
        for t in templates:
            if "{c}" not in t:
                raise ClipauditError(
                    f"The template {t!r} in {source!r} has no '{{c}}' placeholder for the class "
                    "name; add one."
                )
        try:
            texts = [[t.format(c=c) for t in templates] for c in classnames]
        except (KeyError, IndexError, ValueError):
            bad = next(t for t in templates if not _formats(t))
            raise ClipauditError(
                f"The template {bad!r} in {source!r} has braces other than '{{c}}'; "
                "double them ('{{' and '}}') to mean literal braces."
            ) from None
    return Prompts(tuple(classnames), tuple(tuple(t) for t in texts), source)


def _formats(template: str) -> bool:
    try:
        template.format(c="x")
    except (KeyError, IndexError, ValueError):
        return False
    return True
