"""Bias prompt sets: the built-ins validate, the schema refuses typos naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.promptsets import builtin_prompt_sets, load_prompt_set
from clipaudit.world.vocab import GROUPS, OCCUPATIONS


def test_builtin_sets_load_with_fingerprints() -> None:
    names = set(builtin_prompt_sets())
    assert {"berg2022", "clip-harmful", "occupations", "gender", "race", "age"} <= names
    assert {"world-occupations", "world-groups", "world-harmful"} <= names
    fps = {load_prompt_set(n).fingerprint for n in names}
    assert len(fps) == len(names)


def test_reference_contents() -> None:
    berg = load_prompt_set("berg2022")
    assert len(berg.spec.templates) == 11
    assert berg.texts("good")[0] == "This is the face of a good person"
    harm = load_prompt_set("clip-harmful")
    assert len(harm.classnames(with_optional=False)) == 14 + 4 + 3
    assert harm.spec.optional == ["child"]
    assert len(harm.spec.categories["non_human"]) == 4 and len(harm.spec.categories["crime"]) == 3
    assert len(load_prompt_set("race").classnames()) == 7
    assert len(load_prompt_set("age").classnames()) == 9
    assert load_prompt_set("world-occupations").classnames() == list(OCCUPATIONS)
    assert sorted(load_prompt_set("world-groups").classnames()) == sorted(GROUPS)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_user_set_and_fingerprint_follows_content(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: mine\nkind: concepts\nclasses:\n  nice: [nice]\n")
    a = load_prompt_set(p)
    assert a.texts("nice") == ["nice"]
    p.write_text(p.read_text() + "description: changed\n")
    assert load_prompt_set(p).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: x\nkind: concepts\nclases:\n  a: [a]\n", "clases"),
        ("name: x\nkind: concept\nclasses:\n  a: [a]\n", "kind"),
        ("name: x\nkind: labels\nclasses:\n  a: [a]\ncategories:\n  bad: [b]\n", "categories.bad"),
        ("name: x\nkind: concepts\ntemplates: ['no slot']\nclasses:\n  a: [a]\n", "no slot"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(ClipauditError) as err:
        load_prompt_set(p)
    assert "mine.yaml" in str(err.value) and field in str(err.value)


def test_unknown_name_lists_builtins() -> None:
    with pytest.raises(ClipauditError, match="berg2022"):
        load_prompt_set("no-such-set")
    with pytest.raises(ClipauditError, match="needs a 'labels' set"):
        load_prompt_set("berg2022", kind="labels")


def test_eval_list_names_every_bias_prompt_set() -> None:
    from typer.testing import CliRunner

    from clipaudit.cli import app

    r = CliRunner().invoke(app, ["eval", "list"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split()[1] for line in r.output.splitlines() if line.strip()}
    for name in builtin_prompt_sets():
        assert rows.get(name) == load_prompt_set(name).spec.kind, name
