"""Caption words and length in scripts written without spaces: splitting on whitespace made
every Chinese, Japanese or Thai caption one word, so the default pack
(``min_caption_words: 2``) dropped them all as one-word captions; counting code points made
"猫の写真" (4) shorter than "a cat" (5), so ``min_caption_chars: 5`` dropped it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.curate.stages.caption_text import caption_width, caption_word_count
from clipaudit.data import Sample, write_dataset
from clipaudit.data.example import example_samples


@pytest.mark.parametrize(
    ("caption", "words"),
    [
        ("a photo of a cat", 5),
        ("cat", 1),
        ("IMG_1234.jpg", 1),  # a file name stays one word
        ("一只猫坐在沙发上", 8),
        ("猫", 1),
        ("東京タワーの夜景", 6),  # 東 京, タワー (one katakana run), の, 夜 景
        ("iPhone手机", 3),
        ("可爱的猫 (cute cat)", 6),
        ("แมวนอนบนโซฟา", 12),
        ("강아지가 공원에서 뛰어요", 3),  # Hangul is written with spaces
        ("शब्द गिनती", 2),  # combining vowel signs do not split a word
        ("— ... !!", 0),
        ("", 0),
    ],
)
def test_words_are_counted_in_every_script(caption: str, words: int) -> None:
    assert caption_word_count(caption) == words


@pytest.mark.parametrize(
    ("caption", "width"),
    [
        ("a cat", 5),
        ("一只猫", 6),
        ("猫の写真", 8),
        ("ＣＡＴ", 6),  # full-width forms
        ("고양이", 6),  # Hangul syllables are wide
        ("café", 4),
        ("cafe\u0301", 4),  # a combining accent takes no column
        ("n\u200bude", 4),  # nor does a zero-width space
        ("", 0),
    ],
)
def test_caption_width_counts_wide_characters_twice(caption: str, width: int) -> None:
    assert caption_width(caption) == width


def test_the_default_pack_keeps_chinese_and_japanese_captions(tmp_path: Path) -> None:
    images = [s.image for s in example_samples(6)]
    captions = ["一只猫坐在沙发上", "東京タワーの夜景", "cat", "猫", "一只猫", "猫の写真"]
    pairs = enumerate(zip(images, captions, strict=True))
    samples = [Sample(f"s{i}", im, c) for i, (im, c) in pairs]
    write_dataset(iter(samples), str(tmp_path / "data"), "parquet")
    curate(CurateConfig(str(tmp_path / "data"), str(tmp_path / "run"), stages=["quality"]))
    rows = pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()
    short = {r["id"] for r in rows if "caption_too_short" in (r["reasons"] or [])}
    # The one-word captions only: "一只猫" (a cat) is 3 code points but 6 wide.
    assert short == {"s2", "s3"}
    assert [r["caption_width"] for r in rows] == [16, 16, 3, 2, 6, 8]
    # The LAION pack counts code points, as LAION's filter did: the short ones drop there.
    from clipaudit.curate.decide import decide_run

    decide_run(str(tmp_path / "run"), rules="laion")
    rows = pq.read_table(tmp_path / "run" / "decisions.parquet").to_pylist()
    short = {r["id"] for r in rows if "caption_too_short" in (r["reasons"] or [])}
    assert short == {"s2", "s3", "s4", "s5"}
