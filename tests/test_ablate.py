"""``clipaudit ablate``: a tiny real run (world pool → curate → train → benchmarks) plus the
arithmetic of its paired statistics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipaudit.ablate.config import AblateConfig
from clipaudit.ablate.curation import SCORING_SECTIONS
from clipaudit.ablate.paired import paired_table
from clipaudit.ablate.pooldata import load_pool, to_input
from clipaudit.ablate.run import run_ablation
from clipaudit.data.formats import write_dataset
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bootstrap import BootstrapSpec, mean_stat
from clipaudit.world import write_world

STEPS, BATCH, SEEDS = 6, 16, 2
EVAL = {"eval-objects": 24, "eval-people": 20, "eval-retrieval": 16}


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("ablate")
    write_world(
        root / "pool",
        split="pool",
        n=120,
        size=96,
        rates={
            "sdxl_watermark": 0.0,
            "misaligned": 0.3,
            "exact_duplicate": 0.1,
            "near_duplicate": 0.1,
        },
    )
    cfg = AblateConfig(
        pool=str(root / "pool"),
        out=str(root / "out"),
        rules=["default", "keep-all"],
        steps=STEPS,
        seeds=SEEDS,
        batch_size=BATCH,
        eval_sizes=dict(EVAL),
        bootstrap=200,
        workers=1,
    )
    res = run_ablation(cfg, log=lambda m: None)
    return root / "out", res


def test_results_json_has_every_arm_benchmark_and_interval(
    ablation: tuple[Path, dict[str, Any]],
) -> None:
    out, res = ablation
    on_disk = json.loads((out / "ablate.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert on_disk["schema"] == "clipaudit.ablate/1"
    assert [a["name"] for a in on_disk["arms"]] == ["raw", "default", "keep-all"]
    benches = {"world-colors", "world-shapes", "world-occupations", "world-retrieval"}
    for arm in on_disk["arms"]:
        assert set(arm["benchmarks"]) == benches
        acc = arm["benchmarks"]["world-colors"]["acc1"]
        assert 0.0 <= acc["value"] <= 1.0
        assert acc["ci"][0] <= acc["value"] <= acc["ci"][1]
        assert len(acc["per_seed"]) == SEEDS
        assert acc["value"] == pytest.approx(np.mean([p["value"] for p in acc["per_seed"]]))
        assert [r["seed"] for r in arm["runs"]] == list(range(SEEDS))
        for r in arm["runs"]:
            assert (out / r["model"] / "open_clip_model.safetensors").is_file()
        if arm["name"] == "raw":
            assert "difference_to_raw" not in arm
        else:
            assert set(arm["difference_to_raw"]) == benches
    assert on_disk["benchmarks"]["sizes"] == EVAL
    md = (out / "ablate.md").read_text()
    assert md.count("| world-colors | acc1 |") == 2  # the scores table and the differences
    assert "null check: `keep-all`" in md and "(passed)" in md


def test_every_model_sees_the_same_number_of_samples(
    ablation: tuple[Path, dict[str, Any]],
) -> None:
    _, res = ablation
    seen = {r["samples_seen"] for a in res["arms"] for r in a["runs"]}
    assert seen == {STEPS * BATCH}
    assert res["compute"]["samples_seen_per_model"] == STEPS * BATCH
    assert res["compute"]["equal_compute"] is True
    raw, default = res["arms"][0], res["arms"][1]
    # The smaller curated pool is cycled more often, not trained for fewer samples.
    assert default["kept"] < raw["kept"]
    assert default["runs"][0]["epochs"] > raw["runs"][0]["epochs"]


def test_kept_counts_follow_the_curation_decisions(ablation: tuple[Path, dict[str, Any]]) -> None:
    out, res = ablation
    arms = {a["name"]: a for a in res["arms"]}
    assert arms["raw"]["kept"] == res["pool"]["trainable"] == res["pool"]["input"] == 120
    assert arms["keep-all"]["kept"] == 120
    assert arms["keep-all"]["kept_share"] == 1.0
    decisions = pq.read_table(out / "arms" / "default" / "decisions.parquet").to_pydict()
    kept = sum(d in ("keep", "flag") for d in decisions["decision"])
    assert arms["default"]["kept"] == kept == arms["default"]["curation"]["kept"]
    # Both packs agree on what scoring reads, so one scored run serves both arms.
    assert arms["default"]["scored_run"] == arms["keep-all"]["scored_run"]
    assert list(res["curation"]["scoring_seconds"]) == ["scored-1"]
    # The world's answer key: the default pack removes misaligned captions.
    share = res["pool"]["planted_share"]["misaligned"]
    assert share == pytest.approx(arms["raw"]["kept_issue_share"]["misaligned"])
    assert arms["default"]["kept_issue_share"]["misaligned"] < share


def test_keep_all_trains_the_raw_model_so_its_difference_is_exactly_zero(
    ablation: tuple[Path, dict[str, Any]],
) -> None:
    _, res = ablation
    arms = {a["name"]: a for a in res["arms"]}
    raw_sha = [r["weights_sha256"] for r in arms["raw"]["runs"]]
    assert [r["weights_sha256"] for r in arms["keep-all"]["runs"]] == raw_sha
    assert raw_sha[0] != raw_sha[1]  # seeds differ
    for metrics in arms["keep-all"]["difference_to_raw"].values():
        for d in metrics.values():
            assert d["value"] == 0.0
            assert d["ci"] == [0.0, 0.0] and d["excludes_zero"] is False


def test_paired_difference_arithmetic() -> None:
    rng = np.random.default_rng(0)
    n = 400
    base = [rng.random(n) < p for p in (0.5, 0.55)]  # two seeds of the raw arm
    better = [b | (rng.random(n) < 0.4) for b in base]  # strictly more hits, per seed
    stats = {
        "raw": [mean_stat(b) for b in base],
        "same": [mean_stat(b) for b in base],
        "better": [mean_stat(b) for b in better],
    }
    spec = BootstrapSpec(n=300, seed=3)
    t = paired_table(stats, n, spec, "raw")
    assert "difference" not in t["raw"]
    assert t["raw"]["score"]["value"] == pytest.approx(np.mean([b.mean() for b in base]))
    per_seed = [g.mean() - b.mean() for g, b in zip(better, base, strict=True)]
    d = t["better"]["difference"]
    assert d["value"] == pytest.approx(np.mean(per_seed))
    assert [p["value"] for p in d["per_seed"]] == pytest.approx(per_seed)
    assert d["ci"][0] > 0 and d["excludes_zero"] is True
    # The score of "better" minus the score of raw is the difference, seed by seed.
    assert t["better"]["score"]["value"] - t["raw"]["score"]["value"] == pytest.approx(d["value"])
    same = t["same"]["difference"]
    assert same["value"] == 0.0 and same["ci"] == [0.0, 0.0] and not same["excludes_zero"]
    # Resampling seeds too can only widen what the seed-averaged interval allows.
    lo, hi = d["ci"]
    assert lo <= d["ci_items"][1] and hi >= d["ci_items"][0]
    assert min(per_seed) - 0.1 < lo < hi < max(per_seed) + 0.1


def test_one_seed_gives_equal_intervals() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(200) < 0.5, rng.random(200) < 0.6
    t = paired_table({"raw": [mean_stat(a)], "x": [mean_stat(b)]}, 200, BootstrapSpec(n=200), "raw")
    d = t["x"]["difference"]
    assert d["ci"] == d["ci_items"] == d["per_seed"][0]["ci"]


def test_scoring_sections_cover_every_pack_read_in_a_stage() -> None:
    """Packs share a scored run when these sections agree; a stage that starts reading
    another section at scoring time must be added to SCORING_SECTIONS."""
    import clipaudit.curate.stages as stages_pkg

    read: set[str] = set()
    for name in stages_pkg.RULE_MODULES + stages_pkg.SCORING_ONLY_MODULES:
        f = Path(stages_pkg.__file__).with_name(f"{name}.py")
        read |= set(re.findall(r"load_pack\([^\n]*\)\)\.(\w+)", f.read_text()))
    assert read and read <= set(SCORING_SECTIONS)


def test_arm_names_and_config_errors() -> None:
    cfg = AblateConfig(pool="p", out="o", rules=["default", "packs/my|pack.yaml", "default"])
    assert cfg.arm_names() == ["raw", "default", "my_pack", "default-2"]
    with pytest.raises(ClipauditError, match="--steps"):
        AblateConfig(pool="p", out="o", steps=0).validate()
    with pytest.raises(ClipauditError, match="rules pack"):
        AblateConfig(pool="p", out="o", rules=[]).validate()
    with pytest.raises(ClipauditError, match="eval-nope"):
        AblateConfig(pool="p", out="o", eval_sizes={"eval-nope": 5}).validate()


def test_pool_loader_skips_what_cannot_be_trained_on(tmp_path: Path) -> None:
    from PIL import Image

    def jpeg(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
        import io

        buf = io.BytesIO()
        Image.new("RGB", size, color).save(buf, format="JPEG")
        return buf.getvalue()

    samples = [
        Sample("a", jpeg((255, 0, 0), (80, 40)), "a red thing"),
        Sample("b", jpeg((0, 255, 0), (64, 64)), None),
        Sample("c", b"not an image", "broken"),
        Sample("d", jpeg((0, 0, 255), (40, 90)), "a blue thing"),
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    pool = load_pool(tmp_path / "ds", 32, log=lambda m: None)
    assert pool.ids == ["a", "d"] and pool.n_input == 4
    assert pool.skipped == {"no_caption": 1, "decode_error": 1}
    assert tuple(pool.images.shape) == (2, 3, 32, 32)
    assert pool.images[0, 0].float().mean() > 200 and pool.images[1, 2].float().mean() > 200
    assert pool.issues is None


def test_benchmark_pixels_are_what_the_model_preprocess_gives() -> None:
    import torch

    from clipaudit.models import load_clip
    from clipaudit.world.splits import scenes

    clip = load_clip("bundled:world-clip", device="cpu")
    size = clip.provenance.image_size[0]
    im = next(iter(scenes("eval-objects", 1, seed=1))).render(256)
    ours = torch.from_numpy(to_input(im, size)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(clip.provenance.mean).view(3, 1, 1)
    std = torch.tensor(clip.provenance.std).view(3, 1, 1)
    assert torch.allclose((ours - mean) / std, clip.preprocess(im), atol=1e-5)


def test_a_pack_that_does_not_load_fails_before_the_pool_is_read(tmp_path: Path) -> None:
    """`ablate --rules nonexistent` decoded the whole pool first; the pool path here does not
    even exist, so reaching it would be a different error."""
    cfg = AblateConfig(pool=str(tmp_path / "no-pool"), out=str(tmp_path / "o"), rules=["nope"])
    with pytest.raises(ClipauditError, match="Unknown rules pack 'nope'"):
        run_ablation(cfg, log=lambda m: None)
