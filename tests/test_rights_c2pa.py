"""C2PA: the three real signed fixtures, no manifest, damaged manifests, a remote manifest
offline (never fetched, answered at once), and the decide rule over the stage's columns."""

from __future__ import annotations

import http.server
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clipaudit.curate.stages.rights import C2paStage, c2pa_reasons
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample
from clipaudit.rights import provenance
from clipaudit.rights.provenance import read_c2pa, summarise, training_answer
from clipaudit.rules.schema import load_pack

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "c2pa"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "C.jpg").is_file(), reason=f"C2PA fixtures not found at {FIXTURES}"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_no_manifest_file_is_a_value_both_with_and_without_the_marker_shortcut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = read_c2pa(fixture("A.jpg"))
    assert (info.status, info.present, info.valid, info.error) == ("no_manifest", False, None, None)
    # The native reader, asked directly, agrees with the byte-marker shortcut.
    monkeypatch.setattr(provenance, "MARKERS", (b"",))
    info = read_c2pa(fixture("A.jpg"))
    assert (info.status, info.present) == ("no_manifest", False)


def test_signed_manifest_with_created_action() -> None:
    info = read_c2pa(fixture("C.jpg"))
    assert info.status == "present" and info.present
    assert (info.validation, info.valid) == ("Valid", True)
    assert info.source_types == ["algorithmicMedia"]  # a generated test gradient
    assert info.training is None
    assert info.generator is not None and "make_test_images" in info.generator


def test_cawg_training_mining_says_not_allowed() -> None:
    info = read_c2pa(fixture("C_with_CAWG_data.jpg"))
    assert (info.status, info.validation) == ("present", "Valid")
    assert info.source_types == ["digitalCapture"]
    assert info.training == {"ai_generative_training": "notAllowed", "ai_inference": "notAllowed"}
    assert training_answer(info.training) == "notAllowed"
    assert training_answer(info.training, ["ai_inference"]) == "notAllowed"
    assert training_answer(info.training, ["data_mining"]) is None


def test_damaged_manifests_are_values() -> None:
    data = fixture("C.jpg")
    half = read_c2pa(data[: len(data) // 2])  # manifest intact, asset hash broken
    assert (half.status, half.validation, half.valid) == ("present", "Invalid", False)
    j = data.find(b"jumb")
    garbled = bytearray(data)
    garbled[j + 200 : j + 260] = b"\x00" * 60
    bad = read_c2pa(bytes(garbled))
    assert (bad.status, bad.present, bad.validation) == ("malformed", True, None)
    assert bad.error
    short = read_c2pa(data[:200])
    assert short.status == "malformed"
    for junk in (None, b"", b"c2pa" * 10, b"jumb\x00\x00"):
        assert read_c2pa(junk).status in ("no_manifest", "unsupported")


class _Counting(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        time.sleep(5)  # were it fetched, the read would hang visibly
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_remote_manifest_is_unverifiable_at_once_and_never_fetched() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/manifest.c2pa"
        xmp = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            f'xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/>'
            "</rdf:RDF></x:xmpmeta>"
        )
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, format="JPEG", xmp=xmp.encode())
        t0 = time.perf_counter()
        info = read_c2pa(buf.getvalue())
        elapsed = time.perf_counter() - t0
    finally:
        server.shutdown()
        server.server_close()
    assert info.status == "remote_unverifiable" and info.present
    assert info.error is not None and "remote" in info.error.lower()
    assert _Counting.hits == 0
    assert elapsed < 1.0, f"remote manifest took {elapsed:.2f}s"


def test_reader_is_safe_on_worker_threads() -> None:
    names = ["A.jpg", "C.jpg", "C_with_CAWG_data.jpg"] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda n: read_c2pa(fixture(n)).status, names))
    assert got == ["no_manifest", "present", "present"] * 4


def _store(label: str, source: str, entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "active_manifest": "m",
        "validation_state": "Trusted",
        "manifests": {
            "m": {
                "claim_generator_info": [{"name": "gen"}],
                "assertions": [
                    {
                        "label": "c2pa.actions",
                        "data": {
                            "actions": [{"action": "c2pa.created", "digitalSourceType": source}]
                        },
                    },
                    {"label": label, "data": {"entries": entries}},
                ],
            }
        },
    }


def test_summary_of_ai_generated_and_older_training_assertion() -> None:
    src = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    info = summarise(
        _store(
            "c2pa.training-mining",
            src,
            {"c2pa.ai_training": {"use": "constrained"}, "c2pa.data_mining": {"use": "allowed"}},
        )
    )
    assert info.source_types == ["trainedAlgorithmicMedia"]
    assert (info.valid, info.generator) == (True, "gen")
    assert info.training == {"ai_training": "constrained", "data_mining": "allowed"}
    assert training_answer(info.training) == "constrained"
    assert summarise({"manifests": {}}).status == "malformed"


def _signals(samples: list[Sample]) -> dict[str, np.ndarray]:
    stage = C2paStage()
    rows = [stage.prepare(s, decode_image(s.image)) for s in samples]
    sig = {"id": np.array([s.id for s in samples], dtype=object)}
    for k, c in enumerate(stage.columns):
        sig[c] = np.array([r[k] for r in rows], dtype=object)
    return sig


def test_stage_columns_and_rule(tmp_path: Path) -> None:
    data = fixture("C.jpg")
    samples = [
        Sample("a", fixture("A.jpg")),
        Sample("c", data),
        Sample("cawg", fixture("C_with_CAWG_data.jpg")),
        Sample("half", data[: len(data) // 2]),
    ]
    sig = _signals(samples)
    assert list(sig["c2pa_status"]) == ["no_manifest", "present", "present", "present"]
    assert list(sig["c2pa_present"]) == [False, True, True, True]
    assert list(sig["c2pa_valid"]) == [None, True, True, False]
    assert list(sig["c2pa_source_type"]) == [
        None,
        "algorithmicMedia",
        "digitalCapture",
        "algorithmicMedia",
    ]
    assert list(sig["c2pa_ai_generated"]) == [None, False, False, False]
    assert list(sig["c2pa_training"]) == [None, None, "notAllowed", None]
    assert (
        sig["c2pa_training_mining"][2]
        == "ai_generative_training=notAllowed,ai_inference=notAllowed"
    )
    reasons = c2pa_reasons(sig, load_pack("default"))
    assert reasons == [[], [], ["optout_c2pa"], ["c2pa_invalid"]]
    # The pack decides: algorithmicMedia as AI, and only inference entries as opt-outs.
    pack_file = tmp_path / "p.yaml"
    pack_file.write_text(
        "name: t\nextends: default\nrights:\n"
        "  ai_source_types: [algorithmicMedia, trainedAlgorithmicMedia]\n"
        "  training_entries: [ai_training]\n",
        encoding="utf-8",
    )
    reasons = c2pa_reasons(sig, load_pack(str(pack_file)))
    assert reasons == [[], ["ai_generated"], [], ["ai_generated", "c2pa_invalid"]]
