"""A small curated run and evaluation results for the report and card tests (built once)."""

from __future__ import annotations

from pathlib import Path

from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.data import open_dataset, write_dataset
from clipaudit.world import write_world

# A caption that would run script if a report ever inserted it unescaped.
HOSTILE = (
    '© 2024 <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> a red circle'
)
NSFW_CAPTION = "a nude figure drawn as a blue square"
PACK = "name: report-test\nextends: default\nquality:\n  min_side: 32\n"
STAGES = ["quality", "hashes", "alignment", "rights", "nsfw"]


def build_run(base: Path) -> Path:
    """World pool of 40 with a hostile caption (flagged ©) and an NSFW-review caption."""
    run = base / "run"
    if (run / "stats.json").is_file():
        return run
    write_world(base / "w", n=40, format="webdataset", shard_size=30, seed=3)
    samples = list(open_dataset(base / "w" / "data"))
    samples[0].caption = HOSTILE
    samples[1].caption = NSFW_CAPTION
    write_dataset(samples, base / "data", "webdataset", shard_size=30)
    (base / "pack.yaml").write_text(PACK)
    curate(
        CurateConfig(
            dataset=str(base / "data"),
            out=str(run),
            rules=str(base / "pack.yaml"),
            model="bundled:world-clip",
            stages=STAGES,
        )
    )
    return run


def build_bias(base: Path) -> Path:
    """A bias result on 120 world people with every probe (small bootstrap)."""
    out = base / "bias"
    if (out / "results.json").is_file():
        return out
    from clipaudit.evaluate.bias.data import world_people
    from clipaudit.evaluate.bias.run import run_bias, write_bias_result
    from clipaudit.evaluate.bootstrap import BootstrapSpec
    from clipaudit.models import load_clip

    clip = load_clip("bundled:world-clip")
    result = run_bias(
        clip,
        world_people(n=120),
        world=True,
        k=50,
        permutations=20,
        boot=BootstrapSpec(n=20),
    )
    write_bias_result(result, out)
    return out
