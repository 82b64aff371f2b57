"""Signing C2PA manifests in the tests: a throwaway CA and signer made with ``cryptography``
(a c2pa-python dependency) at test time, so no key or certificate ships in the repository."""

from __future__ import annotations

import datetime
import functools
import io
import json
from typing import Any

MANIFEST: dict[str, Any] = {
    "claim_generator_info": [{"name": "clipaudit-tests", "version": "1"}],
    "title": "signed test asset",
    "assertions": [
        {
            "label": "c2pa.actions",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/"
                        "trainedAlgorithmicMedia",
                    }
                ]
            },
        },
        {
            "label": "cawg.training-mining",
            "data": {"entries": {"cawg.ai_generative_training": {"use": "notAllowed"}}},
        },
    ],
}


@functools.cache
def _chain() -> tuple[bytes, bytes]:
    """(PEM certificate chain: signer then CA, PEM private key of the signer)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clipaudit tests"),
            ]
        )

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not sign,
            crl_sign=not sign,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Test CA"))
        .issuer_name(name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("Test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


def sign(data: bytes, mime: str, manifest: dict[str, Any] | None = None) -> bytes:
    """``data`` (of media type ``mime``) with a C2PA manifest embedded and signed."""
    import c2pa

    chain, private = _chain()
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None)
    )
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest or MANIFEST)) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def edit_manifest(actions: list[str], extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An editor's manifest: ``actions`` after ``c2pa.opened`` of the parent ingredient, as an
    editing tool writes it (no ``digitalSourceType``), plus ``extra`` assertions."""
    opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
    return {
        "claim_generator_info": [{"name": "clipaudit-tests-editor", "version": "1"}],
        "title": "edited test asset",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [opened, *({"action": a} for a in actions)]},
            },
            *(extra or []),
        ],
    }


def sign_edit(
    parent: bytes, data: bytes, mime: str, manifest: dict[str, Any] | None = None
) -> bytes:
    """``data`` signed as an edit of the signed asset ``parent`` (same media type): the
    parent and its manifest go in as the ``parentOf`` ingredient."""
    import c2pa

    chain, private = _chain()
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None)
    )
    ingredient = {"title": "parent", "relationship": "parentOf", "label": "parent"}
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest or edit_manifest(["c2pa.cropped"]))) as builder:
        builder.add_ingredient(json.dumps(ingredient), mime, io.BytesIO(parent))
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def ca_pem() -> bytes:
    """The throwaway CA's certificate (PEM): what a trust-anchor file of this signer holds."""
    chain, _ = _chain()
    return chain[chain.index(b"-----BEGIN CERTIFICATE-----", 1) :]
