"""``clipaudit report``: one self-contained HTML file plus the same numbers as JSON and CSV.

The HTML loads nothing: CSS and SVG are inline, thumbnails are data: URIs, there is no
script, and a Content-Security-Policy forbids any fetch or script should a string ever
slip through. Every string from data is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from clipaudit import __version__
from clipaudit.data.formats import atomic_write_bytes
from clipaudit.errors import ClipauditError
from clipaudit.reports import svg
from clipaudit.reports.bidi import CONTROLS, spell_controls
from clipaudit.reports.curation import curation_section, is_run
from clipaudit.reports.evaluation import evaluation_section, is_eval
from clipaudit.reports.provenance import now_utc
from clipaudit.reports.thumbs import SampleView

TEMPLATES = Path(__file__).parent / "templates"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'"

Detector = Callable[[Path], bool]
INPUT_KINDS: dict[str, Detector] = {}


def input_kind(name: str) -> Callable[[Detector], Detector]:
    def register(fn: Detector) -> Detector:
        INPUT_KINDS[name] = fn
        return fn

    return register


input_kind("curation")(is_run)
input_kind("evaluation")(is_eval)


@dataclass
class ReportFiles:
    html: Path
    json: Path
    csv: Path
    ids_csv: Path | None


def _kind(path: Path) -> str | None:
    return next((k for k, detect in INPUT_KINDS.items() if detect(path)), None)


def resolve_inputs(paths: list[Path]) -> list[tuple[str, Path]]:
    """Each path as (kind, folder); a folder that is neither, but holds some (a demo's
    ``run/``, several eval outputs), stands for those."""
    out: list[tuple[str, Path]] = []
    for p in paths:
        if not p.is_dir():
            raise ClipauditError(
                f"{str(p)!r} is not a folder; pass a curate run or an eval --out folder."
            )
        kind = _kind(p)
        if kind is not None:
            out.append((kind, p))
            continue
        children = [(k, c) for c in sorted(p.iterdir()) if c.is_dir() and (k := _kind(c))]
        if not children:
            raise ClipauditError(
                f"{str(p)!r} is neither a curation run (stats.json + run.json) nor an evaluation "
                "folder (results.json); pass the folder that `clipaudit curate --out` or "
                "`clipaudit eval … --out` wrote."
            )
        out.extend((k, c) for k, c in children if k is not None)
    return out


def fmt_num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and abs(v) < 10 ** -(digits - 1):
            return f"{v:.2e}"
        return f"{v:,.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def fmt_pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}%"


def fmt_ci(ci: Any) -> str:
    if not ci or len(ci) != 2 or ci[0] is None:
        return "–"
    return f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def pairs(rows: list[dict[str, Any]], key: str, value: str) -> list[tuple[str, float]]:
    return [(str(r[key]), float(r[value])) for r in rows]


def skew_chart(curve: dict[str, Any], thresholds: dict[str, Any]) -> Markup:
    """MaxSkew and NDKL (uniform target) over k with their intervals, and the fail line."""
    series = [
        (label, curve["series"][key]["values"], curve["series"][key]["ci"])
        for label, key in (("MaxSkew", "max_skew (uniform)"), ("NDKL", "ndkl (uniform)"))
        if key in curve["series"]
    ]
    fail = thresholds.get("max_skew_fail")
    return svg.curves(
        curve["ks"],
        series,
        hline=("MaxSkew fail", float(fail)) if isinstance(fail, int | float) else None,
        title=f"{curve['concept']} / {curve['column']}",
    )


def _shown_controls(value: Any) -> Any:
    """Every ``{{ }}`` value, with bidi controls spelt out (reports/bidi.py)."""
    if not isinstance(value, str) or not CONTROLS.search(value):
        return value  # the common case: nothing to rewrite, no copy of a chart's Markup
    shown = spell_controls(str(value))
    # Markup stays Markup: the replacement holds no character HTML treats specially.
    return Markup(shown) if isinstance(value, Markup) else shown


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ }} is escaped; charts arrive as Markup built in svg.py
        finalize=_shown_controls,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, ci=fmt_ci, chunks=_chunks)
    env.globals.update(svg=svg, csp=CSP, pairs=pairs, skew_chart=skew_chart)
    return env


def _flatten_numbers(obj: Any, prefix: str, rows: list[tuple[str, str]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("ids", "thumb_ids", "shown", "provenance"):
                continue
            _flatten_numbers(v, f"{prefix}.{k}" if prefix else str(k), rows)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            key = None
            if isinstance(v, dict):
                key = v.get("code") or v.get("metric") or v.get("column") or v.get("group")
            _flatten_numbers(v, f"{prefix}[{key if key is not None else i}]", rows)
    elif isinstance(obj, bool):
        rows.append((prefix, "true" if obj else "false"))
    elif isinstance(obj, int | float):
        rows.append((prefix, repr(obj)))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as text: sample ids, group names and paths come from the
    data, and a cell starting with = + - @ runs as a formula in Excel or LibreOffice
    (``=HYPERLINK(...)``), so such a cell that is not a number gets a leading apostrophe
    (OWASP's CSV-injection advice); control and bidi characters are spelt ``⟨U+202E⟩``."""
    if not isinstance(value, str):
        return value
    text = spell_controls(value)
    if text.startswith(_FORMULA_STARTS):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def csv_text(header: list[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def numbers_csv(sections: list[dict[str, Any]]) -> str:
    def rows() -> Iterator[tuple[object, ...]]:
        for k, sec in enumerate(sections):
            flat: list[tuple[str, str]] = []
            _flatten_numbers(sec, "", flat)
            for path, value in flat:
                yield (k, sec["kind"], path, value)

    return csv_text(["section", "kind", "path", "value"], rows())


def render_html(
    sections: list[dict[str, Any]], views: dict[str, SampleView], title: str, generated: str
) -> str:
    template = environment().get_template("report.html.j2")
    return template.render(
        sections=sections, views=views, title=title, generated=generated, version=__version__
    )


def write_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    show_nsfw: bool = False,
    title: str | None = None,
) -> ReportFiles:
    """Write ``report.html`` (or ``out``) and ``.json`` / ``.csv`` beside it; return the paths."""
    inputs = resolve_inputs([Path(p) for p in paths])
    if out is None:
        base = inputs[0][1] if len(paths) == 1 else Path.cwd()
        out = base / "report.html"
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ClipauditError(f"--out {str(out)!r} must end in .html (the JSON and CSV go beside).")
    out.parent.mkdir(parents=True, exist_ok=True)
    sections: list[dict[str, Any]] = []
    views: dict[str, SampleView] = {}
    id_rows: list[tuple[int, str, str, str]] = []
    for kind, path in inputs:
        if kind == "curation":
            sec, v, rows = curation_section(path, show_nsfw=show_nsfw)
            # Ids are unique within a run, not across runs: key views by section.
            sec["view_prefix"] = f"{len(sections)}:"
            views.update({f"{len(sections)}:{i}": x for i, x in v.items()})
            id_rows += [(len(sections), code, i, d) for code, i, d in rows]
        else:
            sec = evaluation_section(path)
            sec["view_prefix"] = f"{len(sections)}:"
        sections.append(sec)
    generated = now_utc()
    title = title or "clipaudit report: " + ", ".join(p.name for _, p in inputs)
    html = render_html(sections, views, title, generated)
    atomic_write_bytes(out, html.encode("utf-8"))
    doc = {"title": title, "generated": generated, "clipaudit": __version__, "sections": sections}
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    atomic_write_bytes(
        json_path, json.dumps(doc, indent=1, ensure_ascii=False, default=str).encode("utf-8")
    )
    atomic_write_bytes(csv_path, numbers_csv(sections).encode("utf-8"))
    ids_path = None
    if id_rows:
        ids_path = out.with_name(out.stem + "_ids.csv")
        text = csv_text(["section", "reason", "id", "decision"], id_rows)
        atomic_write_bytes(ids_path, text.encode("utf-8"))
    return ReportFiles(html=out, json=json_path, csv=csv_path, ids_csv=ids_path)
