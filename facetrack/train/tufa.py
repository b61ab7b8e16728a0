"""Training TUFA (``facetrack.models.tufa``) on one or several datasets, each in its own landmark scheme.

Every dataset's faces keep their scheme; the plane positions of its points are its Procrustes mean shape,
affine-aligned onto the primary dataset's (through the ``scheme.json`` iBUG-68 correspondences) and then moved
by its learnable semantic alignment embedding. Each step keeps ``tufa.anchors`` random points per face (24, as the
thesis; all of them for a dataset with fewer) and minimises the L1 loss of Eq. 6.12 over them; batches mix the
datasets as ``facetrack.train.multi`` draws them. Validation: the primary dataset's held-out faces, all points.

Recipes: ``configs/tufa_cpu_300w.yaml`` (300-W only), ``configs/tufa_cpu_mixed.yaml`` (mixed),
``configs/tufa_vits16_mixed.yaml`` (the thesis's size, for a GPU) and ``configs/tufa_fewshot_mtfl5.yaml``
(few-shot: ``model.init_weights`` + a new dataset whose embedding starts at zero).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from facetrack.data.sample import FaceSample
from facetrack.errors import DataError
from facetrack.train.module import LandmarkModule

log = logging.getLogger(__name__)

ANCHORS = 24  # N_a: kept anchors per face per step (thesis section 6.2.2)


@dataclass(frozen=True)
class _FlipPerm:
    """The part of a scheme the Augmenter reads (flip permutation)."""

    name: str
    flip_perm: tuple[int, ...]


class MixedSchemeDataset(Dataset):
    """Faces of several schemes: items ``image`` (3, F, F), ``targets`` {"points" (P, 2) normalised crop coords,
    padded to P = the largest scheme, "weight" (P,) 0 on padding and on ``withheld[d]``, the native indices of
    dataset d that never carry a loss}, ``dataset`` (index into the model's datasets)."""

    def __init__(self, groups: list[tuple[int, list[FaceSample], list[np.ndarray], tuple[int, ...]]],
                 model: Any, augmenter: Any, pad: int, crop_scale: float = 1.25,
                 withheld: dict[int, set[int]] | None = None) -> None:
        self.items = [(d, s, box, perm) for d, samples, boxes, perm in groups for s, box in zip(samples, boxes)]
        self.model, self.augmenter, self.pad, self.crop_scale = model, augmenter, pad, crop_scale
        self.withheld = {d: sorted(v) for d, v in (withheld or {}).items() if v}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from facetrack.data.transforms import apply_affine, crop_for_inference

        d, sample, box, perm = self.items[index]
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        n = len(points)
        if self.augmenter is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            result = self.augmenter(image, points, box, _FlipPerm(sample.scheme, perm), rng)
            crop, crop_points = result.crop, result.points
        else:
            crop, matrix = crop_for_inference(image, box, self.model.input_size, self.crop_scale)
            crop_points = apply_affine(points, matrix)
        padded = np.zeros((self.pad, 2))
        padded[:n] = self.model.to_normalised(crop_points)
        weight = np.zeros(self.pad)
        weight[:n] = 1.0
        weight[self.withheld.get(d, [])] = 0.0  # a flip permutes points within the withheld set (jaw to jaw)
        rgb = np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))
        return {"image": torch.from_numpy(rgb).float().div_(255.0),
                "targets": {"points": torch.from_numpy(padded).float(), "weight": torch.from_numpy(weight).float()},
                "dataset": d}


class TufaModule(LandmarkModule):
    """LandmarkModule with TUFA's training step (random anchors per face, per-dataset plane points) and AdamW."""

    def __init__(self, model: Any, optim: Any, max_epochs: int, anchors: int = ANCHORS) -> None:
        super().__init__(model, optim, max_epochs)
        self.anchors = anchors

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        model = self.model
        weight = batch["targets"]["weight"]  # (B, P)
        b, p = weight.shape
        table = torch.stack([torch.nn.functional.pad(model.anchors(n), (0, 0, 0, p - len(model.anchors(n))))
                             for n in model.datasets])  # (D, P, 2), gradients reach the embeddings
        k = min(self.anchors, p)
        scores = torch.rand(b, p, device=weight.device).masked_fill(weight <= 0, -1.0)
        index = scores.topk(k, dim=1).indices  # (B, k): random points of each face's own scheme first
        rows = torch.arange(b, device=weight.device)[:, None]
        plane = table[batch["dataset"].long()][rows, index]
        targets = {"points": batch["targets"]["points"][rows, index], "weight": weight[rows, index]}
        outputs = model(batch["image"], plane)
        loss = model.loss(outputs, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {self.current_epoch}")
        self._train_sum += torch.tensor([loss.item() * b, b], dtype=torch.float64)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=b)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)


def plane_shapes(primary: list[FaceSample], extras: list[Any], reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean shapes on the face plane: the primary's normalised to [-1, 1] (or ``reference``, a 68-point plane
    shape, e.g. a trained model's anchors), the others' affine-aligned onto it."""
    from facetrack.data.shape_model import procrustes_align
    from facetrack.models.tufa import plane_shape

    if reference is None:
        reference = plane_shape(procrustes_align(np.stack([s.landmarks for s in primary]))[1])
    shapes = {"primary": reference}
    for src in extras:
        faces = np.stack([s.landmarks for s in src.samples])
        # one face (1-shot): its own shape is the mean; the affine alignment below fixes position and scale
        mean = procrustes_align(faces)[1] if len(faces) > 1 else faces[0] - faces[0].mean(0)
        pairs = [(idx, i) for i, (idx, _) in sorted(src.ibug68.items())]
        shapes[src.name] = plane_shape(mean, reference, pairs)
    return shapes


def load_backbone(model: Any, path: str) -> None:
    """Copy the ``backbone.*`` weights of a facetrack CNN model (e.g. ``facetrack/weights/aohr-68``) into a TUFA
    whose stem is that backbone (``stem: cnn`` with the same ``backbone`` spec)."""
    from facetrack.models.hub import load_model

    source = load_model(path)
    state = {k[len("backbone."):]: v for k, v in source.state_dict().items() if k.startswith("backbone.")}
    if not state:
        raise DataError(path, "has no backbone.* weights to start a TUFA stem from")
    try:
        model.stem[0].load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, IndexError) as exc:
        raise DataError(path, f"its backbone does not match the TUFA stem ({exc})") from None


def train_tufa(config: Any, resume: bool | None = None) -> dict[str, Any]:
    """``facetrack train`` for a TUFA recipe (a ``mix`` recipe whose ``model.arch`` starts with "tufa")."""
    import yaml
    from torch.utils.data import DataLoader

    from facetrack.data import catalog
    from facetrack.data.transforms import Augmenter
    from facetrack.models.registry import build_model
    from facetrack.schemes import get_scheme
    from facetrack.train.dataset import LandmarkDataset, split_train_val
    from facetrack.train.multi import (extra_sources, mean_shape_68, mix_fractions, mixed_card,
                                       mixed_sampler, to_ibug68)
    from facetrack.train.run import DATA_TERMS as PRIMARY_TERMS
    from facetrack.train.run import prepare_run

    t, data, mix = config.trainer, config.data, config.mix
    out, last, resume = prepare_run(config, resume)
    primary, val = split_train_val(data, config.source, out)
    extras = extra_sources(mix, config.source) if mix.extra else []  # none: a single-dataset TUFA
    names = ["primary"] + [s.name for s, _ in extras]
    model_config = dict(config.model.config)
    wanted = [[data.dataset, 68]] + [[s.name, s.num_points] for s, _ in extras]
    model = build_model(config.model.arch, **{**model_config, "datasets": wanted})
    shapes = plane_shapes(primary, [s for s, _ in extras])
    if config.model.init_weights and not resume:
        from facetrack.models.hub import load_model

        start = load_model(config.model.init_weights)
        if start.arch != "tufa":
            raise DataError(config.source, "model.init_weights must be a TUFA model")
        state = start.state_dict()
        own = model.state_dict()
        new = [n for n, _ in wanted if f"align.{n}" not in state]
        bad = [k for k in own if k in state and state[k].shape != own[k].shape]
        if bad:
            raise DataError(config.source, f"model.init_weights differs in shape from the recipe's model ({bad[:3]})")
        model.load_state_dict({**own, **{k: v for k, v in state.items() if k in own}})
        log.info("fine-tuning from %s; new datasets (fresh embeddings): %s", config.model.init_weights, new)
        for n, key in zip([d for d, _ in wanted], names):
            if n in new:
                model.set_mean_shape(n, shapes[key])
    elif not resume:
        for (n, _), key in zip(wanted, names):
            model.set_mean_shape(n, shapes[key])
        if model.config.get("backbone_init"):  # stem "cnn": start from a trained facetrack CNN's backbone
            load_backbone(model, model.config["backbone_init"])

    augmenter = Augmenter(out_size=model.input_size, scale=data.crop_scale, **data.augment.augmenter_kwargs()) \
        if data.augment.enabled else None
    mean68 = mean_shape_68(primary)
    from facetrack.data.transforms import box_from_landmarks

    groups = [(0, primary, [box_from_landmarks(s.landmarks) for s in primary],
               tuple(get_scheme("ibug68").flip_perm))]
    for d, (src, _) in enumerate(extras, start=1):
        filled = to_ibug68(src, mean68, "single")  # a 68-point extent box, as the primary's crops are cut
        groups.append((d, src.samples, [box_from_landmarks(f.landmarks) for f in filled], src.flip_perm))
    withheld = {0: set(mix.withhold)} | {d: src.withheld(mix.withhold) for d, (src, _) in enumerate(extras, start=1)}
    if mix.withhold:
        log.info("withheld points (never supervised): %s", {wanted[d][0]: sorted(v) for d, v in withheld.items()})
    train_set = MixedSchemeDataset(groups, model, augmenter, max(k for _, k in wanted), data.crop_scale, withheld)
    val_set = LandmarkDataset(val, model.encode_targets, model.input_size, model.scheme, False, data.crop_scale)
    fractions = mix_fractions(mix, [w for _, w in extras]) if extras else [1.0]
    epoch_faces = mix.epoch_faces or len(primary)
    sampler = mixed_sampler([len(g[1]) for g in groups], fractions, epoch_faces)
    (out / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    (out / "mix.json").write_text(json.dumps({"datasets": wanted, "fractions": fractions, "epoch_faces": epoch_faces,
                                              "faces": [len(g[1]) for g in groups]}, indent=1) + "\n",
                                  encoding="utf-8")
    loader_args = {"batch_size": config.optim.batch_size, "num_workers": t.num_workers, "persistent_workers": False}
    train_loader = DataLoader(train_set, sampler=sampler, drop_last=True, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    module = TufaModule(model, config.optim, t.max_epochs)
    terms = [PRIMARY_TERMS.get(data.dataset, "unknown"), *(catalog.terms(s.name) for s, _ in extras)]

    def card() -> dict[str, Any]:
        out = mixed_card(config, len(primary), len(val), {s.name: len(s.samples) for s, _ in extras}, fractions,
                         epoch_faces, terms)
        out["tufa"] = {"datasets": wanted, "pretrained": (f"encoder CNN started from {model.config['backbone_init']} (trained on the same 300-W "
                                     "training faces); the rest from scratch (no DINO weights offline)"
                                     if model.config.get("backbone_init") else
                                     "none: trained from scratch (no DINO weights offline)"),
                       "zero_shot": "facetrack.Detector(model, points=...), facetrack detect --points, facetrack meanface",
                       "withheld": {wanted[d][0]: sorted(v) for d, v in withheld.items() if v}}
        return out

    from facetrack.train.run import fit

    return fit(config, module, train_loader, val_loader, card, resume)
