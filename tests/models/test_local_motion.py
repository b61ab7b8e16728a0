"""Local-motion networks (Belmonte et al.): the paper's parameter counts, streaming equals the clip forward for
all six variants, causality and what each variant's window sees, the coordinate codec, a tiny overfit, the hub
round trip and the tracking engine, the reverse / mirror clip augmentation, and the temporal recipe hook."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facetrack.data.clip_augment import mirror_clip, reverse_clip
from facetrack.data.transforms import apply_affine, crop_matrix
from facetrack.errors import DataError
from facetrack.models import build_model, load_model, save_model
from facetrack.models.temporal.local_motion import VARIANTS, CoordinateCodec, LocalMotion
from facetrack.schemes import get_scheme

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"num_points": 5, "scheme": "ibug68", "input_size": 32, "width": 2, "fc": 8, "channels": 4, "head": 4}


def tiny(variant: str, seed: int = 0) -> LocalMotion:
    torch.manual_seed(seed)
    model = LocalMotion(variant=variant, **{**TINY, "num_points": 68})
    return model.double().eval()


def clip(b: int = 2, t: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, 32, 32, generator=g, dtype=torch.float64)


def test_paper_presets_have_table7_parameter_counts():
    table7 = {"2d": 3.8, "3d": 11.1, "2drnn": 14.2, "3drnn": 17.4, "2dfcrnn": 10.2, "3dfcrnn": 14.9}
    for variant, millions in table7.items():
        model = build_model(f"lm-{variant}")
        assert model.input_size == 64 and model.num_points == 68
        assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - millions) < 0.15, variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_streaming_equals_clip_forward(variant):
    model = tiny(variant)
    x = clip()
    with torch.no_grad():
        whole = model.forward_sequence(x)
        state = model.init_state(2)
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], state)
            for key, value in out.items():
                torch.testing.assert_close(value, whole[key][:, t])
    coords, conf = model.decode(whole)
    assert coords.shape == (2, 5, 68, 2) and conf.shape == (2, 5, 68)


@pytest.mark.parametrize("variant", VARIANTS)
def test_causal_window_of_three(variant):
    """Frame t's output depends on frames t-2..t only (t-1 and t-2 only for the temporal variants)."""
    model = tiny(variant)
    x = clip(1, 6)
    key = "heatmap" if "fc" in variant else "coords"
    with torch.no_grad():
        base = model.forward_sequence(x)[key]
        later = x.clone()
        later[:, 4:] = torch.rand_like(later[:, 4:])
        assert torch.equal(model.forward_sequence(later)[key][:, :4], base[:, :4])  # no look-ahead
        for back, seen in ((1, variant != "2d"), (2, variant != "2d"), (3, False)):
            moved = x.clone()
            moved[:, 5 - back] = torch.rand_like(moved[:, 5 - back])
            changed = not torch.allclose(model.forward_sequence(moved)[key][:, 5], base[:, 5])
            assert changed == seen, (variant, back)


def test_coordinate_codec_round_trip_and_weights():
    codec = CoordinateCodec(64)
    points = np.array([[-0.5, -0.5], [63.5, 63.5], [10.25, 40.0], [np.nan, 3.0], [80.0, 5.0]])
    target = codec.encode(points)
    np.testing.assert_allclose(target["coords"][:3], [[-0.5, -0.5], [0.5, 0.5], [10.75 / 64 - 0.5, 40.5 / 64 - 0.5]])
    assert target["weight"][3] == 0 and target["weight"][4] == 0 and target["weight"][:3].min() > 0
    back, conf = codec.decode(torch.from_numpy(target["coords"][:3]).double())
    np.testing.assert_allclose(back.numpy(), points[:3], atol=1e-5)
    assert torch.all(conf == 1)


@pytest.mark.parametrize("variant", ["3drnn"])  # heatmap variants: test_heatmap_overfit_... below
def test_tiny_overfit(variant):
    torch.manual_seed(0)
    model = LocalMotion(variant=variant, **TINY)
    x = clip(2, 3).float()
    rng = np.random.default_rng(0)
    pts = rng.uniform(6, 26, (2, 3, 5, 2))
    targets = [[model.encode_targets(pts[b, t]) for t in range(3)] for b in range(2)]
    batch = {k: torch.from_numpy(np.stack([[np.asarray(f[k], np.float32) for f in row] for row in targets]))
             for k in targets[0][0]}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.loss(model.forward_sequence(x), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("variant", ["2dfcrnn", "3dfcrnn"])
def test_heatmap_overfit_beats_empty_maps_and_moves_peaks(variant):
    """The collapse guard: a tiny FCRNN overfit must end well below the all-zero map's loss, with the decoded
    peaks on the targets (the plain-L2, Xavier-initialised version ended at empty maps)."""
    torch.manual_seed(0)
    model = LocalMotion(variant=variant, **{**TINY, "num_points": 3, "channels": 8, "head": 8},
                        sigma=2.0, fg_weight=10.0)
    x = clip(2, 3).float()
    pts = np.random.default_rng(0).uniform(6, 26, (2, 1, 3, 2)).repeat(3, axis=1)
    targets = [[model.encode_targets(pts[b, t]) for t in range(3)] for b in range(2)]
    batch = {k: torch.from_numpy(np.stack([[np.asarray(f[k], np.float32) for f in row] for row in targets]))
             for k in targets[0][0]}
    empty = model.loss({"heatmap": torch.zeros_like(batch["heatmap"])}, batch).item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss(model.forward_sequence(x), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model.forward_sequence(x)
        coords, _ = model.decode(out)
    assert model.loss(out, batch).item() < 0.5 * empty
    assert out["heatmap"].amax(dim=(-1, -2)).min() > 0.3
    assert (coords - torch.from_numpy(pts).float()).norm(dim=-1).max() < 2.0


def test_hub_round_trip_and_tracking_engine(tmp_path):
    from facetrack.landmarker import Landmarker
    from facetrack.tracking.engine import TemporalEngine, engine_for

    model = LocalMotion(variant="3drnn", **{**TINY, "num_points": 68}).eval()
    weights, _ = save_model(model, tmp_path / "lm.safetensors", {"name": "lm-test"})
    loaded = load_model(weights)
    assert isinstance(loaded, LocalMotion) and loaded.config == model.config
    x = clip(1, 3).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_sequence(x)["coords"], model.forward_sequence(x)["coords"])
    engine = engine_for(Landmarker(loaded, refine=0, runtime="torch"))
    assert isinstance(engine, TemporalEngine)
    image = (np.random.default_rng(0).uniform(0, 255, (96, 96, 3))).astype(np.uint8)
    first = engine.start(image, [np.array([20.0, 20.0, 70.0, 70.0])])
    second = engine.step(image, first)
    assert second[0].landmarks.shape == (68, 2) and np.isfinite(second[0].landmarks).all()
    assert second[0].state.tensors["filled"].item() == 1


def _clip_item(rng: np.random.Generator, encode) -> dict:
    t, size = 3, 32
    landmarks = rng.uniform(30, 90, (t, 68, 2))
    mats = np.stack([crop_matrix([25, 25, 95, 95], size, 1.25, shift=(0.02 * i, 0.0)) for i in range(t)])
    visible = np.ones((t, 68), bool)
    visible[1, 3] = False
    targets = [encode(apply_affine(p, m), v) for p, m, v in zip(landmarks, mats, visible)]
    return {"crops": torch.rand(t, 3, size, size), "matrix": torch.from_numpy(mats),
            "landmarks": torch.from_numpy(landmarks), "visible": torch.from_numpy(visible),
            "occluded": torch.zeros(t, 68, dtype=torch.bool),
            "targets": {k: torch.from_numpy(np.stack([f[k] for f in targets])) for k in targets[0]}}


def test_mirror_and_reverse_keep_targets_consistent():
    model = LocalMotion(variant="2d", **{**TINY, "num_points": 68})
    item = _clip_item(np.random.default_rng(0), model.encode_targets)
    perm = np.asarray(get_scheme("ibug68").flip_perm)
    flipped = mirror_clip(item, model.encode_targets, 32, perm)
    crop_points, _ = model.codec.decode(flipped["targets"]["coords"].double())
    for t in range(3):  # targets are the mirrored crop's points of the reordered GT
        expected = apply_affine(flipped["landmarks"][t].numpy(), flipped["matrix"][t].numpy())
        np.testing.assert_allclose(crop_points[t].numpy(), expected, atol=1e-4)
        original = apply_affine(item["landmarks"][t].numpy(), item["matrix"][t].numpy())
        np.testing.assert_allclose(expected[:, 0], 31 - original[perm, 0], atol=1e-9)
    assert not flipped["visible"][1, perm.tolist().index(3)]
    assert torch.equal(flipped["crops"], item["crops"].flip(-1))
    twice = mirror_clip(flipped, model.encode_targets, 32, perm)
    np.testing.assert_allclose(twice["matrix"].numpy(), item["matrix"].numpy(), atol=1e-12)
    back = reverse_clip(reverse_clip(item))
    assert torch.equal(back["crops"], item["crops"]) and torch.equal(back["targets"]["coords"], item["targets"]["coords"])
    assert torch.equal(reverse_clip(item)["landmarks"][0], item["landmarks"][-1])


def test_temporal_recipe_builds_local_motion():
    from facetrack.train.temporal import TemporalModelSection, build_temporal_model

    model = build_temporal_model(TemporalModelSection(arch="lm-2drnn-lite"))
    assert isinstance(model, LocalMotion) and model.variant == "2drnn"
    with pytest.raises(DataError, match="no separate encoder"):
        build_temporal_model(TemporalModelSection(arch="lm-2d-lite", encoder_weights="x.safetensors"))
