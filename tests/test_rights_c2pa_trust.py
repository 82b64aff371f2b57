"""C2PA trust: without anchors an intact signature is ``Valid`` whoever signed it; with the
CA certificates a user trusts (``--c2pa-trust-anchors``) a manifest signed under one reads
``Trusted`` and one signed by anyone else stays ``Valid``. The signer is named either way."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipaudit.curate.stages import StageContext
from clipaudit.curate.stages.rights import C2paStage
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.rights.provenance import load_trust_anchors, read_c2pa
from tests.c2pa_support import ca_pem, sign
from tests.conftest import cli_batch

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "c2pa"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _other_ca(path: Path) -> Path:
    """A CA certificate that signed nothing here."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_signature_under_a_trusted_ca_reads_trusted_and_the_signer_is_named(
    tmp_path: Path,
) -> None:
    signed = sign(_jpeg(0), "image/jpeg")
    plain = read_c2pa(signed)
    assert (plain.validation, plain.valid) == ("Valid", True)
    assert plain.signer == "clipaudit tests / Test signer"
    (tmp_path / "ours.pem").write_bytes(b"# our CA\n" + ca_pem())
    ours = load_trust_anchors(tmp_path / "ours.pem")
    assert ours.certificates == 1 and len(ours.sha256) == 64
    trusted = read_c2pa(signed, ours)
    assert (trusted.validation, trusted.valid, trusted.signer) == (
        "Trusted",
        True,
        "clipaudit tests / Test signer",
    )
    other = load_trust_anchors(_other_ca(tmp_path / "other.pem"))
    assert read_c2pa(signed, other).validation == "Valid"
    # Both anchors in one bundle: the signer's CA is among them.
    (tmp_path / "both.pem").write_bytes((tmp_path / "other.pem").read_bytes() + ca_pem())
    both = load_trust_anchors(tmp_path / "both.pem")
    assert both.certificates == 2 and read_c2pa(signed, both).validation == "Trusted"
    # The reader keeps one context per setting: the untrusted reading is unchanged after.
    assert read_c2pa(signed).validation == "Valid"


@pytest.mark.skipif(
    not (FIXTURES / "C.jpg").is_file(), reason=f"C2PA fixtures not found at {FIXTURES}"
)
def test_a_real_signed_file_names_its_signer() -> None:
    info = read_c2pa((FIXTURES / "C.jpg").read_bytes())
    assert info.signer == "C2PA Test Signing Cert / C2PA Signer"


def test_the_stage_reads_with_the_runs_anchors(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca_pem())
    stage = C2paStage()
    stage.setup(StageContext(options={"c2pa_trust_anchors": str(tmp_path / "ca.pem")}))
    data = sign(_jpeg(1), "image/jpeg")
    row = dict(
        zip(stage.columns, stage.prepare(Sample("a", data), decode_image(data)), strict=True)
    )
    assert (row["c2pa_validation"], row["c2pa_signer"]) == (
        "Trusted",
        "clipaudit tests / Test signer",
    )
    prov = stage.provenance()["trust_anchors"]
    assert prov["certificates"] == 1 and prov["source"] == str(tmp_path / "ca.pem")
    bare = C2paStage()
    bare.setup(StageContext())
    assert bare.prepare(Sample("a", data), decode_image(data))[3] == "Valid"
    assert bare.provenance()["trust_anchors"] is None


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot be read"), (b"", "hold no PEM certificate"), (b"junk", "hold no PEM")],
)
def test_a_bad_anchor_file_is_one_clear_error(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "anchors.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ClipauditError, match=f"^The C2PA trust anchors '.*anchors.pem' {says}"):
        load_trust_anchors(path)


def test_curate_takes_the_anchors_and_refuses_a_bad_file_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "signed.jpg").write_bytes(sign(_jpeg(2), "image/jpeg"))
    (folder / "plain.jpg").write_bytes(_jpeg(3))
    for stem in ("signed", "plain"):
        (folder / f"{stem}.txt").write_text(f"a {stem} picture of noise", encoding="utf-8")
    (tmp_path / "ca.pem").write_bytes(ca_pem())
    common = ("--format", "imagefolder", "--stages", "quality,c2pa", "--rules", "keep-all")
    (good, _, err), (bad, _, bad_err) = cli_batch(
        [
            ("curate", str(folder), "--out", str(tmp_path / "run"), *common,
             "--c2pa-trust-anchors", str(tmp_path / "ca.pem")),
            ("curate", str(folder), "--out", str(tmp_path / "run2"), *common,
             "--c2pa-trust-anchors", str(tmp_path / "missing.pem")),
        ]
    )  # fmt: skip
    assert good == 0, err
    rows = pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()
    got = {"signed" if "signed" in str(r["id"]) else "plain": r for r in rows}
    assert len(got) == 2
    assert (got["signed"]["c2pa_validation"], got["signed"]["c2pa_signer"]) == (
        "Trusted",
        "clipaudit tests / Test signer",
    )
    assert (got["plain"]["c2pa_status"], got["plain"]["c2pa_validation"]) == ("no_manifest", None)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    anchors = run["stage_provenance"]["c2pa"]["trust_anchors"]
    assert anchors["certificates"] == 1 and anchors["source"] == str(tmp_path / "ca.pem")
    assert bad != 0 and "Traceback" not in bad_err
    assert bad_err.strip().splitlines()[-1].startswith("error: The C2PA trust anchors")
    assert not (tmp_path / "run2" / "decisions.parquet").exists()
