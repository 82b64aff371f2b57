"""Bias prompt sets: YAML files in ``rules/prompts/`` (built in) or any path (the user's).

One strict schema (unknown keys refused; errors name the file and the field):

* ``templates``: texts with one ``{}`` slot, each filled with every phrase of a class;
* ``classes``: class name → phrases (a class's texts are templates × phrases);
* ``categories``: named subsets of classes (the harmful categories of a label set);
* ``optional``: classes left out unless asked for (the "child" ablation);
* ``attribute``: for group prompt sets, the demographic column the classes are values of;
* ``pairs``: (A, B) class pairs for association tests (none: each class against the rest).

The fingerprint is the sha256 of the file's bytes, recorded with every result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from clipaudit.errors import ClipauditError
from clipaudit.rules.base import Strict

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "rules" / "prompts"
Kind = Literal["concepts", "labels", "groups", "classes"]


class PromptSetSpec(Strict):
    name: str
    kind: Kind
    description: str = ""
    source: str = ""
    templates: list[str] = Field(default_factory=lambda: ["{}"], min_length=1)
    classes: dict[str, list[str]] = Field(min_length=1)
    categories: dict[str, list[str]] = Field(default_factory=dict)
    optional: list[str] = Field(default_factory=list)
    attribute: str | None = None
    pairs: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> PromptSetSpec:
        for t in self.templates:
            if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.count("}") != 1:
                raise ValueError(f"template {t!r} must hold exactly one '{{}}' slot")
        for name, phrases in self.classes.items():
            if not phrases:
                raise ValueError(f"class {name!r} has no phrases")
        named = [(f"categories.{c}", m) for c, ms in self.categories.items() for m in ms]
        named += [("optional", m) for m in self.optional]
        named += [("pairs", m) for p in self.pairs for m in p]
        for where, member in named:
            if member not in self.classes:
                raise ValueError(f"{where} names {member!r}, which is not a class")
        return self


@dataclass(frozen=True)
class PromptSet:
    spec: PromptSetSpec
    path: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.spec.name

    def classnames(self, with_optional: bool = True) -> list[str]:
        return [c for c in self.spec.classes if with_optional or c not in self.spec.optional]

    def texts(self, cls: str) -> list[str]:
        """Every template × phrase text of one class, template-major."""
        return [t.replace("{}", p) for t in self.spec.templates for p in self.spec.classes[cls]]

    def template_texts(self, cls: str, template: str) -> list[str]:
        return [template.replace("{}", p) for p in self.spec.classes[cls]]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.spec.kind,
            "source": self.path,
            "fingerprint": self.fingerprint,
            "n_classes": len(self.spec.classes),
            "n_templates": len(self.spec.templates),
        }


def builtin_prompt_sets() -> dict[str, Path]:
    """Built-in set name (the file stem) → path; the registry is the folder itself."""
    return {p.stem: p for p in sorted(PROMPTS_DIR.glob("*.yaml"))}


def load_prompt_set(name_or_path: str | Path, kind: Kind | None = None) -> PromptSet:
    """A built-in name or a YAML path; ``kind`` checks the set suits the probe."""
    builtins = builtin_prompt_sets()
    path = builtins.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise ClipauditError(
            f"Unknown prompt set {str(name_or_path)!r}; use one of {', '.join(builtins)} or a "
            "path to a YAML file."
        )
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ClipauditError(f"The prompt set {str(path)!r} is not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise ClipauditError(f"The prompt set {str(path)!r} must be a YAML mapping.")
    try:
        spec = PromptSetSpec.model_validate(data)
    except ValidationError as exc:
        # Every problem at once: a typo shows as both an unknown key and a missing one.
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise ClipauditError(f"The prompt set {str(path)!r} is invalid at {where}.") from None
    if kind is not None and spec.kind != kind:
        raise ClipauditError(
            f"The prompt set {spec.name!r} is of kind {spec.kind!r}, but this probe needs a "
            f"{kind!r} set; pass one of that kind."
        )
    return PromptSet(spec, str(path), hashlib.sha256(raw).hexdigest())
