"""The noisy pool: a crawl-like set with planted problems, every one labelled by sample id.

Planted: misaligned captions (swapped in pairs), exact and near duplicates (resize,
re-encode, crop, flip, brightness), visible watermarks, copyright-risk metadata (stock-agency
urls, EXIF Copyright, "©" in captions, XMP ``plus:DataMining`` prohibited, non-commercial
licences), ``X-Robots-Tag: noai`` in captured headers, and SDXL invisible watermark bits.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from clipaudit.data.sample import Sample
from clipaudit.world.scenes import (
    Scene,
    add_watermark,
    objects_scene,
    person_scene,
    rng_for,
)

# The 48-bit message SDXL embeds with imwatermark's dwtDct method.
SDXL_MESSAGE = 0xB3EC907BB19E
SDXL_BITS = [int(b) for b in bin(SDXL_MESSAGE)[2:].zfill(48)]
# Matching bits from which a detector grades the mark "very likely" (reference facts).
SDXL_VERIFIED = 36

STOCK_DOMAINS = (
    "www.shutterstock.com",
    "media.gettyimages.com",
    "www.istockphoto.com",
    "c8.alamy.com",
    "thumbs.dreamstime.com",
)
PLAIN_DOMAINS = (
    "photos.example.org",
    "cdn.picshare.example.net",
    "blog.example.com",
    "img.gallery.example.io",
    "static.news.example.co.uk",
)
NC_LICENSES = (
    "https://creativecommons.org/licenses/by-nc/4.0/",
    "https://creativecommons.org/licenses/by-nc-nd/4.0/",
)
OPEN_LICENSES = (
    "https://creativecommons.org/licenses/by/4.0/",
    "https://creativecommons.org/publicdomain/zero/1.0/",
    "https://creativecommons.org/licenses/by-sa/4.0/",
)

XMP_PROHIBITED = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
    'plus:DataMining="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"/>'
    "</rdf:RDF></x:xmpmeta>"
)


INHERITED_NEAR = ("watermarked", "misaligned", "caption_copyright", "xrobots_noai", "license_nc")
INHERITED_EXACT = (*INHERITED_NEAR, "exif_copyright", "xmp_prohibited", "sdxl_watermark")


@dataclass
class PoolConfig:
    n: int = 1000
    seed: int = 0
    size: int = 256
    misaligned: float = 0.10
    exact_duplicate: float = 0.05
    near_duplicate: float = 0.05
    watermarked: float = 0.10
    stock_url: float = 0.05
    exif_copyright: float = 0.05
    caption_copyright: float = 0.03
    xmp_prohibited: float = 0.03
    license_nc: float = 0.05
    xrobots_noai: float = 0.05
    sdxl_watermark: float = 0.03

    def validate(self) -> None:
        from clipaudit.errors import ClipauditError

        for name, value in asdict(self).items():
            if name in ("n", "seed", "size"):
                continue
            if not 0.0 <= value <= 1.0:
                raise ClipauditError(f"The pool rate {name}={value} must be between 0 and 1.")
        if self.exact_duplicate + self.near_duplicate >= 0.9:
            raise ClipauditError("Duplicate rates leave no originals; keep their sum under 0.9.")
        if self.sdxl_watermark > 0 and self.size < 256:
            raise ClipauditError(
                f"Invisible watermarks need images of at least 256 px; size is {self.size}."
            )


@dataclass
class PoolItem:
    sample: Sample
    truth: dict[str, Any]
    issues: list[str]
    duplicate_of: str | None = None
    transform: str | None = None


def sdxl_bits_matched(im: Image.Image) -> int:
    """How many of SDXL's 48 bits imwatermark's dwtDct decoder reads back from ``im``."""
    from imwatermark import WatermarkDecoder

    bgr = np.asarray(im.convert("RGB"), np.uint8)[:, :, ::-1].copy()
    bits = WatermarkDecoder("bits", 48).decode(bgr, "dwtDct")
    return sum(int(a == b) for a, b in zip(bits, SDXL_BITS, strict=True))


def _sdxl_embed(im: Image.Image, rng: random.Random) -> tuple[Image.Image, int]:
    """Embed SDXL's message; returns the image and the bits read back from it.

    dwtDct often fails to take on flat synthetic colour fields (the decoder then reads all
    ones), so a failed embed is retried once over light texture, and the label is given only
    for what the decoder verifiably reads: a planted truth, not a planted hope.
    """
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", SDXL_BITS)
    best, best_bits = im, -1
    for attempt in range(2):
        src = np.asarray(im, np.uint8)
        if attempt:
            nrng = np.random.default_rng(rng.getrandbits(32))
            src = (src.astype(np.float32) + nrng.normal(0, 12, src.shape)).clip(0, 255)
            src = src.astype(np.uint8)
        out = enc.encode(src[:, :, ::-1].copy(), "dwtDct")  # imwatermark works in BGR
        marked = Image.fromarray(out[:, :, ::-1].copy(), "RGB")
        bits = sdxl_bits_matched(marked)
        if bits > best_bits:
            best, best_bits = marked, bits
        if bits >= SDXL_VERIFIED:
            break
    return best, best_bits


def _save(
    im: Image.Image, fmt: str, exif: Image.Exif | None, xmp: bytes | None, rng: random.Random
) -> bytes:
    buf = io.BytesIO()
    kw: dict[str, Any] = {}
    if exif is not None:
        kw["exif"] = exif.tobytes()
    if xmp is not None:
        kw["xmp"] = xmp
    if fmt == "png":
        # PNG carries XMP in an iTXt chunk under Adobe's keyword, which Pillow reads back.
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if xmp is not None:
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        kw.pop("xmp", None)
        im.save(buf, format="PNG", pnginfo=info, **kw)
    else:
        im.save(buf, format="JPEG", quality=rng.randint(85, 95), **kw)
    return buf.getvalue()


def _near_duplicate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    kind = rng.choice(("resize", "reencode", "crop", "flip", "brightness"))
    if kind == "resize":
        f = rng.uniform(0.5, 0.85)
        im = im.resize(
            (max(8, int(im.width * f)), max(8, int(im.height * f))), Image.Resampling.BILINEAR
        )
    elif kind == "crop":
        f = rng.uniform(0.85, 0.95)
        w, h = int(im.width * f), int(im.height * f)
        x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
        im = im.crop((x, y, x + w, y + h))
    elif kind == "flip":
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif kind == "brightness":
        im = ImageEnhance.Brightness(im).enhance(
            rng.choice((rng.uniform(0.8, 0.9), rng.uniform(1.1, 1.2)))
        )
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=rng.randint(55, 80) if kind == "reencode" else 90)
    return buf.getvalue(), kind


def generate_pool(cfg: PoolConfig) -> list[PoolItem]:
    """The pool, shuffled, with ids ``000000``…; deterministic in ``cfg``."""
    cfg.validate()
    rng = random.Random(f"clipaudit-pool:{cfg.seed}")
    n_exact = round(cfg.n * cfg.exact_duplicate)
    n_near = round(cfg.n * cfg.near_duplicate)
    n_base = cfg.n - n_exact - n_near
    base: list[PoolItem] = []
    for i in range(n_base):
        srng = rng_for(cfg.seed, "pool", i)
        scene: Scene = objects_scene(srng) if srng.random() < 0.55 else person_scene(srng)
        issues: list[str] = []
        if srng.random() < cfg.watermarked:
            add_watermark(scene, srng, mention_rate=0.3)
            issues.append("watermarked")
        im = scene.render(cfg.size)
        fmt = "jpg"
        truth = scene.truth()
        if srng.random() < cfg.sdxl_watermark:
            im, matched = _sdxl_embed(im, srng)
            fmt = "png"  # lossless, as SDXL pipelines save; JPEG would erode the bits
            truth["sdxl_bits_matched"] = matched
            if matched >= SDXL_VERIFIED:
                issues.append("sdxl_watermark")
        exif = None
        if srng.random() < cfg.exif_copyright:
            exif = Image.Exif()
            exif[0x8298] = "© 2024 StockPix Ltd. All rights reserved."
            exif[0x013B] = "J. Photographer"
            issues.append("exif_copyright")
        xmp = None
        if srng.random() < cfg.xmp_prohibited:
            xmp = XMP_PROHIBITED.encode()
            issues.append("xmp_prohibited")
        data = _save(im, fmt, exif, xmp, srng)
        caption = scene.caption
        if srng.random() < cfg.caption_copyright:
            caption += " © StockPix"
            issues.append("caption_copyright")
        if srng.random() < cfg.stock_url:
            domain = srng.choice(STOCK_DOMAINS)
            issues.append("stock_url")
        else:
            domain = srng.choice(PLAIN_DOMAINS)
        url = f"https://{domain}/images/{srng.getrandbits(40):010x}.{fmt}"
        headers = {"content-type": f"image/{'jpeg' if fmt == 'jpg' else fmt}"}
        if srng.random() < cfg.xrobots_noai:
            headers["x-robots-tag"] = srng.choice(("noai", "noai, noimageai", "noimageai"))
            issues.append("xrobots_noai")
        meta: dict[str, Any] = {
            "headers": headers,
            "source_page": f"https://{domain}/page/{srng.getrandbits(24)}",
        }
        if srng.random() < cfg.license_nc:
            meta["license"] = srng.choice(NC_LICENSES)
            issues.append("license_nc")
        elif srng.random() < 0.3:
            meta["license"] = srng.choice(OPEN_LICENSES)
        sample = Sample("", data, caption, url, meta, fmt)
        base.append(PoolItem(sample, truth, issues))

    # Misaligned captions: swap within pairs, so each caption still exists once.
    n_mis = round(n_base * cfg.misaligned) // 2 * 2
    picked = rng.sample(range(n_base), n_mis)
    for a, b in zip(picked[::2], picked[1::2], strict=True):
        sa, sb = base[a].sample, base[b].sample
        sa.caption, sb.caption = sb.caption, sa.caption
        # A label about the caption's text moves with the caption.
        ca, cb = ("caption_copyright" in base[x].issues for x in (a, b))
        for item, has in ((base[a], cb), (base[b], ca)):
            item.issues = [i for i in item.issues if i != "caption_copyright"]
            if has:
                item.issues.append("caption_copyright")
        base[a].issues.append("misaligned")
        base[b].issues.append("misaligned")

    items = list(base)
    for k in range(n_exact + n_near):
        orig_index = rng.randrange(n_base)
        orig = base[orig_index]
        s = orig.sample
        if k < n_exact:
            copy, kind, transform = s.image, "exact_duplicate", None
        else:
            copy, transform = _near_duplicate(s.image or b"", rng)
            kind = "near_duplicate"
        dup = Sample(
            "",
            copy,
            s.caption,
            f"https://{rng.choice(PLAIN_DOMAINS)}/mirror/{rng.getrandbits(40):010x}.jpg",
            dict(s.meta),
            s.image_ext if kind == "exact_duplicate" else "jpg",
        )
        # A copy carries what travels with it: the caption and captured metadata always,
        # the embedded bytes (EXIF, XMP, invisible bits) only when the bytes are identical.
        kept = INHERITED_EXACT if kind == "exact_duplicate" else INHERITED_NEAR
        issues = [kind] + [i for i in orig.issues if i in kept]
        items.append(
            PoolItem(
                dup, dict(orig.truth), issues, duplicate_of=f"#{orig_index}", transform=transform
            )
        )

    order = list(range(len(items)))
    rng.shuffle(order)
    new_id = {old: f"{pos:06d}" for pos, old in enumerate(order)}
    out = [items[i] for i in order]
    for pos, item in enumerate(out):
        item.sample.id = f"{pos:06d}"
        if item.duplicate_of is not None:
            item.duplicate_of = new_id[int(item.duplicate_of[1:])]
    return out
