"""Rights and provenance stages: ``rights`` (embedded metadata, caption marks, url source,
licence; sub-millisecond) and ``c2pa`` (Content Credentials; skipped in microseconds for
bytes without a manifest marker). Columns hold facts only; the pack's lists and actions are
applied at decide time, so changing a list never re-reads an image.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from clipaudit.curate.stages import Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import Signals, column, register_rule, register_stats
from clipaudit.data.decode import Decoded
from clipaudit.data.sample import Sample
from clipaudit.rights.embedded import caption_has_copyright, read_embedded
from clipaudit.rights.licences import Licence, parse_licence
from clipaudit.rights.provenance import (
    OFFLINE_SETTINGS,
    TrustAnchors,
    c2pa_version,
    load_trust_anchors,
    read_c2pa,
    training_answer,
)
from clipaudit.rights.sources import UrlParts, match_domain, url_parts
from clipaudit.rights.xmp import clean_text
from clipaudit.rules.sections.rights import DEFAULT_AI_SOURCE_TYPES

if TYPE_CHECKING:
    from clipaudit.rules.schema import Pack

# Metadata keys a dataset may carry a licence under (first present wins).
LICENCE_META_KEYS = ("license", "licence", "license_url", "LICENSE", "License")
# Placeholders datasets write for "no licence known" (LAION's LICENSE column holds "?").
LICENCE_PLACEHOLDERS = {"?", "unknown", "none", "n/a", "na", "null", "-"}


def _licence(meta: dict[str, Any], xmp_fields: list[str | None]) -> tuple[str | None, str | None]:
    """(raw licence text, where it came from): the dataset's metadata first, then XMP."""
    for key in LICENCE_META_KEYS:
        value = clean_text(meta.get(key)) if isinstance(meta, dict) else None
        if value and value.lower() not in LICENCE_PLACEHOLDERS:
            return value, "meta"
    for value in xmp_fields:
        if value and parse_licence(value) is not None:
            return value, "xmp"
    return None, None


@register_stage("rights")
class RightsStage(Stage):
    columns = (
        "rights_copyright",
        "rights_creator",
        "rights_credit",
        "rights_usage_terms",
        "rights_web_statement",
        "rights_marked",
        "rights_found",
        "rights_error",
        "xmp_data_mining",
        "xmp_source_type",
        "xmp_tdm_reservation",
        "xmp_tdm_policy",
        "caption_copyright",
        "license_raw",
        "license_id",
        "license_nc",
        "license_nd",
        "license_sa",
        "license_source",
        "url_host",
        "domain",
        "url_norm",
        "image_sha256",
    )

    def setup(self, ctx: StageContext) -> None:
        url_parts("https://example.com/")  # load the suffix snapshot once, not per thread

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        emb = read_embedded(sample.image)
        raw, source = _licence(sample.meta, [emb.cc_license, emb.usage_terms, emb.web_statement])
        lic: Licence | None = parse_licence(raw)
        parts = url_parts(sample.url)
        return (
            emb.copyright,
            emb.creator,
            emb.credit,
            emb.usage_terms,
            emb.web_statement,
            emb.marked,
            ",".join(emb.found) or None,
            emb.error,
            emb.data_mining,
            emb.source_type,
            emb.tdm_reservation,
            emb.tdm_policy,
            caption_has_copyright(sample.caption),
            raw,
            lic.id if lic else None,
            lic.nc if lic else None,
            lic.nd if lic else None,
            lic.sa if lic else None,
            source,
            parts.host,
            parts.domain,
            parts.url,
            hashlib.sha256(sample.image).hexdigest() if sample.image else None,
        )

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(self.columns)}

    def provenance(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "tldextract": version("tldextract"),
            "suffix_list": "tldextract's bundled snapshot (no network, no cache)",
            "xmp_parser": f"defusedxml {version('defusedxml')} (DTD, entities refused)",
        }


@register_stage("c2pa")
class C2paStage(Stage):
    columns = (
        "c2pa_status",
        "c2pa_present",
        "c2pa_valid",
        "c2pa_validation",
        "c2pa_source_type",
        "c2pa_ingredient_source_type",
        "c2pa_ingredients",
        "c2pa_ingredient_failures",
        "c2pa_ai_generated",
        "c2pa_training",
        "c2pa_training_mining",
        "c2pa_generator",
        "c2pa_signer",
        "c2pa_error",
    )

    def __init__(self) -> None:
        self.anchors: TrustAnchors | None = None

    def setup(self, ctx: StageContext) -> None:
        raw = ctx.options.get("c2pa_trust_anchors")
        self.anchors = load_trust_anchors(str(raw)) if raw else None

    def prepare(self, sample: Sample, decoded: Decoded) -> tuple[Any, ...]:
        info = read_c2pa(sample.image, self.anchors)
        types = info.source_types or []
        inherited = info.ingredient_source_types or []
        training = info.training
        return (
            info.status,
            info.present,
            info.valid,
            info.validation,
            ",".join(types) or None,
            ",".join(inherited) or None,
            info.ingredients if info.status == "present" else None,
            ",".join(info.ingredient_failures or []) or None,
            (
                any(t in DEFAULT_AI_SOURCE_TYPES for t in types + inherited)
                if info.status == "present"
                else None
            ),
            training_answer(training),
            ",".join(f"{k}={v}" for k, v in sorted(training.items())) if training else None,
            info.generator,
            info.signer,
            info.error,
        )

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        rows = self.prepared_for(batch)
        return {c: [r[k] for r in rows] for k, c in enumerate(self.columns)}

    def provenance(self) -> dict[str, Any]:
        a = self.anchors
        trust = (
            {"source": a.source, "certificates": a.certificates, "sha256": a.sha256} if a else None
        )
        return {"c2pa": c2pa_version(), "settings": OFFLINE_SETTINGS, "trust_anchors": trust}


# --- decide: reason codes per row -------------------------------------------------------


def _true(v: Any) -> bool:
    # A bool column without nulls reads back as numpy bools, with nulls as Python objects.
    return v is not None and bool(v)


_NOTICE_COLUMNS = {
    "copyright": "rights_copyright",
    "creator": "rights_creator",
    "credit": "rights_credit",
    "usage_terms": "rights_usage_terms",
}


@register_rule("rights")
def rights_reasons(sig: Signals, pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    r = pack.rights
    notice_cols = [column(sig, _NOTICE_COLUMNS[f]) for f in r.notice_fields if f != "marked"]
    marked = column(sig, "rights_marked") if "marked" in r.notice_fields else None
    dmi, optout = column(sig, "xmp_data_mining"), set(r.data_mining_optout)
    tdm = column(sig, "xmp_tdm_reservation")
    xmp_type, ai_types = column(sig, "xmp_source_type"), set(r.ai_source_types)
    caption, error = column(sig, "caption_copyright"), column(sig, "rights_error")
    out: list[list[str]] = []
    for i in range(n):
        codes = []
        if any(c[i] for c in notice_cols) or (marked is not None and _true(marked[i])):
            codes.append("copyright_notice")
        if dmi[i] is not None and dmi[i] in optout:
            codes.append("optout_iptc")
        if tdm[i] == 1:  # TDMRep's reservation carried in the file
            codes.append("optout_tdmrep")
        if xmp_type[i] is not None and xmp_type[i] in ai_types:
            codes.append("ai_generated")
        if _true(caption[i]):
            codes.append("caption_copyright")
        if error[i] is not None:
            codes.append("rights_metadata_malformed")
        out.append(codes)
    return out


def _parts(host: Any, domain: Any) -> UrlParts:
    """Stored host and domain back to the parts ``match_domain`` reads (IPs have no label)."""
    is_ip = isinstance(domain, str) and (":" in domain or domain.replace(".", "").isdigit())
    label = domain.split(".")[0] if isinstance(domain, str) and not is_ip else None
    return UrlParts(host, domain, label, None)


def source_list(host: Any, domain: Any, pack: Pack) -> str | None:
    """Which pack list a url's host falls under: ``stock``, ``news`` or ``None``."""
    parts = _parts(host, domain)
    if match_domain(parts, pack.sources.stock_domains):
        return "stock"
    if match_domain(parts, pack.sources.news_domains):
        return "news"
    return None


@register_rule("sources")
def sources_reasons(sig: Signals, pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    s = pack.sources
    host, domain = column(sig, "url_host"), column(sig, "domain")
    url, sha = column(sig, "url_norm"), column(sig, "image_sha256")
    nc, nd = column(sig, "license_nc"), column(sig, "license_nd")
    block_urls, block_sha = set(s.block_urls), set(s.block_sha256)
    memo: dict[tuple[Any, Any], tuple[str | None, bool]] = {}
    out: list[list[str]] = []
    for i in range(n):
        key = (host[i], domain[i])
        if key not in memo:
            listed = source_list(host[i], domain[i], pack) if host[i] is not None else None
            blocked = host[i] is not None and bool(
                match_domain(_parts(host[i], domain[i]), s.block_domains)
            )
            memo[key] = (listed, blocked)
        listed, blocked = memo[key]
        codes = []
        if listed is not None:
            codes.append("copyright_risk_domain")
        if (
            blocked
            or (url[i] is not None and url[i] in block_urls)
            or (sha[i] is not None and sha[i] in block_sha)
        ):
            codes.append("blocked_source")
        if _true(nc[i]):
            codes.append("license_nc")
        if _true(nd[i]):
            codes.append("license_nd")
        out.append(codes)
    return out


def _c2pa_training(value: Any) -> dict[str, str] | None:
    if not isinstance(value, str) or not value:
        return None
    return dict(p.split("=", 1) for p in value.split(",") if "=" in p)


@register_rule("c2pa")
def c2pa_reasons(sig: Signals, pack: Pack) -> list[list[str]]:
    n = len(sig["id"])
    r = pack.rights
    status, validation = column(sig, "c2pa_status"), column(sig, "c2pa_validation")
    types, mining = column(sig, "c2pa_source_type"), column(sig, "c2pa_training_mining")
    inherited = column(sig, "c2pa_ingredient_source_type")  # from the manifests edited
    broken = column(sig, "c2pa_ingredient_failures")
    ai_types, optout_uses = set(r.ai_source_types), set(r.training_optout_uses)
    out: list[list[str]] = []
    for i in range(n):
        codes = []
        stated = f"{types[i] or ''},{inherited[i] or ''}".split(",")
        if ai_types & set(stated):
            codes.append("ai_generated")
        answer = training_answer(_c2pa_training(mining[i]), r.training_entries)
        if answer is not None and answer in optout_uses:
            codes.append("optout_c2pa")
        # The manifest itself, or one it was edited from as the editor's tool found it.
        if status[i] == "malformed" or validation[i] == "Invalid" or broken[i]:
            codes.append("c2pa_invalid")
        if status[i] == "remote_unverifiable":
            codes.append("c2pa_unverifiable")
        out.append(codes)
    return out


# --- decide: stats ----------------------------------------------------------------------


def _counts(values: Any, top: int | None = None) -> dict[str, int]:
    c = Counter(str(v) for v in values if v is not None)
    return dict(c.most_common(top))


def _listed(values: Any) -> Counter[str]:
    """How often each name appears in a column of comma-joined names."""
    counts: Counter[str] = Counter()
    for v in values:
        if v:
            counts.update(str(v).split(","))
    return counts


def _has(reasons: list[list[str]], code: str) -> int:
    return sum(code in r for r in reasons)


@register_stats("rights")
def rights_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if "rights_found" not in sig:
        return {"computed": False}
    n = len(sig["id"])
    found = column(sig, "rights_found")
    fields: Counter[str] = Counter()
    for v in found:
        if v:
            fields.update(str(v).split(","))
    with_any = sum(1 for v in found if v)
    return {
        "computed": True,
        "samples": n,
        "with_rights_metadata": with_any,
        "rights_coverage": round(with_any / n, 4) if n else None,
        "by_field": dict(sorted(fields.items())),
        "copyright_notice": _has(reasons, "copyright_notice"),
        "data_mining": _counts(column(sig, "xmp_data_mining")),
        "optout_iptc": _has(reasons, "optout_iptc"),
        "tdm_reservation_in_file": sum(1 for v in column(sig, "xmp_tdm_reservation") if v == 1),
        "caption_copyright": _has(reasons, "caption_copyright"),
        "metadata_errors": _counts(column(sig, "rights_error")),
    }


@register_stats("sources")
def sources_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    if "domain" not in sig:
        return {"computed": False}
    n = len(sig["id"])
    top = pack.sources.top_n
    host, domain = column(sig, "url_host"), column(sig, "domain")
    lists = Counter(
        source_list(h, d, pack) for h, d in zip(host, domain, strict=True) if h is not None
    )
    ids, nc, nd, sa = (
        column(sig, c) for c in ("license_id", "license_nc", "license_nd", "license_sa")
    )
    raw = column(sig, "license_raw")
    return {
        "computed": True,
        "samples": n,
        "with_domain": sum(1 for d in domain if d is not None),
        "without_url_or_domain": sum(1 for d in domain if d is None),
        "distinct_domains": len({d for d in domain if d is not None}),
        "domains": _counts(domain, top),
        "on_lists": {"stock": lists.get("stock", 0), "news": lists.get("news", 0)},
        "copyright_risk_domain": _has(reasons, "copyright_risk_domain"),
        "blocked_source": _has(reasons, "blocked_source"),
        "licences": _counts(ids, top),
        "licence_coverage": round(sum(1 for v in raw if v) / n, 4) if n else None,
        "licence_unrecognised": sum(1 for r, i in zip(raw, ids, strict=True) if r and i is None),
        "licence_flags": {
            "nc": sum(_true(v) for v in nc),
            "nd": sum(_true(v) for v in nd),
            "sa": sum(_true(v) for v in sa),
        },
    }


@register_stats("c2pa")
def c2pa_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    n = len(sig["id"])
    ai = _has(reasons, "ai_generated")
    base: dict[str, Any] = {
        "ai_generated": ai,
        "ai_generated_share": round(ai / n, 4) if n else None,
    }
    if "c2pa_status" not in sig:
        return {"computed": False, **base}
    types, inherited = (
        _listed(column(sig, c)) for c in ("c2pa_source_type", "c2pa_ingredient_source_type")
    )
    return {
        "computed": True,
        **base,
        "status": _counts(column(sig, "c2pa_status")),
        "validation": _counts(column(sig, "c2pa_validation")),
        "source_types": dict(sorted(types.items())),
        "ingredient_source_types": dict(sorted(inherited.items())),
        "training": _counts(column(sig, "c2pa_training")),
        "optout_c2pa": _has(reasons, "optout_c2pa"),
        "unverifiable": _has(reasons, "c2pa_unverifiable"),
    }
