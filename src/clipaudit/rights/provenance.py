"""C2PA Content Credentials with ``c2pa-python``: presence, validation, source type and
training-and-data-mining preferences.

An edit signs a new manifest that names the asset it started from as an ingredient, whose
own manifest travels along in the store; the edit's actions (``c2pa.opened``,
``c2pa.cropped``) carry no ``digitalSourceType``. So a generated picture that was cropped,
resized by a CDN or exported again reads as made by nobody in particular from its active
manifest alone. Source types and training preferences are therefore read over the whole
chain of ingredient manifests too: a source type found only there is listed apart
(``ingredient_source_types``) and still makes the asset AI-generated, and the strictest
training answer for each entry over the chain counts (a derived picture still carries the
ingredient author's work, and their opt-out with it).

Without trust anchors the best a signature can be is ``Valid``: intact, signer unknown
(anyone can make a certificate that names a camera maker). Given the certificates of the CAs
a user trusts (``--c2pa-trust-anchors``, a PEM bundle such as the C2PA trust list), a
manifest signed under one of them reads ``Trusted``; ``c2pa_signer`` names the certificate's
issuer and subject either way.

The reader runs with the network off: ``verify.remote_manifest_fetch`` is on by default in
c2pa-rs (it then fetches the url in XMP ``dcterms:provenance``), so it is switched off, as
are OCSP and every network host. A remote-only manifest is then reported at once as
``remote_unverifiable``. Every other outcome is a per-sample value too: ``no_manifest``,
``malformed`` (present but unreadable), ``unsupported`` (a format c2pa cannot read).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipaudit.rights.embedded import source_type_name
from clipaudit.rights.xmp import clean_text

OFFLINE_SETTINGS: dict[str, Any] = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "core": {"allowed_network_hosts": []},
}
# Byte markers of embedded or referenced manifests: JUMBF boxes ("jumb", label "c2pa"),
# PNG "caBX" and WebP "C2PA" chunks, XMP dcterms:provenance. Bytes with none of these have
# no manifest, so the (slower) native reader is skipped for them.
MARKERS = (b"jumb", b"c2pa", b"C2PA", b"caBX", b"provenance")
TRAINING_LABELS = ("cawg.training-mining", "c2pa.training-mining")
# Most restrictive first: the answer for several entries is the strictest among them.
USE_ORDER = ("notAllowed", "constrained", "allowed")
DEFAULT_TRAINING_ENTRIES = ("ai_training", "ai_generative_training")
MAX_ERROR_CHARS = 200
# Ingredient manifests followed from the active one; real composites hold a few dozen at most.
MAX_CHAIN = 64
# Validation codes about whether the signer is trusted, not whether the claim holds.
TRUST_CODES = ("signingCredential.untrusted", "signingCredential.ocsp")
# c2pa status codes that report a check passed (validated, match, trusted, insideValidity).
_SUCCESS = re.compile(r"\.(validated|match|trusted|insideValidity|skipped)$")


@dataclass
class C2paInfo:
    status: str  # present | no_manifest | malformed | remote_unverifiable | unsupported
    validation: str | None = None  # Valid | Invalid | Trusted (c2pa's validation_state)
    source_types: list[str] | None = None  # IPTC short names from the active manifest
    training: dict[str, str] | None = None  # entry (without namespace) → use, over the chain
    generator: str | None = None
    error: str | None = None
    # Source types stated only by ingredient manifests (the asset an edit started from).
    ingredient_source_types: list[str] | None = None
    ingredients: int = 0  # ingredient manifests found in the store from the active one
    # Validation failures recorded for ingredients (an edit of a tampered asset), trust aside.
    ingredient_failures: list[str] | None = None
    signer: str | None = None  # "issuer / subject common name" of the active manifest's signature

    @property
    def present(self) -> bool:
        return self.status != "no_manifest" and self.status != "unsupported"

    @property
    def valid(self) -> bool | None:
        if self.validation is None:
            return None
        return self.validation in ("Valid", "Trusted")


_local = threading.local()


@dataclass(frozen=True)
class TrustAnchors:
    """CA certificates a signature may chain to, for ``Trusted``: the PEM text and its facts."""

    pem: str
    certificates: int
    sha256: str
    source: str


def load_trust_anchors(path: str | Path) -> TrustAnchors:
    """The CA certificates in the PEM file at ``path``; raises ClipauditError naming the file
    when it cannot be read or holds no certificate."""
    from cryptography import x509

    from clipaudit.errors import ClipauditError

    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ClipauditError(
            f"The C2PA trust anchors {where!r} cannot be read ({exc.strerror or exc}); give a "
            "PEM file of CA certificates."
        ) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ClipauditError(
            f"The C2PA trust anchors {where!r} hold no PEM certificate; give a file of "
            "'-----BEGIN CERTIFICATE-----' blocks (the C2PA trust list, your CAs)."
        )
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)
    digest = hashlib.sha256(pem.encode()).hexdigest()
    return TrustAnchors(pem=pem, certificates=len(certs), sha256=digest, source=where)


def reader_settings(anchors: TrustAnchors | None = None) -> dict[str, Any]:
    """c2pa-rs settings: offline always, the trust anchors where given."""
    if anchors is None:
        return OFFLINE_SETTINGS
    return {**OFFLINE_SETTINGS, "trust": {"trust_anchors": anchors.pem}}


def _context(anchors: TrustAnchors | None) -> Any:
    # One Context per thread and trust setting: prepare() runs on worker threads.
    contexts: dict[str | None, Any] = _local.__dict__.setdefault("contexts", {})
    key = anchors.sha256 if anchors else None
    ctx = contexts.get(key)
    if ctx is None:
        import c2pa

        ctx = contexts[key] = c2pa.Context.from_dict(reader_settings(anchors))
    return ctx


@functools.lru_cache(maxsize=1)
def c2pa_version() -> str:
    import c2pa

    return f"c2pa-python {c2pa.__version__}, c2pa-rs {c2pa.sdk_version()}"


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in manifest.get("assertions") or []:
        if isinstance(a, dict) and str(a.get("label", "")).startswith("c2pa.actions"):
            acts = (a.get("data") or {}).get("actions") or []
            out.extend(x for x in acts if isinstance(x, dict))
    return out


def training_answer(
    training: dict[str, str] | None, entries: tuple[str, ...] | list[str] = DEFAULT_TRAINING_ENTRIES
) -> str | None:
    """The strictest ``use`` among ``entries``; ``None`` when none of them is stated."""
    if not training:
        return None
    uses = [training[e] for e in entries if e in training]
    for use in USE_ORDER:
        if use in uses:
            return use
    return uses[0] if uses else None


def _training(manifest: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for a in manifest.get("assertions") or []:
        if not isinstance(a, dict) or a.get("label") not in TRAINING_LABELS:
            continue
        entries = (a.get("data") or {}).get("entries") or {}
        if not isinstance(entries, dict):
            continue
        for key, val in entries.items():
            use = val.get("use") if isinstance(val, dict) else None
            name = str(key).split(".", 1)[-1][:60]  # cawg.ai_training → ai_training
            if isinstance(use, str):
                # The newer CAWG assertion wins over the older c2pa one for the same entry.
                found.setdefault(name, use[:40])
    return found


def _stricter(a: str, b: str) -> str:
    rank = {u: k for k, u in enumerate(USE_ORDER)}
    return a if rank.get(a, len(USE_ORDER)) <= rank.get(b, len(USE_ORDER)) else b


def _source_types(manifest: dict[str, Any]) -> list[str]:
    types: list[str] = []
    for act in _actions(manifest):
        name = source_type_name(str(act.get("digitalSourceType") or ""))
        if name and name not in types:
            types.append(name)
    return types


def _ingredient_failures(ingredient: dict[str, Any]) -> list[str]:
    """Validation failures the editor's tool recorded for an ingredient's manifest when it
    took it in (c2pa-rs keeps them; the asset's own validation state does not count them).
    An untrusted signer is left out: trust is judged by this run's anchors, not the editor's."""
    results = ingredient.get("validation_results")
    active = results.get("activeManifest") if isinstance(results, dict) else None
    failures = active.get("failure") if isinstance(active, dict) else None
    entries = failures if isinstance(failures, list) else []
    older = ingredient.get("validation_status")  # older stores list codes of every kind here
    if isinstance(older, list):
        entries = entries + [e for e in older if not _SUCCESS.search(str(_code(e)))]
    codes = [str(_code(e))[:80] for e in entries if _code(e)]
    return [c for c in codes if not c.startswith(TRUST_CODES)]


def _code(entry: Any) -> Any:
    return entry.get("code") if isinstance(entry, dict) else None


def _ingredient_manifests(
    manifests: dict[str, Any], active: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The manifests that the active one's ingredients point to, their ingredients' in turn
    (breadth first, each once, at most ``MAX_CHAIN``): the asset's history as signed; and the
    validation failures recorded for those ingredients."""
    seen, queue = {active}, [active]
    out: list[dict[str, Any]] = []
    failures: list[str] = []
    while queue and len(out) < MAX_CHAIN:
        manifest = manifests.get(queue.pop(0))
        if not isinstance(manifest, dict):
            continue
        for ing in manifest.get("ingredients") or []:
            if not isinstance(ing, dict):
                continue
            failures += [c for c in _ingredient_failures(ing) if c not in failures]
            label = ing.get("active_manifest")
            if not isinstance(label, str) or label in seen or label not in manifests:
                continue
            seen.add(label)
            queue.append(label)
            if isinstance(manifests[label], dict):
                out.append(manifests[label])
    return out[:MAX_CHAIN], failures


def summarise(store: dict[str, Any]) -> C2paInfo:
    """A manifest store (``json.loads(reader.json())``) → what the rules need."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest")) if isinstance(manifests, dict) else None
    if not isinstance(active, dict):
        return C2paInfo("malformed", store.get("validation_state"), error="no active manifest")
    types = _source_types(active)
    chain, failures = _ingredient_manifests(manifests, str(store.get("active_manifest")))
    training = _training(active)
    from_ingredients: list[str] = []
    for manifest in chain:
        from_ingredients += [t for t in _source_types(manifest) if t not in types]
        for entry, use in _training(manifest).items():
            training[entry] = _stricter(training[entry], use) if entry in training else use
    gen = active.get("claim_generator")
    if not gen:
        info = active.get("claim_generator_info") or []
        gen = info[0].get("name") if info and isinstance(info[0], dict) else None
    sig = active.get("signature_info")
    signer = None
    if isinstance(sig, dict):
        names = [clean_text(sig.get(k)) for k in ("issuer", "common_name")]
        signer = " / ".join(n for n in names if n) or None
    return C2paInfo(
        "present",
        validation=store.get("validation_state"),
        signer=signer,
        source_types=sorted(types) or None,
        training=training or None,
        generator=clean_text(gen),
        ingredient_source_types=sorted(set(from_ingredients)) or None,
        ingredients=len(chain),
        ingredient_failures=failures or None,
    )


def _error_status(exc: Exception) -> str:
    kind = type(exc).__name__
    text = str(exc)
    if "ManifestNotFound" in kind or text.startswith("ManifestNotFound"):
        return "no_manifest"
    if "Remote" in kind or text.startswith("Remote"):
        return "remote_unverifiable"
    if "NotSupported" in kind or text.startswith("NotSupported"):
        return "unsupported"
    return "malformed"


def read_c2pa(data: bytes | None, anchors: TrustAnchors | None = None) -> C2paInfo:
    """C2PA facts of the encoded asset ``data``, its signature judged against ``anchors``
    where given; never raises for content, never fetches."""
    if not data or not any(m in data for m in MARKERS):
        return C2paInfo("no_manifest")
    import c2pa

    try:
        with c2pa.Reader(None, io.BytesIO(data), context=_context(anchors)) as reader:
            store = json.loads(reader.json())
    except Exception as exc:
        status = _error_status(exc)
        detail = None if status == "no_manifest" else clean_text(str(exc)[:MAX_ERROR_CHARS])
        return C2paInfo(status, error=detail)
    if not isinstance(store, dict):
        return C2paInfo("malformed", error="manifest store is not an object")
    return summarise(store)
