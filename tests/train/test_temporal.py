"""Training temporal models on pseudo-videos with ``facetrack train``: a 1-epoch run on tiny models."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facetrack.cli import main
from facetrack.errors import DataError
from facetrack.train.config import load_config

TINY_ENCODER = {
    "arch": "aohr", "input_size": 32, "ratio": 1.0, "gamma": 0.0, "head_channels": 8, "attn_dim": 8,
    "head_layers": 1, "head_separable": True,
    "backbone": {"name": "lite", "channels": [8, 8, 8, 8], "expand": 1, "out_channels": 8},
}
TINY_1DFORMER = {"window": 3, "heads": 1, "head_dim": 4, "ffn_dim": 8, "conf_hidden": 4, "conv_kernel": 3,
                 "group_expand": 1, "inter_channels": 8}


def recipe(tmp_path: Path, root: Path, **changes) -> Path:
    data = {
        "model": {"arch": "1dformer", "config": {"encoder": TINY_ENCODER, **TINY_1DFORMER}},
        "data": {"dataset": "pseudo300w", "root": str(root),
                 "clips": {"num_frames": 3, "val_clips": 2, "cache_clips": 4,
                           "video": {"size": [48, 48], "noise_sd": 0.0, "motion_blur": 0.0}}},
        "optim": {"lr": 1e-3, "batch_size": 2},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "out": str(tmp_path / "run"), "threads": 1,
                    "limit_train_batches": 2, "progress_bar": False},
    }
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "temporal.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def no_pickles(folder: Path) -> None:
    for file in folder.rglob("*"):
        assert file.suffix not in (".ckpt", ".pkl", ".pt")
        if file.is_file():
            assert file.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), file


def test_recipe_types(tmp_path, w300_root):
    config = load_config(recipe(tmp_path, w300_root), ["data.clips.num_frames=5"])
    assert type(config).__name__ == "TemporalTrainConfig" and config.data.clips.num_frames == 5
    with pytest.raises(DataError, match="unknown key 'data.clips.frames'"):
        load_config(recipe(tmp_path, w300_root), ["data.clips.frames=5"])
    with pytest.raises(DataError, match="unknown key 'data.clips'"):  # per-frame recipes keep their keys
        load_config(recipe(tmp_path, w300_root, **{"data.dataset": "300w"}))


def test_one_epoch_on_pseudo_videos_writes_safetensors_checkpoints(tmp_path, w300_root, capsys):
    path = recipe(tmp_path, w300_root)
    assert main(["train", str(path)]) == 0
    out = tmp_path / "run"
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json", "last.optim.safetensors",
                 "last.state.json", "metrics.csv", "recipe.yaml"):
        assert (out / name).is_file(), name
    no_pickles(out)
    from facetrack.models.hub import load_model, read_card

    model = load_model(out / "best.safetensors")
    assert model.arch == "1dformer" and model.input_size == 32
    card = read_card(out / "best.json")
    assert "L_c off" in card["training"]["loss"]
    assert card["training"]["data"]["dataset"] == "pseudo300w"
    assert "held out" in card["training"]["data"]["val_identities"]
    assert card["crop"]["tracking"].startswith("frame t cropped around")
    val = card["training"]["val_nme"]
    assert math.isfinite(val) and val > 0
    # Resume refuses to overwrite, and continues with --resume for a second epoch.
    assert main(["train", str(path)]) == 1
    assert main(["train", str(path), "trainer.max_epochs=2", "--resume"]) == 0
    assert read_card(out / "last.json")["training"]["epoch"] == 1


def test_frozen_encoder_training_on_the_feature_cache(tmp_path, w300_root):
    from facetrack.models.hub import load_model, save_model
    from facetrack.models.registry import build_model

    torch.manual_seed(0)
    encoder = build_model(**copy.deepcopy(TINY_ENCODER))
    save_model(encoder, tmp_path / "encoder", {"name": "tiny"})
    cache = tmp_path / "cache"
    path = recipe(tmp_path, w300_root, **{"model.encoder_weights": str(tmp_path / "encoder.safetensors"),
                                          "data.clips.feature_cache": str(cache), "optim.jitter_weight": 0.5})
    assert main(["train", str(path)]) == 0
    assert (cache / "train" / "cache.json").is_file() and (cache / "val" / "sx.npy").is_file()
    assert np.load(cache / "train" / "sx.npy", mmap_mode="r").shape[:2] == (4, 3)
    no_pickles(tmp_path / "run")
    no_pickles(cache)

    model = load_model(tmp_path / "run" / "last.safetensors")
    # The encoder is the saved one, untouched by training.
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value)
    from facetrack.models.hub import read_card

    card = read_card(tmp_path / "run" / "last.json")
    assert "frozen" in card["training"]["encoder"] and "0.5 x jitter_loss" in card["training"]["loss"]
    assert card["crop"]["training_policy"]["smoothing_centre"] == 0.5


def test_jitter_loss_sees_only_motion_the_face_did_not_make():
    from facetrack.data.transforms import apply_affine, crop_matrix
    from facetrack.models.registry import build_model
    from facetrack.train.temporal import jitter_loss

    model = build_model("1dformer", encoder=copy.deepcopy(TINY_ENCODER), **TINY_1DFORMER)
    rng = np.random.default_rng(0)
    t_len, size = 6, model.input_size
    gt = 40 + 20 * rng.random((1, 68, 2)) + np.arange(t_len)[:, None, None] * np.array([1.0, 0.5])  # moving face
    boxes = [np.array([36.0, 36.0, 66.0, 66.0]) + rng.normal(0, 1, 4) for _ in range(t_len)]  # crops that jitter
    mats = np.stack([crop_matrix(b, size, 1.25) for b in boxes])

    def outputs(shift_bins: float) -> dict[str, torch.Tensor]:
        crop = np.stack([apply_affine(gt[t], mats[t]) for t in range(t_len)])  # exact predictions in each crop
        targets = [model.encode_targets(c + (shift_bins / model.codec.ratio) * (t % 2), None) for t, c in
                   enumerate(crop)]
        hx, hy = (torch.tensor(np.stack([x[k] for x in targets]))[None] for k in ("hx", "hy"))
        if model.encoder.loss_type == "kl":  # outputs are logits
            hx, hy = hx.clamp_min(1e-6).log(), hy.clamp_min(1e-6).log()
        return {"hx": hx.requires_grad_(), "hy": hy}

    args = (torch.tensor(mats)[None], torch.tensor(gt)[None])
    steady = jitter_loss(model, outputs(0.0), *args)
    assert float(steady) < 1e-2  # the face's own motion and the crops' motion cost nothing
    jittery = outputs(1.5)  # every other frame off by 1.5 bins
    loss = jitter_loss(model, jittery, *args)
    assert float(loss) > 100 * float(steady) + 0.1
    loss.backward()
    assert jittery["hx"].grad is not None and jittery["hx"].grad.abs().sum() > 0


def test_encoder_weights_must_be_an_aohr(tmp_path, w300_root):
    from facetrack.models.hub import save_model
    from facetrack.models.registry import build_model

    other = build_model("heatmap2d", input_size=32, backbone={"name": "lite"})
    save_model(other, tmp_path / "hm", {"name": "hm"})
    path = recipe(tmp_path, w300_root, **{"model.encoder_weights": str(tmp_path / "hm.safetensors")})
    assert main(["train", str(path)]) == 1
