"""Rules-pack sections for embedded rights metadata, C2PA, sources and licences signals.

Lists here are policy, not truth: a pack that sets a list replaces the default one (so a
pack extending ``default`` repeats what it keeps). Whether a reason keeps, flags or drops is
the pack's ``actions``; these sections say only what counts as the signal.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from clipaudit.rules.base import Int, Strict

NoticeField = Literal["copyright", "creator", "credit", "usage_terms", "marked"]
Use = Literal["notAllowed", "constrained", "allowed"]
DEFAULT_NOTICE_FIELDS: list[NoticeField] = ["copyright", "marked"]
DEFAULT_OPTOUT_USES: list[Use] = ["notAllowed"]

# PLUS Data Mining values (reference.md): every PROHIBITED variant reserves AI training;
# the SEE… ones point at a constraint no machine can check, so they count as reserved.
DEFAULT_DATA_MINING_OPTOUT = [
    "PROHIBITED-AIMLTRAINING",
    "PROHIBITED-GENAIMLTRAINING",
    "PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "PROHIBITED",
    "PROHIBITED-SEECONSTRAINT",
    "PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
    "PROHIBITED-SEELINKEDRIGHTSEXPR",
]
# IPTC digital source types that mean "made by a trained model"; algorithmicMedia (pure
# algorithm, e.g. a fractal or a test gradient) and compositeSynthetic are not listed.
DEFAULT_AI_SOURCE_TYPES = ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"]

# A bare label matches that registrable name under any public suffix (gettyimages.co.uk);
# an entry with a dot matches that host and its subdomains (stock.adobe.com).
DEFAULT_STOCK_DOMAINS = [
    "shutterstock",
    "gettyimages",
    "istockphoto",
    "stock.adobe.com",
    "alamy",
    "dreamstime",
    "123rf",
    "depositphotos",
    "agefotostock",
    "superstock.com",
    "pond5.com",
    "freepik",
    "vectorstock.com",
    "bigstockphoto.com",
    "canstockphoto",
    "stocksy.com",
    "masterfile.com",
    "photocase.com",
]
DEFAULT_NEWS_DOMAINS = [
    "reuters",
    "apnews.com",
    "ap.org",
    "apimages.com",
    "afp.com",
    "afpforum.com",
    "epa.eu",
    "dpa.com",
    "picture-alliance.com",
    "upi.com",
    "ansa.it",
    "efe.com",
    "xinhuanet.com",
    "kyodonews.net",
    "aap.com.au",
    "pamediagroup.com",
    "tass.com",
]

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _domains(v: list[str]) -> list[str]:
    out = []
    for entry in v:
        d = entry.strip().rstrip(".").lower()
        try:
            d = d.encode("idna").decode("ascii") if not d.isascii() else d
        except UnicodeError:
            d = ""
        if not _DOMAIN.match(d):
            raise ValueError(
                f"{entry!r} is not a domain; write a host such as 'alamy.com' or a bare "
                "name such as 'gettyimages' (no scheme, path or port)"
            )
        out.append(d)
    return out


class RightsRules(Strict):
    """Embedded metadata (EXIF / IPTC / XMP) and C2PA."""

    # Which embedded fields make a ``copyright_notice``: a copyright line (EXIF Copyright,
    # IPTC Copyright Notice, XMP dc:rights) and xmpRights:Marked=True by default; a
    # creator or credit line alone names an author, not a reservation.
    notice_fields: list[NoticeField] = Field(default_factory=lambda: list(DEFAULT_NOTICE_FIELDS))
    # plus:DataMining values (short form, without the DMI- vocabulary prefix) → optout_iptc.
    data_mining_optout: list[str] = Field(default_factory=lambda: list(DEFAULT_DATA_MINING_OPTOUT))
    # IPTC digital source types (C2PA actions or XMP Iptc4xmpExt) → ai_generated.
    ai_source_types: list[str] = Field(default_factory=lambda: list(DEFAULT_AI_SOURCE_TYPES))
    # C2PA / CAWG training-mining entries that speak for AI training, and the uses that
    # reserve it (add "constrained" to treat constrained use as an opt-out).
    training_entries: list[str] = Field(
        default_factory=lambda: ["ai_training", "ai_generative_training"]
    )
    training_optout_uses: list[Use] = Field(default_factory=lambda: list(DEFAULT_OPTOUT_USES))

    @field_validator("training_entries")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        # "cawg.ai_training" and "ai_training" name the same entry.
        return [e.strip().split(".", 1)[-1] for e in v]

    @field_validator("data_mining_optout")
    @classmethod
    def _dmi(cls, v: list[str]) -> list[str]:
        out = []
        for value in v:
            code = value.strip().upper()
            code = code.rsplit("/DMI-", 1)[-1].removeprefix("DMI-")
            if not code:
                raise ValueError(f"{value!r} is not a PLUS Data Mining value")
            out.append(code)
        return out


class SourcesRules(Strict):
    """Url domains against stock / news agency and block lists; licence statistics."""

    stock_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_STOCK_DOMAINS))
    news_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_NEWS_DOMAINS))
    # The user's own block lists → blocked_source.
    block_domains: list[str] = Field(default_factory=list)
    block_urls: list[str] = Field(default_factory=list)
    block_sha256: list[str] = Field(default_factory=list)
    # Rows in the stats tables of domains and licences.
    top_n: Int = Field(default=20, ge=1, le=1000)

    @field_validator("stock_domains", "news_domains", "block_domains")
    @classmethod
    def _check_domains(cls, v: list[str]) -> list[str]:
        return _domains(v)

    @field_validator("block_sha256")
    @classmethod
    def _sha(cls, v: list[str]) -> list[str]:
        out = [s.strip().lower() for s in v]
        bad = [s for s in out if not _SHA256.match(s)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a sha256 (64 hexadecimal characters)")
        return out

    @field_validator("block_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        from clipaudit.rights.sources import normalise_url

        out = []
        for u in v:
            norm = normalise_url(u)
            if norm is None or "://" not in u:
                raise ValueError(f"{u!r} is not a url; write it in full, e.g. 'https://host/path'")
            out.append(norm)
        return out
