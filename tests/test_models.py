from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipaudit.errors import ModelError
from clipaudit.models import SPEC_KINDS, load_clip, resolve_spec


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return load_clip("random:clipaudit-tiny")


def test_offline_error_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPAUDIT_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        resolve_spec("ViT-B-32:openai")
    assert str(err.value) == (
        "Cannot load model 'ViT-B-32:openai': its weights are not on this machine and cannot "
        "be downloaded without a network; pass a local checkpoint ('ARCH:/path/to/weights.pt'), "
        "'local-dir:/path/to/folder', or a model that ships with clipaudit "
        "('bundled:world-clip')."
    )
    with pytest.raises(ModelError, match=r"^Cannot load model 'hf-hub:org/none'"):
        resolve_spec("hf-hub:org/none")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "Empty model spec; use one of the forms"),
        (
            "no-such-thing",
            "Unknown model spec 'no-such-thing'; use one of the forms 'bundled:NAME'",
        ),
        ("Nope-1:openai", "'Nope-1' is not an open_clip architecture"),
        ("ViT-B-32:nosuchtag", "'nosuchtag' is neither a pretrained tag of 'ViT-B-32'"),
        ("bundled:nope", "No bundled model 'nope'"),
        ("random:nope", "Unknown architecture 'nope'"),
        ("local-dir:/nonexistent", "has no open_clip_config.json"),
    ],
)
def test_bad_specs_name_the_value(spec: str, message: str) -> None:
    with pytest.raises(ModelError, match=None) as err:
        resolve_spec(spec)
    assert message in str(err.value)


def test_spec_kinds_registry() -> None:
    assert {"bundled", "random", "local-dir", "hf-hub"} <= set(SPEC_KINDS)


def test_provenance_record(tiny) -> None:  # type: ignore[no-untyped-def]
    p = tiny.provenance
    assert p.arch == "clipaudit-tiny" and p.source == "random"
    assert p.embed_dim == 128 and p.image_size == [64, 64]
    assert p.mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert p.interpolation == "bicubic" and p.quick_gelu is False
    assert p.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)
    assert len(p.weights_sha256) == 64 and p.device == "cpu" and p.precision == "fp32"
    assert "Resize" in p.preprocess and "Normalize" in p.preprocess
    assert p.versions["torch"] and p.versions["open_clip_torch"]
    # Seeded: a second load is the same model, bit for bit.
    assert load_clip("random:clipaudit-tiny").provenance.weights_sha256 == p.weights_sha256


def test_embeddings_are_normalised_and_batch_independent(tiny) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from tests.conftest import photo_like

    ims = [Image.fromarray(photo_like(seed=i)) for i in range(5)]
    a = tiny.encode_images(ims, batch_size=5)
    b = tiny.encode_images(ims, batch_size=2)
    assert a.dtype == np.float32 and a.shape == (5, 128)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(a, b, atol=1e-5)
    t = tiny.encode_texts(["a red circle", "a blue square"])
    assert t.shape == (2, 128) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)


def test_checkpoint_and_local_dir_round_trip(tmp_path, tiny) -> None:  # type: ignore[no-untyped-def]
    import json

    import open_clip
    from safetensors.torch import save_file

    cfg = json.loads(
        (
            __import__("clipaudit.models.loader", fromlist=["x"]).CONFIG_DIR / "clipaudit-tiny.json"
        ).read_text()
    )
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": cfg,
                "preprocess_cfg": {
                    "mean": list(open_clip.OPENAI_DATASET_MEAN),
                    "std": list(open_clip.OPENAI_DATASET_STD),
                },
            }
        )
    )
    save_file(
        {k: v.contiguous() for k, v in tiny.model.state_dict().items()},
        tmp_path / "open_clip_model.safetensors",
    )
    loaded = load_clip(f"local-dir:{tmp_path}")
    assert loaded.provenance.source == "local-dir"
    assert loaded.provenance.embed_dim == 128
    t1 = tiny.encode_texts(["hello"])
    assert np.allclose(loaded.encode_texts(["hello"]), t1, atol=1e-6)
    _model, preprocess, tokenizer, prov = loaded
    assert prov is loaded.provenance and callable(preprocess) and callable(tokenizer)


def test_a_checkpoint_for_another_architecture_is_one_short_sentence(tmp_path: Path) -> None:
    """torch lists every mismatched key: a ViT checkpoint passed as RN50 was a 17 KB error."""
    import torch

    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError) as err:
        load_clip(f"RN50:{tmp_path / 'other.pt'}")
    msg = str(err.value)
    assert len(msg) < 400 and "\n" not in msg, msg
    assert "do not fit the architecture 'RN50'" in msg
    assert "1 are unexpected (e.g. ['foo.weight'])" in msg
    assert "name the architecture the checkpoint was trained with" in msg
