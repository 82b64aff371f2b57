"""The one vocabulary of reason codes a decision can carry, with what each means."""

from __future__ import annotations

REASONS: dict[str, str] = {
    # reading and decoding
    "missing_image": "the sample has no image",
    "empty_image": "the image file is zero bytes",
    "decode_error": "the image bytes cannot be decoded",
    "image_too_large": "the image is larger than the decompression-bomb limit",
    "unsafe_path": "the sample's file name, or a link it is, points outside its dataset "
    "(--follow-symlinks reads an image folder's links)",
    "bad_metadata": "the sample's metadata is not valid JSON",
    "truncated_shard": "the shard ended in the middle of this sample",
    "remote_path": "the image is a remote url, never fetched while reading",
    "video_decode_error": "the bytes are not a decodable video (corrupt or truncated container)",
    "no_video_stream": "the video file holds no video stream (audio only, or no streams)",
    "video_too_large": "the video's frames exceed the frame-size cap (4096 x 3072 pixels)",
    "video_timeout": "decoding the video did not finish within the time limit",
    # video quality
    "still_video": "nothing moves between the sampled frames of a video",
    "black_video": "at least the pack's share (half in default) of a clip's frames are black",
    "video_too_long": "the video is longer than the pack's maximum duration",
    "video_damaged": "packets of the video failed to decode and were skipped, as a player "
    "skips them (frames there are missing or smeared)",
    # quality
    "too_small": "the shorter side is below the minimum",
    "bad_aspect": "the aspect ratio is beyond the maximum",
    "file_too_small": "the file is smaller than the minimum byte size",
    "blank_image": "the image is one flat colour (colour spread below the pack's minimum)",
    "no_caption": "the caption is missing or empty",
    "caption_too_short": "the caption has too few words or characters",
    "caption_too_long": "the caption has too many characters",
    "wrong_language": "the caption is confidently in a language the pack does not allow",
    # alignment and duplicates
    "low_alignment": "image-caption cosine below the pack's threshold",
    "exact_duplicate": "the decoded pixels equal a kept sample's",
    "near_duplicate": "perceptual hash within the radius of a kept sample's",
    "semantic_duplicate": "embedding cosine above 1 - epsilon to a kept sample's",
    # safety and rights (signals arrive with later stages)
    "nsfw": "the NSFW detector reaches a class's drop threshold (its route being drop, the "
    "default), or a policy phrase or caption word routes the image to drop",
    "watermark_suspect": "a visible overlay is suspected: a watermark, logo, credit line or "
    "other text laid over the image (the visible-watermark detector, or the pack's CLIP "
    "phrase margin)",
    "nsfw_review": "the NSFW detector scores a class from its review threshold up to its drop "
    "threshold (or above, where nsfw.detector_route is review), or a policy phrase or caption "
    "word routes the image to human review",
    "invisible_watermark": "an SD v1 / SDXL invisible watermark reads back at a counted grade",
    "ai_generated": "provenance says the image was made by a generative model",
    "optout_robots": "robots.txt disallows AI training for this url",
    "optout_tdmrep": "TDMRep reserves text and data mining rights",
    "optout_xrobots": "X-Robots-Tag noai / noimageai in the captured headers",
    "optout_iptc": "IPTC/PLUS Data Mining prohibits AI training",
    "optout_c2pa": "C2PA training-mining assertion says notAllowed",
    "optout_aitxt": "ai.txt disallows AI training for this url",
    "optout_unknown": "an opt-out protocol could not be checked (origin not in the fetch "
    "cache, unusable url, or ai.txt / tdmrep.json unreachable)",
    "copyright_risk_domain": "the url is on a stock or agency domain list",
    "license_nc": "a non-commercial licence",
    "license_nd": "a no-derivatives licence",
    "copyright_notice": "embedded EXIF/IPTC/XMP carries a copyright or rights-managed notice",
    "caption_copyright": "the caption carries a copyright mark (©, copyright, all rights reserved)",
    "blocked_source": "the url, its domain or the image's sha256 is on the pack's block list",
    "c2pa_invalid": "a C2PA manifest is present but fails validation or cannot be read",
    "c2pa_unverifiable": "the C2PA manifest is remote and was not fetched (curation is offline)",
    "rights_metadata_malformed": "embedded XMP/EXIF/IPTC is malformed or hostile (DTD, entities)",
    # a native multimodal model's verdicts (clipaudit judge)
    "judge_unfaithful": "a multimodal judge says the caption does not describe the image",
    "judge_watermark": "a multimodal judge sees a visible watermark, logo or text overlay",
    "judge_nsfw": "a multimodal judge sees nudity, sexual content or graphic violence",
}

ACTIONS = ("drop", "flag", "keep")

# Codes outside the vocabulary a pack's ``actions:`` may name: decide sets them whatever the
# pack says (a reference copy always drops; a route names where a kept sample goes).
FIXED_REASONS: dict[str, str] = {
    "duplicate_of_reference": "a copy of a sample of a reference set given with --against "
    "(always dropped)",
}


def meaning(code: str) -> str:
    """What a reason code means, for reports and cards ("" for one nobody described)."""
    if code.startswith("route:"):
        return f"routed to {code.removeprefix('route:')!r} by the pack's routes"
    return REASONS.get(code) or FIXED_REASONS.get(code, "")
