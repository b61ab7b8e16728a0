"""Multi-dataset training: schemes mapped to masked iBUG-68 faces, per-dataset label offsets, mixed batches, the
``mix`` recipe section, and short end-to-end runs (AOHR masked fine-tune, TUFA) on the shared data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facetrack.data.sample import FaceSample
from facetrack.errors import DataError
from facetrack.train.config import load_config
from facetrack.train.multi import (MultiTrainConfig, Source, apply_offsets, mix_fractions, mixed_sampler,
                                   to_ibug68)

REPO = Path(__file__).resolve().parents[2]


def _mean68() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (68, 2))


def test_partial_scheme_becomes_masked_68_point_face():
    mean = _mean68()
    corr = {0: ((36,), "exact"), 1: ((45,), "exact"), 2: ((30,), "exact"), 3: ((36, 37), "approximate"),
            4: ((48,), "approximate")}
    # a face that is exactly the mean shape under a similarity: the filled points must land on it too
    angle, scale, shift = 0.2, 40.0, np.array([100.0, 80.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face68 = mean @ rot.T + shift
    native = np.stack([face68[36], face68[45], face68[30], face68[36:38].mean(0), face68[48]])
    src = Source("toy", 5, (1, 0, 2, 3, 4), corr, [FaceSample(Path("x.jpg"), native, "toy")])
    (exact,) = to_ibug68(src, mean, "exact")
    assert exact.scheme == "ibug68" and exact.visible.sum() == 3 and set(np.flatnonzero(exact.visible)) == {30, 36, 45}
    assert np.allclose(exact.landmarks, face68, atol=1e-9)
    (single,) = to_ibug68(src, mean, "single")
    assert single.visible.sum() == 4 and single.visible[48]  # the mean of 36-37 never supervises a single point


def test_offsets_move_only_supervised_labels():
    mean = _mean68() * 30 + 100
    visible = np.zeros(68, bool)
    visible[[30, 36]] = True
    sample = FaceSample(Path("x.jpg"), mean, "ibug68", visible=visible)
    offsets = np.full((68, 2), np.nan)
    offsets[30] = [2.0, -1.0]
    offsets[36] = [0.5, 0.5]
    (moved,) = apply_offsets([sample], offsets, 160, 1.25)
    delta = sample.landmarks - moved.landmarks
    assert np.abs(delta[~visible]).max() == 0
    assert delta[30, 0] > 0 and delta[30, 1] < 0  # offsets are crop px: image px = crop px / zoom (zoom < 1 here)
    assert np.allclose(delta[30] / delta[36], [4.0, -2.0])


def test_mixed_sampler_draws_the_fractions():
    torch.manual_seed(0)
    sampler = mixed_sampler([100, 1000, 10], [0.5, 0.25, 0.25], 8000)
    drawn = np.array(list(sampler))
    shares = [np.mean(drawn < 100), np.mean((drawn >= 100) & (drawn < 1100)), np.mean(drawn >= 1100)]
    assert len(drawn) == 8000 and np.allclose(shares, [0.5, 0.25, 0.25], atol=0.03)
    from facetrack.train.multi import MixSection

    assert mix_fractions(MixSection(primary_fraction=0.5), [1.0, 3.0]) == [0.5, 0.125, 0.375]


def test_mix_recipes_parse_and_check_their_keys(tmp_path):
    for name in ("aohr68_multi", "tufa_cpu_mixed", "tufa_cpu_300w"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert isinstance(config, MultiTrainConfig)
    config = load_config(REPO / "configs" / "aohr68_multi.yaml")
    assert set(config.mix.extra) == {"ideask21", "mtfl5", "ytf68"} and config.mix.supervise == "exact"
    with pytest.raises(DataError, match="supervise"):
        load_config(REPO / "configs" / "aohr68_multi.yaml", ["mix.supervise=all"])
    with pytest.raises(DataError, match="unknown key"):
        load_config(REPO / "configs" / "aohr68_multi.yaml", ["mix.ratio=2"])


def _short(tmp_path: Path, recipe: str, shared: Path, *extra: str):
    from facetrack.train.run import train

    overrides = [f"trainer.out={tmp_path / 'run'}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.limit_val_batches=1", "optim.batch_size=4", "trainer.num_workers=0",
                 f"data.root={shared / '300w'}", *(f"mix.extra.{n}.root={shared / n}" for n in ("ideask21", "mtfl5", "ytf68")),
                 *extra]
    return train(load_config(REPO / "configs" / recipe, overrides))


def test_masked_aohr_fine_tune_runs(tmp_path, shared_data, one_torch_thread):
    result = _short(tmp_path, "aohr68_multi.yaml", shared_data, "mix.correction_faces=4")
    assert result["epochs"] == 1 and np.isfinite(result["best_val_nme"])
    mix = json.loads((tmp_path / "run" / "mix.json").read_text())
    assert len(mix["mtfl5"]["supervised_ibug68"]) == 3 and len(mix["ideask21"]["supervised_ibug68"]) == 14
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert set(card["training"]["data"]["extra"]) == {"ideask21", "mtfl5", "ytf68"}


def test_tufa_mixed_training_runs(tmp_path, shared_data, one_torch_thread):
    from facetrack.models.hub import load_model

    result = _short(tmp_path, "tufa_cpu_mixed.yaml", shared_data, "model.config.depth=1",
                    "model.config.decoder_layers=1", "model.config.dim=32")
    assert result["epochs"] == 1
    model = load_model(tmp_path / "run" / "best.safetensors")
    assert model.datasets == ["shared300w", "ideask21", "mtfl5", "ytf68"]
    # mtfl5's mean shape sits on 300-W's plane: its nose tip near iBUG point 30's
    assert (model.mean_shape("mtfl5")[2] - model.mean_shape("shared300w")[30]).abs().max().item() < 0.1


def test_withhold_masks_the_points_in_every_scheme(tmp_path):
    from facetrack.train.tufa import MixedSchemeDataset

    # a 5-point scheme whose point 0 corresponds to jaw point 8 (approximately) and point 1 to 30
    corr = {0: ((7, 8, 9), "approximate"), 1: ((30,), "exact"), 2: ((36,), "exact")}
    src = Source("toy", 3, (0, 1, 2), corr, [])
    assert src.withheld(range(17)) == {0} and src.withheld([]) == set()

    class Model:
        input_size = 32

        @staticmethod
        def to_normalised(points):
            return points / 16.0 - 1.0

    image = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    face = FaceSample(image, np.random.default_rng(0).uniform(5, 35, (68, 2)), "ibug68")
    data = MixedSchemeDataset([(0, [face], [np.array([0.0, 0.0, 40.0, 40.0])], tuple(range(68)))], Model(), None,
                              70, withheld={0: set(range(17))})
    weight = data[0]["targets"]["weight"].numpy()
    assert weight[:17].sum() == 0 and weight[17:68].all() and weight[68:].sum() == 0
    config = load_config(REPO / "configs" / "tufa68_mixed_nojaw.yaml")
    assert config.mix.withhold == list(range(17))
    assert load_config(REPO / "configs" / "tufa68_mixed.yaml").mix.withhold == []
    with pytest.raises(DataError, match="withhold"):
        load_config(REPO / "configs" / "tufa68_mixed.yaml", ["mix.withhold=[0, x]"])


def test_withhold_is_refused_for_fixed_scheme_models(tmp_path):
    from facetrack.train.multi import train_multi

    config = load_config(REPO / "configs" / "aohr68_multi.yaml", [f"trainer.out={tmp_path / 'run'}", "mix.withhold=[0]"])
    with pytest.raises(DataError, match="TUFA"):
        train_multi(config)


def test_ablation_recipes_differ_from_the_mix_only_in_their_extra_set():
    base = load_config(REPO / "configs" / "aohr68_multi.yaml").to_dict()
    for name in ("ideask21", "mtfl5", "ytf68"):
        arm = load_config(REPO / "configs" / f"aohr68_multi_{name}.yaml").to_dict()
        assert set(arm["mix"]["extra"]) == {name}
        assert arm["mix"]["extra"][name] == base["mix"]["extra"][name]
        for section in ("model", "data", "optim"):
            assert arm[section] == base[section]
        assert {k: v for k, v in arm["trainer"].items() if k != "out"} == \
               {k: v for k, v in base["trainer"].items() if k != "out"}


def test_any_catalogue_scheme_with_correspondences_can_be_an_extra_dataset(tmp_path):
    from facetrack.schemes import WFLW98_TO_IBUG68
    from facetrack.train.multi import load_source, scheme_correspondence

    wflw = scheme_correspondence("wflw98")
    assert len(wflw) == 68 and all(wflw[w][0] == (i,) for i, w in enumerate(WFLW98_TO_IBUG68))
    assert wflw[WFLW98_TO_IBUG68[30]][1] == "exact" and wflw[WFLW98_TO_IBUG68[19]][1] == "approximate"
    assert scheme_correspondence("ibug68")[67] == ((67,), "exact") and scheme_correspondence("cofw29") == {}
    with pytest.raises(DataError, match="usable: .*wflw"):
        load_source("cofw", tmp_path)  # no iBUG-68 correspondences known for COFW-29
    with pytest.raises(DataError, match="WFLW"):
        load_source("wflw", tmp_path)  # known, but no official layout under the root


def test_plane_shape_of_a_one_face_scheme():
    """1-shot: a new scheme's mean shape from a single face is that face, affine-aligned onto the plane."""
    from facetrack.train.tufa import plane_shapes

    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, (68, 2))
    face = 3.0 * reference[[36, 45, 30, 48, 54]] + 40.0  # the reference's points, scaled and moved
    corr = {i: ((j,), "exact") for i, j in enumerate((36, 45, 30, 48, 54))}
    src = Source("five", 5, (1, 0, 2, 4, 3), corr, [FaceSample(Path("x.jpg"), face, "five")])
    shapes = plane_shapes([], [src], reference)
    assert np.allclose(shapes["five"], reference[[36, 45, 30, 48, 54]], atol=1e-9)
