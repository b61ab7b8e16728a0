"""1DFormer: streaming equals the clip forward for every ablation, causality, what each switch changes,
Eq. 4's confidence weighting, the structure encoders' reach, init, hub round trip and a tiny overfit."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from facetrack.errors import ModelError
from facetrack.models import build_model, load_model, save_model
from facetrack.models.temporal import ABLATIONS, OneDFormer, TemporalState
from facetrack.schemes import get_scheme

# common7: 7 points in 4 groups; L = 32 * 0.75 = 24 bins.
ENCODER = {"arch": "aohr", "num_points": 7, "scheme": "common7", "input_size": 32, "ratio": 0.75,
           "backbone": {"name": "hourglass", "stacks": 1, "depth": 2, "width": 8}, "head_channels": 8,
           "attn_dim": 4, "head_layers": 1}
HEAD = {"window": 4, "heads": 2, "head_dim": 3, "ffn_dim": 10, "conf_hidden": 5, "conv_kernel": 3,
        "group_expand": 2, "inter_channels": 6}
N, L = 7, 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(seed: int = 0, randomize: bool = True, **options) -> OneDFormer:
    """A tiny float64 1DFormer; ``randomize`` replaces the identity init so every branch really acts."""
    torch.manual_seed(seed)
    model = build_model("1dformer", encoder=ENCODER, **{**HEAD, **options})
    assert isinstance(model, OneDFormer)
    model = model.double().eval()
    if randomize:
        with torch.no_grad():
            for name, p in model.head.named_parameters():
                is_norm_scale = p.ndim == 1 and name.endswith("weight")  # LayerNorm gains stay near 1
                p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.1) + (1.0 if is_norm_scale else 0.0))
    return model


def features(b: int = 2, t: int = 25, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, N, L, generator=g, dtype=torch.float64),
            torch.randn(b, t, N, L, generator=g, dtype=torch.float64))


def stream(model: OneDFormer, sx: torch.Tensor, sy: torch.Tensor) -> dict[str, torch.Tensor]:
    state = model.init_state(sx.shape[0])
    frames = []
    for i in range(sx.shape[1]):
        out, state = model.step_features(sx[:, i], sy[:, i], state)
        frames.append(out)
    return {k: torch.stack([f[k] for f in frames], dim=1) for k in frames[0]}


def _combos() -> list[dict]:
    seen, combos = set(), []
    for temporal, recurrent, confidence, intra, inter, norm in itertools.product(
        ("none", "attention", "average"), (True, False), (True, False), (True, False), (True, False), ("pre", "post")
    ):
        options = {"temporal": temporal, "recurrent": recurrent, "confidence": confidence, "intra_group": intra,
                   "inter_group": inter, "norm": norm}
        config = make(randomize=False, **options).config
        key = tuple(sorted((k, str(v)) for k, v in config.items() if k != "encoder"))
        if key not in seen:
            seen.add(key)
            combos.append(options)
    return combos


COMBOS = _combos()


def test_every_ablation_combination_is_distinct_and_table1_rows_build():
    # x (intra, inter, norm): none 1, average 2 (recurrent), attention 4 (recurrent x confidence)
    assert len(COMBOS) == 8 * (1 + 2 + 4)
    for row, options in ABLATIONS.items():
        model = make(randomize=False, **options)
        assert model.config["temporal"] == options["temporal"], row


@pytest.mark.parametrize("options", COMBOS, ids=lambda o: "-".join(f"{k[:4]}={v}" for k, v in o.items()))
def test_streaming_equals_clip_forward(options):
    model = make(**options)
    sx, sy = features()
    with torch.no_grad():
        clip = model.forward_features(sx, sy)
        streamed = stream(model, sx, sy)
    assert set(clip) == set(streamed)
    assert clip["hx"].shape == (2, 25, N, L)
    for key in clip:
        torch.testing.assert_close(streamed[key], clip[key], atol=1e-5, rtol=0)
    if model.config["confidence"]:
        assert clip["cx"].shape == clip["cy"].shape == (2, 25, N)
        assert ((clip["cx"] > 0) & (clip["cx"] < 1)).all()
    else:
        assert "cx" not in clip


@pytest.mark.parametrize("options", [
    {"temporal": "attention"}, {"temporal": "attention", "recurrent": False}, {"temporal": "average"},
])
def test_outputs_at_t_do_not_depend_on_later_frames(options):
    model = make(**options)
    sx, sy = features(t=12)
    sx2, sy2 = sx.clone(), sy.clone()
    sx2[:, 7:] += torch.randn(N, L, dtype=torch.float64)
    sy2[:, 7:] -= torch.randn(N, L, dtype=torch.float64)
    with torch.no_grad():
        a, b = model.forward_features(sx, sy), model.forward_features(sx2, sy2)
    torch.testing.assert_close(a["hx"][:, :7], b["hx"][:, :7], atol=1e-12, rtol=0)
    torch.testing.assert_close(a["hy"][:, :7], b["hy"][:, :7], atol=1e-12, rtol=0)
    assert (a["hx"][:, 7:] - b["hx"][:, 7:]).abs().max() > 1e-3


def test_bl_and_structure_only_are_per_frame():
    # temporal="none": each frame's output is the model run on that frame alone.
    for options in (ABLATIONS["BL"], ABLATIONS["BL+IR+IT"]):
        model = make(**options)
        sx, sy = features(t=6)
        with torch.no_grad():
            clip = model.forward_features(sx, sy)
            single = [model.forward_features(sx[:, i:i + 1], sy[:, i:i + 1]) for i in range(6)]
        for i in range(6):
            torch.testing.assert_close(clip["hx"][:, i:i + 1], single[i]["hx"], atol=1e-12, rtol=0)
        assert not [n for n, _ in model.head.named_parameters() if "blocks" in n]


def test_bl_is_the_encoder_decoders_only():
    model = make(**ABLATIONS["BL"])
    assert sum(p.numel() for p in model.head.parameters()) == 0
    sx, sy = features(t=3)
    with torch.no_grad():
        out = model.forward_features(sx, sy)
    torch.testing.assert_close(out["hx"], model.decoder_x(sx.reshape(-1, N, L)).reshape(sx.shape))


def test_recurrence_carries_memory_beyond_the_window():
    w = HEAD["window"]
    sx, sy = features(t=12)
    sx2 = sx.clone()
    sx2[:, 2] += torch.randn(N, L, dtype=torch.float64)  # frame 2 is outside the window of frame 2 + w
    for recurrent in (True, False):
        model = make(temporal="attention", recurrent=recurrent)
        with torch.no_grad():
            a, b = model.forward_features(sx, sy), model.forward_features(sx2, sy)
        inside = (a["hx"][:, 2 + w - 1] - b["hx"][:, 2 + w - 1]).abs().max()
        beyond = (a["hx"][:, 2 + w:] - b["hx"][:, 2 + w:]).abs().max()
        assert inside > 1e-3
        if recurrent:
            assert beyond > 1e-6  # s'_(t-1) remembers frame 2
        else:
            assert beyond == 0  # TE^-r: the window holds raw features only


def test_recurrent_window_matches_eq2_written_out():
    # Eq. 2 with the window rebuilt from stored s' every frame (no cache): checks the cache order and shift.
    model = make(temporal="attention", intra_group=False, inter_group=False)
    block, w = model.head.blocks["x"], HEAD["window"]
    sx, sy = features(b=1, t=9)
    refined: list[torch.Tensor] = []
    with torch.no_grad():
        for t in range(9):
            past = range(1, min(w, t + 1))
            tokens = torch.stack([sx[:, t]] + [refined[t - i] for i in past], dim=2)  # (B, N, w', L)
            raw = torch.stack([sx[:, t]] + [sx[:, t - i] for i in past], dim=2)
            keys, values = block.keys_values(tokens)
            valid = torch.ones(1, tokens.shape[2], dtype=torch.bool)
            refined.append(block.attend(sx[:, t], keys, values, block.confidences(raw), valid))
        out = model.head.forward_sequence(sx, sy)
    torch.testing.assert_close(out["ux"], torch.stack(refined, dim=1))
    torch.testing.assert_close(out["cx"], block.confidences(sx))


def test_clip_start_is_a_shorter_window_not_zero_padding():
    model = make(temporal="attention", recurrent=False)
    sx, sy = features(t=4)
    zeros = torch.zeros_like(sx[:, :3])
    with torch.no_grad():
        first = model.forward_features(sx[:, :1], sy[:, :1])
        padded = model.forward_features(torch.cat([zeros, sx[:, :1]], 1), torch.cat([zeros, sy[:, :1]], 1))
        out = model.forward_features(sx, sy)
    torch.testing.assert_close(out["hx"][:, :1], first["hx"])
    assert (padded["hx"][:, 3:] - first["hx"]).abs().max() > 1e-3


def test_confidence_switch_and_eq4_weighting():
    with_c, without = make(confidence=True), make(confidence=False)
    assert any("confidence" in n for n, _ in with_c.named_parameters())
    assert not any("confidence" in n for n, _ in without.named_parameters())
    assert make(temporal="average", confidence=True).config["confidence"] is False
    # Eq. 4: confidences multiply the logits; all-zero confidences make the weights uniform over the window.
    block = with_c.head.blocks["x"]
    s = torch.randn(3, N, L, dtype=torch.float64)
    tokens = torch.randn(3, N, 4, L, dtype=torch.float64)
    keys, values = block.keys_values(tokens)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        zero_conf = block.attend(s, keys, values, torch.zeros(3, N, 4, dtype=torch.float64), valid)
        one_conf = block.attend(s, keys, values, torch.ones(3, N, 4, dtype=torch.float64), valid)
        plain = block.attend(s, keys, values, None, valid)
        v = values + block.embed_v[:, :4]
        mean = (v * valid[:, None, :, None]).sum(2) / valid.sum(1)[:, None, None]
        x = s + block.proj(mean)
        expected = x + block.ffn(block.norm2(x))
    torch.testing.assert_close(zero_conf, expected)
    torch.testing.assert_close(one_conf, plain)
    assert (zero_conf - plain).abs().max() > 1e-3


def test_average_mode_adds_the_window_mean():
    model = make(temporal="average", recurrent=False, intra_group=False, inter_group=False)
    block = model.head.blocks["x"]
    assert block.query is None and block.key is None and block.confidence is None
    sx, sy = features(b=1, t=6)
    with torch.no_grad():
        out = model.head.forward_sequence(sx, sy)["ux"]
        t, w = 5, HEAD["window"]
        _, v = block.keys_values(sx[0, t - w + 1:t + 1].flip(0).transpose(0, 1))  # (N, W, D), newest first
        x = sx[0, t] + block.proj((v + block.embed_v).mean(1))
        expected = x + block.ffn(block.norm2(x))
    torch.testing.assert_close(out[0, t], expected)


def test_intra_group_mixes_within_groups_and_inter_group_across():
    groups = list(get_scheme("common7").groups.values())
    first = groups[0]
    others = [i for i in range(N) if i not in first]
    sx, sy = features(b=1, t=1)
    sx2 = sx.clone()
    sx2[..., first[0], :] += torch.randn(L, dtype=torch.float64)  # not a constant: LayerNorm would erase it
    for options, far_changes in ((ABLATIONS["BL+IR"], False), (ABLATIONS["BL+IT"], True)):
        model = make(**options)
        with torch.no_grad():
            a, b = model.head.forward_sequence(sx, sy)["ux"], model.head.forward_sequence(sx2, sy)["ux"]
        diff = (a - b).abs().amax(-1)[0, 0]
        assert diff[list(first)].min() > 1e-4
        assert (diff[others].max() > 1e-4) == far_changes


def test_structure_needs_the_schemes_point_count():
    with pytest.raises(ModelError, match="groups"):
        build_model("1dformer", encoder={**ENCODER, "scheme": "ibug68"}, **HEAD)
    model = build_model("1dformer", encoder={**ENCODER, "scheme": "ibug68"}, intra_group=False, **HEAD)
    assert model.num_points == N
    with pytest.raises(ModelError, match="temporal"):
        build_model("1dformer", encoder=ENCODER, temporal="lstm")


def test_fresh_pre_norm_model_is_its_encoder():
    torch.manual_seed(0)
    encoder = build_model("aohr", **{k: v for k, v in ENCODER.items() if k != "arch"})
    encoder(torch.rand(4, 3, 32, 32))  # non-default BatchNorm statistics
    encoder.eval()
    with torch.no_grad():
        encoder.decoder_x.weight.add_(0.1 * torch.randn_like(encoder.decoder_x.weight))
    model = OneDFormer.from_encoder(encoder, **HEAD).eval()
    images = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_sequence(images)
        ref = encoder(images[0])
    torch.testing.assert_close(out["hx"][0], ref["hx"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["hy"][0], ref["hy"], atol=1e-5, rtol=0)
    coords, conf = model.decode(out)
    assert coords.shape == (1, 5, N, 2) and conf.shape == (1, 5, N)


def test_image_streaming_and_per_frame_forward():
    model = make(seed=3)
    model.float()
    images = torch.rand(2, 6, 3, 32, 32)
    with torch.no_grad():
        clip = model.forward_sequence(images)
        state = model.init_state(2)
        for i in range(6):
            out, state = model.step(images[:, i], state)
        first = model(images[:, 0])
    torch.testing.assert_close(out["hx"], clip["hx"][:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(first["hx"], clip["hx"][:, 0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="faces"):
        model.step(images[:, 0], model.init_state(3))


def test_state_is_o_w_and_splits_per_face():
    model = make()
    sx, sy = features(b=3, t=30)
    state = model.init_state(3)
    sizes = []
    for i in range(30):
        _, state = model.step_features(sx[:, i], sy[:, i], state)
        sizes.append(sum(t.numel() for t in state.tensors.values()))
    assert len(set(sizes)) == 1  # constant: the window cache, never the history
    assert state.tensors["vx"].shape[2] == HEAD["window"] - 1
    parts = state.split()
    assert len(parts) == 3 and all(p.batch == 1 for p in parts)
    again = TemporalState.cat([parts[2], parts[0], parts[1]])
    torch.testing.assert_close(again.tensors["kx"][0], state.tensors["kx"][2])
    # faces of different ages stepped in one batch = each stepped alone
    young = model.init_state(1)
    _, young = model.step_features(sx[:1, 0], sy[:1, 0], young)
    batch = TemporalState.cat([young, parts[1]])
    with torch.no_grad():
        joint, _ = model.step_features(sx[:2, 1], sy[:2, 1], batch)
        alone, _ = model.step_features(sx[1:2, 1], sy[1:2, 1], parts[1])
    torch.testing.assert_close(joint["hx"][1:], alone["hx"])


def test_hub_round_trip(tmp_path):
    model = make(seed=5).float()
    save_model(model, tmp_path / "former", {"name": "tiny-1dformer"})
    loaded = load_model(tmp_path / "former")
    assert isinstance(loaded, OneDFormer) and loaded.config == model.config
    assert loaded.config["encoder"]["arch"] == "aohr"
    sx, sy = features(t=5)
    with torch.no_grad():
        a = model.forward_features(sx.float(), sy.float())
        b = loaded.forward_features(sx.float(), sy.float())
    for key in a:
        assert torch.equal(a[key], b[key])


def test_loss_terms_and_confidence_switch():
    model = make(lambda_c=2.0)
    sx, sy = features(b=2, t=3)
    out = model.forward_features(sx, sy)
    targets = {"hx": torch.rand(2, 3, N, L), "hy": torch.rand(2, 3, N, L), "weight": torch.ones(2, 3, N)}
    base = model.loss(out, targets)
    expected = ((out["hx"] - targets["hx"]).pow(2).sum(-1) + (out["hy"] - targets["hy"]).pow(2).sum(-1)).sum(-1).mean()
    torch.testing.assert_close(base, expected.to(base))
    conf = {"cx": torch.full((2, 3, N), 0.5), "cy": torch.full((2, 3, N), 0.5)}
    conf["cx"][0, 0, 0] = float("nan")  # unknown label: ignored
    with_c = model.loss(out, {**targets, **conf})
    cx, cy = out["cx"].detach().clone(), out["cy"]
    cx[0, 0, 0] = 0.5
    lc = ((cx - 0.5).pow(2).sum(-1) + (cy - 0.5).pow(2).sum(-1)).mean()
    torch.testing.assert_close(with_c, base + 2.0 * lc)
    model.set_confidence_loss(False)
    torch.testing.assert_close(model.loss(out, {**targets, **conf}), base)


def test_tiny_clip_overfits():
    torch.manual_seed(0)
    model = build_model("1dformer", encoder=ENCODER, **HEAD)
    images = torch.rand(1, 5, 3, 32, 32)
    codec = model.codec
    points = torch.rand(5, N, 2).numpy() * 20 + 6
    encoded = [model.encode_targets(p) for p in points]
    targets = {k: torch.stack([torch.from_numpy(e[k]) for e in encoded])[None] for k in ("hx", "hy", "weight")}
    targets["cx"] = torch.full((1, 5, N), 0.8)
    targets["cy"] = torch.full((1, 5, N), 0.8)
    assert codec.length == L
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(40):
        loss = model.loss(model.forward_sequence(images), targets)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0]


def test_frozen_encoder_gets_no_gradient():
    model = build_model("1dformer", encoder=ENCODER, freeze_encoder=True, **HEAD)
    model.train()
    assert not model.encoder.training and model.head.training
    out = model.forward_sequence(torch.rand(1, 3, 3, 32, 32))
    (out["hx"].sum() + out["cx"].sum()).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert set(map(id, model.temporal_parameters())) == {id(p) for p in model.parameters() if p.requires_grad}


def test_lite_preset_builds_on_the_lite_encoder():
    model = build_model("1dformer-lite-128")
    assert model.config["encoder"]["backbone"]["name"] == "lite" and model.length == 384 and model.num_points == 68
    assert model.config["window"] == 10

