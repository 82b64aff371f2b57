"""Embedded rights metadata: EXIF, IPTC and XMP in hand-built JPEG / PNG / WebP files,
every PLUS Data Mining value, namespace handling, hostile XML, and caption marks."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from clipaudit.curate.stages.rights import RightsStage, rights_reasons, sources_reasons
from clipaudit.data.decode import decode_image
from clipaudit.data.sample import Sample
from clipaudit.rights.embedded import caption_has_copyright, read_embedded
from clipaudit.rights.xmp import data_mining_code, parse_xmp
from clipaudit.rules.schema import load_pack
from clipaudit.rules.sections.rights import DEFAULT_DATA_MINING_OPTOUT

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DMI = "http://ns.useplus.org/ldf/vocab/DMI-"
ALL_DMI = [
    "UNSPECIFIED",
    "ALLOWED",
    "PROHIBITED-AIMLTRAINING",
    "PROHIBITED-GENAIMLTRAINING",
    "PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "PROHIBITED",
    "PROHIBITED-SEECONSTRAINT",
    "PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
    "PROHIBITED-SEELINKEDRIGHTSEXPR",
]

RICH_XMP = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">
<rdf:Description rdf:about=""
  xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"
  xmlns:cc="http://creativecommons.org/ns#"
  xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"
  xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
  xmpRights:Marked="True"
  plus:DataMining="{DMI}PROHIBITED-GENAIMLTRAINING">
 <dc:rights><rdf:Alt><rdf:li xml:lang="de">Alle Rechte</rdf:li>
   <rdf:li xml:lang="x-default">(c) 2023 Example Press</rdf:li></rdf:Alt></dc:rights>
 <dc:creator><rdf:Seq><rdf:li>Ana Lens</rdf:li><rdf:li>Bo Shutter</rdf:li></rdf:Seq></dc:creator>
 <xmpRights:UsageTerms><rdf:Alt><rdf:li xml:lang="x-default">Editorial use only</rdf:li>
   </rdf:Alt></xmpRights:UsageTerms>
 <xmpRights:WebStatement>https://example.com/licensing</xmpRights:WebStatement>
 <cc:license rdf:resource="https://creativecommons.org/licenses/by-nc-nd/4.0/"/>
 <Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def dmi_xmp(
    value: str, prefix: str = "plus", ns: str = "http://ns.useplus.org/ldf/xmp/1.0/"
) -> str:
    return (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
        f'<rdf:Description rdf:about="" xmlns:{prefix}="{ns}" '
        f'{prefix}:DataMining="{DMI}{value}"/></rdf:RDF></x:xmpmeta>'
    )


def iptc_app13(records: dict[int, bytes]) -> bytes:
    """A JPEG APP13 segment: Photoshop IRB 0x0404 holding IPTC-IIM record-2 datasets."""
    iim = b"".join(
        b"\x1c\x02" + bytes([k]) + struct.pack(">H", len(v)) + v for k, v in records.items()
    )
    if len(iim) % 2:
        iim += b"\x00"
    irb = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    body = b"Photoshop 3.0\x00" + irb
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def encode(fmt: str, exif: dict[int, str] | None = None, xmp: str | None = None) -> bytes:
    im = Image.new("RGB", (48, 32), (120, 80, 40))
    kw: dict[str, object] = {}
    if exif:
        e = Image.Exif()
        for k, v in exif.items():
            e[k] = v
        kw["exif"] = e.tobytes()
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngInfo()
        if xmp is not None:
            info.add_itxt("XML:com.adobe.xmp", xmp, zip=True)  # compressed: no byte scan
        im.save(buf, format="PNG", pnginfo=info, **kw)
    else:
        if xmp is not None:
            kw["xmp"] = xmp.encode("utf-8")
        im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_and_xmp_in_each_container(fmt: str) -> None:
    data = encode(fmt, {0x8298: "(c) 2024 StockPix Ltd.", 0x013B: "J. Photographer"}, RICH_XMP)
    got = read_embedded(data)
    assert got.error is None
    # EXIF wins over XMP for the copyright line and the creator.
    assert got.copyright == "(c) 2024 StockPix Ltd."
    assert got.creator == "J. Photographer"
    assert got.usage_terms == "Editorial use only"
    assert got.web_statement == "https://example.com/licensing"
    assert got.marked is True
    assert got.cc_license == "https://creativecommons.org/licenses/by-nc-nd/4.0/"
    assert got.data_mining == "PROHIBITED-GENAIMLTRAINING"
    assert got.source_type == "trainedAlgorithmicMedia"
    assert {"exif:Copyright", "exif:Artist", "xmp:dc:rights", "xmp:plus:DataMining"} <= set(
        got.found
    )


def test_xmp_alone_gives_rights_alt_default_and_creator_seq() -> None:
    got = read_embedded(encode("JPEG", xmp=RICH_XMP))
    assert got.copyright == "(c) 2023 Example Press"  # the x-default alternative
    assert got.creator == "Ana Lens; Bo Shutter"


def test_exif_utf8_and_pillow_ascii_both_read() -> None:
    e = Image.Exif()
    e[0x8298] = "© 2024 Ünal".encode()  # UTF-8 bytes, as exiftool writes them
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", exif=e.tobytes())
    assert read_embedded(buf.getvalue()).copyright == "© 2024 Ünal"


def test_iptc_byline_credit_copyright_in_jpeg_app13() -> None:
    jpeg = encode("JPEG")
    app13 = iptc_app13({80: b"Jane Doe", 110: b"Agency Photo", 116: "© Jane Doe 2021".encode()})
    data = jpeg[:2] + app13 + jpeg[2:]
    got = read_embedded(data)
    assert (got.creator, got.credit, got.copyright) == (
        "Jane Doe",
        "Agency Photo",
        "© Jane Doe 2021",
    )
    assert got.found == ["iptc:By-line", "iptc:Credit", "iptc:CopyrightNotice"]
    assert got.error is None


@pytest.mark.parametrize("declared", [0x7FFFFFFF, 0xFFFFFFFF, 40])
def test_an_iptc_resource_longer_than_its_segment_is_malformed(declared: int) -> None:
    """Pillow cuts an 8BIM resource at its segment's end and reads the rest as if whole: a
    declared length of 0x7FFFFFFF was accepted silently."""
    jpeg = encode("JPEG")
    app13 = iptc_app13({80: b"Jane Doe"})  # 12 bytes of IIM: 40 runs past the segment too
    at = app13.index(b"8BIM") + 8
    app13 = app13[:at] + struct.pack(">I", declared) + app13[at + 4 :]
    got = read_embedded(jpeg[:2] + app13 + jpeg[2:])
    assert got.errors == ["iptc_malformed"]
    assert got.creator == "Jane Doe"  # what could be read is still reported


@pytest.mark.parametrize("value", ALL_DMI)
def test_every_data_mining_value(value: str) -> None:
    got = read_embedded(encode("JPEG", xmp=dmi_xmp(value)))
    assert got.data_mining == value
    # The default pack counts exactly the PROHIBITED family as an opt-out.
    assert (value in DEFAULT_DATA_MINING_OPTOUT) == value.startswith("PROHIBITED")


def test_namespace_not_prefix_decides() -> None:
    # Any prefix bound to the PLUS namespace is PLUS; "plus" bound elsewhere is not.
    other_prefix = parse_xmp(dmi_xmp("PROHIBITED", prefix="ldf"))
    assert data_mining_code(other_prefix.get("data_mining")) == "PROHIBITED"
    wrong_ns = parse_xmp(dmi_xmp("PROHIBITED", ns="http://example.com/not-plus/"))
    assert wrong_ns.get("data_mining") is None and wrong_ns.error is None
    # The value may also be an element with rdf:resource.
    element = (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
        '<rdf:Description xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/">'
        f'<plus:DataMining rdf:resource="{DMI}PROHIBITED-AIMLTRAINING"/>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert parse_xmp(element).get("data_mining") == f"{DMI}PROHIBITED-AIMLTRAINING"


def _plus(body: str) -> str:
    return (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">{body}'
        "</rdf:RDF></x:xmpmeta>"
    )


PLUS_NS = 'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"'


@pytest.mark.parametrize(
    "xmp",
    [
        # The vocabulary URI in other cases and schemes: the prefix was stripped only as typed.
        dmi_xmp("PROHIBITED-AIMLTRAINING").replace(
            "http://ns.useplus.org/ldf/vocab", "https://ns.useplus.org/ldf/vocab"
        ),
        dmi_xmp("PROHIBITED-AIMLTRAINING").replace(DMI, DMI.upper()),
        dmi_xmp("prohibited-aimltraining").replace(DMI, DMI.lower()),
        # A Bag of values: they were joined into one string no code matched.
        _plus(
            f"<rdf:Description {PLUS_NS}><plus:DataMining><rdf:Bag>"
            f"<rdf:li>{DMI}ALLOWED</rdf:li><rdf:li>{DMI}PROHIBITED-AIMLTRAINING</rdf:li>"
            "</rdf:Bag></plus:DataMining></rdf:Description>"
        ),
        _plus(
            f"<rdf:Description {PLUS_NS}><plus:DataMining><rdf:Bag>"
            f'<rdf:li rdf:resource="{DMI}PROHIBITED-AIMLTRAINING"/>'
            f'<rdf:li rdf:resource="{DMI}PROHIBITED"/>'
            "</rdf:Bag></plus:DataMining></rdf:Description>"
        ),
        # Two descriptions: the first value stated won, so ALLOWED hid the opt-out.
        _plus(
            f'<rdf:Description {PLUS_NS} plus:DataMining="{DMI}ALLOWED"/>'
            f'<rdf:Description {PLUS_NS} plus:DataMining="{DMI}PROHIBITED-AIMLTRAINING"/>'
        ),
    ],
    ids=["https", "upper", "lower", "bag-allowed-first", "bag-two-prohibited", "two-descriptions"],
)
def test_a_stated_prohibition_wins_in_any_spelling(xmp: str) -> None:
    got = read_embedded(encode("JPEG", xmp=xmp))
    assert got.data_mining == "PROHIBITED-AIMLTRAINING", got.data_mining
    assert got.data_mining in DEFAULT_DATA_MINING_OPTOUT


def test_allowed_alone_stays_allowed_and_text_about_a_code_is_not_one() -> None:
    two = _plus(
        f'<rdf:Description {PLUS_NS} plus:DataMining="{DMI}UNSPECIFIED"/>'
        f'<rdf:Description {PLUS_NS} plus:DataMining="{DMI}ALLOWED"/>'
    )
    assert read_embedded(encode("JPEG", xmp=two)).data_mining == "UNSPECIFIED"
    assert data_mining_code("see DMI-PROHIBITED in the terms") == "SEE DMI-PROHIBITED IN THE TERMS"


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE x:xmpmeta [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + f']><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
    '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:rights="&j;"/>'
    "</rdf:RDF></x:xmpmeta>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE x:xmpmeta [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
    f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
    '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:rights="&ext;"/>'
    "</rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize("packet", [BOMB, EXTERNAL], ids=["billion-laughs", "external-entity"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_hostile_xmp_is_a_value_and_fast(packet: str, fmt: str) -> None:
    data = encode(fmt, {0x8298: "Owner"}, packet)
    t0 = time.perf_counter()
    got = read_embedded(data)
    elapsed = time.perf_counter() - t0
    assert got.error == "xmp_forbidden"
    assert got.copyright == "Owner"  # EXIF still read; nothing from the refused XMP
    assert "root:" not in (got.copyright or "")
    assert elapsed < 0.5, f"hostile XMP took {elapsed:.3f}s"


def test_broken_xmp_and_broken_bytes_are_values() -> None:
    broken = encode("JPEG", xmp='<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>')
    assert read_embedded(broken).error == "xmp_malformed"
    # Not an image at all, but carrying a plain XMP packet: the byte scan still reads it.
    junk = b"\x00garbage" + dmi_xmp("PROHIBITED").encode() + b"tail"
    got = read_embedded(junk)
    assert got.data_mining == "PROHIBITED" and got.error is None
    for nothing in (None, b"", b"\xff\xd8\xff\xe1\x00\x02"):
        got = read_embedded(nothing)
        assert got.copyright is None and got.data_mining is None


def test_truncated_jpeg_keeps_its_metadata() -> None:
    data = encode("JPEG", {0x8298: "Kept Notice"}, dmi_xmp("PROHIBITED-AIMLTRAINING"))
    got = read_embedded(data[: len(data) // 2])
    assert (got.copyright, got.data_mining) == ("Kept Notice", "PROHIBITED-AIMLTRAINING")


def test_control_characters_and_length_are_bounded() -> None:
    data = encode("JPEG", {0x8298: "A\x00B\x07C" + "x" * 5000})
    got = read_embedded(data)
    assert got.copyright is not None and len(got.copyright) <= 500
    assert got.copyright.startswith("A; B C")  # NUL splits EXIF's two copyrights


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("a red car on a road © StockPix", True),
        ("Copyright 2020 Jane", True),
        ("copyrighted material", True),
        ("(c) 2019 Someone", True),
        ("(C) Example Corp", True),
        ("All Rights Reserved.", True),
        # As it reads on screen: zero-width characters and full-width letters hide nothing.
        ("Copy\u200bright 2020 Jane", True),
        ("all righ\u00adts reserved", True),
        ("\uff23\uff4f\uff50\uff59\uff52\uff49\uff47\uff48\uff54 2021", True),
        ("(c)\u2060 2019 Someone", True),
        ("options (a), (b) and (c) are shown", False),
        ("a cat on a mat", False),
        ("", False),
        (None, False),
    ],
)
def test_caption_marks(caption: str | None, expected: bool) -> None:
    assert caption_has_copyright(caption) is expected


def _rights_signals(samples: list[Sample]) -> dict[str, np.ndarray]:
    stage = RightsStage()
    rows = [stage.prepare(s, decode_image(s.image)) for s in samples]
    sig = {"id": np.array([s.id for s in samples], dtype=object)}
    for k, c in enumerate(stage.columns):
        sig[c] = np.array([r[k] for r in rows], dtype=object)
    return sig


def test_stage_columns_and_rules(tmp_path: Path) -> None:
    creator_only = encode("JPEG", {0x013B: "Only An Author"})
    marked_xmp = RICH_XMP.replace('plus:DataMining="', 'plus:OtherThing="')
    samples = [
        Sample(
            "plain", encode("JPEG"), "a cat", "https://photos.example.org/1.jpg", {"LICENSE": "?"}
        ),
        Sample("creator", creator_only, "a dog", "https://www.shutterstock.com/x.jpg"),
        Sample("rich", encode("PNG", xmp=marked_xmp), "a car © Me", None),
        Sample("bomb", encode("WEBP", xmp=BOMB), "a tree", "not a url"),
        Sample(
            "meta", encode("JPEG", xmp=RICH_XMP), "x", "https://apnews.com/a", {"license": "cc0"}
        ),
    ]
    sig = _rights_signals(samples)
    assert list(sig["rights_creator"]) == [
        None,
        "Only An Author",
        "Ana Lens; Bo Shutter",
        None,
        "Ana Lens; Bo Shutter",
    ]
    assert list(sig["rights_marked"]) == [None, None, True, None, True]
    assert list(sig["xmp_data_mining"]) == [None, None, None, None, "PROHIBITED-GENAIMLTRAINING"]
    assert list(sig["rights_error"]) == [None, None, None, "xmp_forbidden", None]
    # The licence: dataset metadata first, else the XMP cc:license.
    assert list(sig["license_id"]) == [None, None, "CC-BY-NC-ND-4.0", None, "CC0-1.0"]
    assert list(sig["license_source"]) == [None, None, "xmp", None, "meta"]
    assert list(sig["domain"]) == ["example.org", "shutterstock.com", None, None, "apnews.com"]
    assert len(sig["image_sha256"][0]) == 64
    pack = load_pack("default")
    assert rights_reasons(sig, pack) == [
        [],
        [],  # a creator line alone is not a notice by default
        ["copyright_notice", "ai_generated", "caption_copyright"],
        ["rights_metadata_malformed"],
        ["copyright_notice", "optout_iptc", "ai_generated"],
    ]
    assert sources_reasons(sig, pack) == [
        [],
        ["copyright_risk_domain"],
        ["license_nc", "license_nd"],
        [],
        ["copyright_risk_domain"],
    ]
    strict_file = tmp_path / "p.yaml"
    strict_file.write_text(
        "name: t\nextends: default\nrights:\n  notice_fields: [creator]\n"
        "  data_mining_optout: [PROHIBITED-AIMLTRAINING]\n  ai_source_types: []\n",
        encoding="utf-8",
    )
    assert rights_reasons(sig, load_pack(str(strict_file))) == [
        [],
        ["copyright_notice"],
        ["copyright_notice", "caption_copyright"],
        ["rights_metadata_malformed"],
        ["copyright_notice"],
    ]


def tdm_xmp(body: str, ns: str = "http://www.w3.org/ns/tdmrep/") -> str:
    return (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
        f'<rdf:Description rdf:about="" xmlns:tdm="{ns}" {body}</rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
    )


@pytest.mark.parametrize(
    ("xmp", "reservation", "policy"),
    [
        # As the W3C report writes it into PDFs: elements in the tdm namespace.
        (
            tdm_xmp("><tdm:reservation>1</tdm:reservation>"
                    "<tdm:policy>https://pub.example/tdm.json</tdm:policy>"),
            1,
            "https://pub.example/tdm.json",
        ),
        (tdm_xmp('tdm:reservation="1">', "http://www.w3.org/ns/tdmrep#"), 1, None),
        (tdm_xmp('tdm:reservation=" 0 ">', "http://www.w3.org/ns/tdmrep"), 0, None),
        (tdm_xmp('tdm:reservation="2">'), None, None),  # a protocol error: unset
        (tdm_xmp('tdm:reservation="1">', "http://example.org/not-tdmrep/"), None, None),
    ],
)  # fmt: skip
def test_tdmrep_reservation_carried_in_the_file(
    xmp: str, reservation: int | None, policy: str | None
) -> None:
    got = read_embedded(encode("JPEG", xmp=xmp))
    assert (got.tdm_reservation, got.tdm_policy, got.error) == (reservation, policy, None)
    sig = _rights_signals([Sample("s", encode("JPEG", xmp=xmp), "a photo of a cat")])
    codes = rights_reasons(sig, load_pack("default"))[0]
    assert ("optout_tdmrep" in codes) is (reservation == 1)


def test_a_damaged_exif_directory_is_recorded_not_printed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An EXIF directory whose entry count lies made Pillow print a UserWarning with its
    source line per sample and was read as no EXIF at all: a copyright could be lost
    unseen. It is now `exif_malformed` (flagged as rights_metadata_malformed)."""
    from clipaudit.data.decode import decode_image

    buf = io.BytesIO()
    broken = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x00" * 20
    Image.new("RGB", (48, 32), (9, 9, 9)).save(buf, format="JPEG", exif=broken)
    data = buf.getvalue()
    assert decode_image(data).error is None
    assert read_embedded(data).errors == ["exif_malformed"]
    # A full camera-like EXIF (orientation, Exif and GPS directories) is not damaged.
    e = Image.Exif()
    e[0x0112], e[0x013B], e[0x8298] = 6, "Ana Lens", "(c) Ana Lens"
    e.get_ifd(0x8769)[0x9003] = "2024:01:01 10:00:00"
    e.get_ifd(0x8825)[0x0001] = "N"
    buf = io.BytesIO()
    Image.new("RGB", (48, 32)).save(buf, format="JPEG", exif=e.tobytes())
    good = read_embedded(buf.getvalue())
    assert good.errors == [] and good.copyright == "(c) Ana Lens"
    assert "Corrupt EXIF" not in capfd.readouterr().err


def test_an_opt_out_in_a_megabyte_packet_is_read() -> None:
    """Photoshop's document history grows XMP past 1 MiB; such a packet was refused as too
    large and its PLUS opt-out went unread (flagged malformed, kept)."""
    history = "".join(f"<rdf:li>xmp.did:{i:032x}</rdf:li>" for i in range(40_000))
    xmp = (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
        '<rdf:Description xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
        f'plus:DataMining="{DMI}PROHIBITED-AIMLTRAINING"><photoshop:DocumentAncestors>'
        f"<rdf:Bag>{history}</rdf:Bag></photoshop:DocumentAncestors>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert len(xmp) > 2 << 20
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp, zip=False)
    buf = io.BytesIO()
    Image.new("RGB", (48, 32)).save(buf, format="PNG", pnginfo=info)
    got = read_embedded(buf.getvalue())
    assert got.data_mining == "PROHIBITED-AIMLTRAINING" and got.errors == []


def test_a_png_whose_compressed_xmp_inflates_past_1_mib_decodes_and_is_read() -> None:
    """Pillow refused the whole PNG (decode_error) when one compressed iTXt chunk inflated
    past 1 MiB: a 5 KB file with a 2.4 MB XMP history lost its image and its opt-out."""
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        'plus:DataMining="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"/>'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:description>" + "history " * 300_000 + "</dc:description></rdf:Description>"
        "</rdf:RDF></x:xmpmeta>"
    )
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp, zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (120, 30, 200)).save(buf, "PNG", pnginfo=info)
    data = buf.getvalue()
    assert len(data) < 20_000 and len(xmp) > 2_000_000
    d = decode_image(data)
    assert d.error is None and d.image is not None and d.image.size == (300, 300)
    got = read_embedded(data)
    assert got.data_mining is not None and data_mining_code(got.data_mining) == "PROHIBITED"
