"""Training temporal models (1DFormer, the AOHR tracker) on clips, with ``facetrack train CONFIG``.

A recipe whose ``data.dataset`` is a clip dataset (``pseudo300w``, ``300vw``) is a :class:`TemporalTrainConfig`: the usual
sections plus ``model.encoder_weights`` (a trained per-frame AOHR to start from), ``data.confidence_labels``
(an RLE model giving 1DFormer's confidence pseudo-labels) and ``data.clips`` (clip length, crop policy,
pseudo-video settings, the optional feature cache). It trains through the same ``facetrack.train.run.train``
as every recipe (this module registers the ``temporal`` recipe kind); everything else -- the LightningModule's
schedule and reductions, safetensors checkpoints, resume, ``metrics.csv`` -- is the per-frame training stack's.

Clip datasets are the catalogue's video datasets with a ``clips`` hook (``facetrack.data.catalog``):

- ``pseudo300w``: pseudo-videos made on the fly from the *training* identities of the shared 300-W crops
  (``load_shared300w(root, "train")``; the expression model is fitted on them only); validation on fixed
  pseudo-videos of the held-out identities (``"val"``), never used for training (``facetrack.data.pseudo``).
- ``300vw``: clips of the 300VW training videos (fine-tuning); ``data.val_fraction`` of them held out
  (``facetrack.data.w300vw``).
- Loss (Eq. 7 of 1DFormer): L_h + lambda_c L_c for the first half of the epochs, L_h alone after. L_c needs
  ``data.confidence_labels``; without it L_c is off for the whole run (the card says so), and the confidence
  branches learn only through the attention they gate.
- ``optim.jitter_weight`` > 0 adds ``jitter_loss`` (FHR's e3 jitter of the prediction's error, in frame space) to
  Eq. 7: our addition, off by default and recorded in the card.
- ``data.clips.feature_cache``: frozen-encoder training. The encoder runs once over a fixed set of clips and
  the head trains on the stored features (minutes on a CPU). The encoder is then *not* fine-tuned, a
  deviation from the paper's end-to-end training that the card records.
- Validation (``val_nme`` in ``metrics.csv``): video NRMSE, i.e. inter-ocular NME of every frame in frame
  pixels, averaged per clip and then over clips. Crops follow the training crop policy with a fixed seed
  (from the GT of the previous frame plus noise), not the model's own predictions: closed-loop tracking is
  measured by ``facetrack evaluate --video`` and ``benchmarks/ablation.py``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from facetrack.errors import DataError
from facetrack.train.config import DataSection, ModelSection, OptimSection, TrainConfig

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- recipe


@dataclass
class TemporalModelSection(ModelSection):
    """``model.encoder_weights``: a trained per-frame AOHR (``runs/*/best.safetensors``) whose encoder and
    1D decoders initialise the temporal model (its architecture replaces the preset's encoder), or a trained
    temporal model of the same architecture to continue from (e.g. fine-tuning on 300VW)."""

    arch: str = "1dformer-lite-128"
    encoder_weights: str = ""


@dataclass
class ClipSection:
    """How training clips are made and cut (``facetrack.data.sequences``)."""

    num_frames: int = 16
    clips_per_still: int = 1          # pseudo300w: clips of every training still per epoch
    clips: int = 0                    # 300vw: clips per epoch (0: one per non-overlapping window)
    val_clips: int = 64               # fixed validation clips
    video: dict[str, Any] = field(default_factory=dict)   # PseudoVideoConfig overrides, e.g. {size: [256, 256]}
    policy: dict[str, Any] = field(default_factory=dict)  # TrackerCropPolicy overrides (crop_scale: data.crop_scale)
    shape_modes: int = 0              # expression model modes (0: those explaining 98% of the variance)
    feature_cache: str = ""           # folder: frozen-encoder training on cached features
    cache_clips: int = 512            # training clips in the cache (the val cache holds val_clips)
    cache_window: int = 0             # train on the first frames of cached clips only (0: all)
    reverse: bool = False             # training clips played backwards at random (facetrack.data.clip_augment)
    flip: bool = False                # training clips mirrored at random (rendered clips only, not the cache)


@dataclass
class TemporalDataSection(DataSection):
    dataset: str = "pseudo300w"
    confidence_labels: str = ""       # RLE model (name or path) for 1DFormer's L_c; empty: L_c off
    clips: ClipSection = field(default_factory=ClipSection)


@dataclass
class TemporalOptimSection(OptimSection):
    """``jitter_weight``: weight of a training-only jitter loss (``jitter_loss``) added to Eq. 7; 0: the paper's
    loss alone."""

    jitter_weight: float = 0.0


@dataclass
class TemporalTrainConfig(TrainConfig):
    """A recipe for a temporal model (see the module docstring)."""

    model: TemporalModelSection = field(default_factory=TemporalModelSection)
    data: TemporalDataSection = field(default_factory=TemporalDataSection)
    optim: TemporalOptimSection = field(default_factory=TemporalOptimSection)


def is_temporal_recipe(raw: dict[str, Any]) -> bool:
    """Whether a raw recipe mapping trains a temporal model (``data.dataset`` is a clip dataset)."""
    from facetrack.data.catalog import list_datasets

    data = raw.get("data")
    return isinstance(data, dict) and data.get("dataset") in list_datasets(clips=True)


# ---------------------------------------------------------------------------------------------- model


def build_temporal_model(section: TemporalModelSection, source: str | Path = "<recipe>",
                         freeze_encoder: bool | None = None) -> Any:
    """The temporal model of a recipe, with the encoder and decoders of ``encoder_weights`` when given."""
    from facetrack.models.aohr import AOHR
    from facetrack.models.hub import load_model
    from facetrack.models.registry import build_model
    from facetrack.models.temporal.base import TemporalLandmarkModel

    config = dict(section.config)
    standalone = _standalone(section.arch)
    if standalone:  # a temporal model without an AOHR encoder (local-motion networks): trained from scratch
        if section.encoder_weights or freeze_encoder:
            raise DataError(source, f"{section.arch} has no separate encoder: leave model.encoder_weights and "
                                    "data.clips.feature_cache empty")
        return build_model(section.arch, **config)
    if freeze_encoder is not None:
        config["freeze_encoder"] = freeze_encoder
    encoder = start = None
    if section.encoder_weights:
        encoder = load_model(section.encoder_weights)
        if isinstance(encoder, TemporalLandmarkModel):  # e.g. fine-tuning a pseudo-video model on 300VW
            start, encoder = encoder, encoder.encoder
        if not isinstance(encoder, AOHR):
            raise DataError(section.encoder_weights, f"model.encoder_weights must be an AOHR or a temporal model, "
                                                     f"got {type(encoder).__name__}")
        config["encoder"] = {"arch": encoder.arch, **encoder.config}
    model = build_model(section.arch, **config)
    if not isinstance(model, TemporalLandmarkModel):
        raise DataError(source, f"model.arch {section.arch!r} is not a temporal model (1dformer, aohr-tracker)")
    if start is not None:
        if start.arch != model.arch or {k: v for k, v in start.config.items() if k != "freeze_encoder"} != \
                {k: v for k, v in model.config.items() if k != "freeze_encoder"}:
            raise DataError(section.encoder_weights, f"holds {start.arch} {start.config}; the recipe builds "
                                                     f"{model.arch} {model.config}")
        model.load_state_dict(start.state_dict())
    elif encoder is not None:
        model.encoder.load_state_dict(encoder.state_dict())
        model.decoder_x.load_state_dict(encoder.decoder_x.state_dict())
        model.decoder_y.load_state_dict(encoder.decoder_y.state_dict())
    elif model.freeze_encoder:
        raise DataError(source, "a frozen encoder needs trained weights: set model.encoder_weights=PATH")
    return model


def _standalone(arch: str) -> bool:
    """Whether ``arch`` (a name or preset) is a temporal model with its own streaming state and no AOHR encoder."""
    from facetrack.models.registry import resolve

    return resolve(arch)[0] in STANDALONE_ARCHS


STANDALONE_ARCHS = ("local-motion", "crct-bt")


# ---------------------------------------------------------------------------------------------- data


def _policy(data: TemporalDataSection, source: str | Path) -> Any:
    from facetrack.data.sequences import TrackerCropPolicy

    try:
        return TrackerCropPolicy(**{"crop_scale": data.crop_scale, **data.clips.policy})
    except TypeError as exc:
        raise DataError(source, f"data.clips.policy: {exc}") from None


def clip_sources(data: TemporalDataSection, source: str | Path = "<recipe>") -> tuple[Any, Any, dict[str, Any]]:
    """(train source, validation source, description) of a clip recipe: the dataset's ``clips`` hook."""
    from facetrack.data.catalog import get_dataset, list_datasets

    known = list_datasets(clips=True)
    if data.dataset not in known:
        raise DataError(source, f"data.dataset {data.dataset!r} is not a clip dataset ({', '.join(known)})")
    if not data.root:
        raise DataError(source, f"data.root is empty: set it to the {data.dataset} folder")
    return get_dataset(data.dataset).clips(data, source)


def build_clip_datasets(config: TemporalTrainConfig, model: Any, rle: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """(train, val) datasets: rendered clips, or cached encoder features with ``data.clips.feature_cache``."""
    from facetrack.data.sequences import ClipDataset, FeatureClipDataset, read_cache_meta

    data = config.data
    train_source, val_source, info = clip_sources(data, config.source)
    policy = _policy(data, config.source)
    make = getattr(model, "clip_dataset", None)
    if callable(make) and not data.clips.feature_cache:  # a model with items of its own (CRCT's BT: crop pairs)
        return make(train_source, policy, None), make(val_source, policy, data.seed + 1), info
    if not data.clips.feature_cache:
        train_set: Any = ClipDataset(train_source, model.encode_targets, model.input_size, policy, seed=None)
        if data.clips.reverse or data.clips.flip:
            from facetrack.data.clip_augment import AugmentedClips

            train_set = AugmentedClips(train_set, model.encode_targets, model.input_size, model.scheme,
                                       data.clips.reverse, data.clips.flip)
        return (train_set,
                ClipDataset(val_source, model.encode_targets, model.input_size, policy, seed=data.seed + 1), info)
    if data.clips.flip or data.clips.reverse:
        raise DataError(config.source, "data.clips.flip / reverse need rendered clips, not a feature_cache")
    root = Path(data.clips.feature_cache)
    encoder_card = config.model.encoder_weights
    for name, src, count, seed in (("train", train_source, data.clips.cache_clips, data.seed),
                                   ("val", val_source, data.clips.val_clips, data.seed + 1)):
        folder = root / name
        wanted = {"encoder_weights": str(encoder_card), "dataset": data.dataset, "root": str(data.root),
                  "num_frames": data.clips.num_frames, "policy": json.loads(json.dumps(dataclasses.asdict(policy)))}
        try:
            meta = read_cache_meta(folder)
            stale = any(meta.get(k) != v for k, v in wanted.items()) or meta["clips"] != min(count, len(src)) \
                or bool(meta.get("confidence_labels")) != (rle is not None)
        except DataError:
            meta, stale = None, True
        if stale:
            if meta is not None:
                raise DataError(folder, "the feature cache was made with other settings; delete it or choose another "
                                        "data.clips.feature_cache")
            ds = ClipDataset(src, model.encode_targets, model.input_size, policy, seed=seed)
            ds = _Subset(ds, min(count, len(src)))
            log.info("feature cache: encoding %d %s clips of %d frames -> %s", len(ds), name, data.clips.num_frames,
                     folder)
            labels_fn: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
            if rle is not None:
                from facetrack.train.confidence_labels import confidence_labels

                labels_fn = partial(confidence_labels, rle)
            from facetrack.data.sequences import build_feature_cache

            build_feature_cache(ds, model.encoder, folder, meta={**wanted, "split": name}, labels_fn=labels_fn,
                                progress=config.trainer.progress_bar)
    window = data.clips.cache_window or None
    info["feature_cache"] = str(root)
    return (FeatureClipDataset(root / "train", model.encode_targets, window),
            FeatureClipDataset(root / "val", model.encode_targets), info)


class _Subset:
    """The first ``count`` items of a clip dataset (keeps ``seed``, ``num_frames``... for the cache)."""

    def __init__(self, dataset: Any, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)


# ---------------------------------------------------------------------------------------------- loss


def jitter_loss(model: Any, outputs: dict[str, Tensor], matrix: Tensor, landmarks: Tensor) -> Tensor:
    """FHR's jitter (e3) as a loss: the second difference over time of the prediction's error, in frame space.

    Coordinates are the soft-argmax of each axis' heatmap (differentiable), mapped from every frame's crop to
    the frame by the inverse of its crop ``matrix`` (B, T, 2, 3); the error against the GT ``landmarks``
    (B, T, N, 2) is scaled back to crop pixels, and ``e_t - (e_t-1 + e_t+1) / 2`` is the part of the prediction's
    frame-to-frame motion that the face did not make. Squared, summed over points and axes, mean over frames.
    Why a loss of its own: the heatmap loss scores every frame alone and is blind to the crop moving under it,
    which is exactly the tracker's jitter. Missing GT points are left out.
    """
    import torch

    from facetrack.codecs.heatmap1d import bins_to_pixels

    hx, hy = model.heatmaps(outputs)
    bins = torch.arange(hx.shape[-1], dtype=hx.dtype, device=hx.device)

    def centre(h: Tensor) -> Tensor:
        p = h.clamp_min(0)
        return (p * bins).sum(-1) / p.sum(-1).clamp_min(1e-12)

    ratio = model.codec.ratio
    crop = torch.stack([bins_to_pixels(centre(hx), ratio), bins_to_pixels(centre(hy), ratio)], -1)  # (B, T, N, 2)
    m = matrix.to(crop)
    a, t = m[..., :2], m[..., 2]
    frame = torch.linalg.solve(a[:, :, None], (crop - t[:, :, None])[..., None])[..., 0]
    zoom = a.det().abs().sqrt()[:, :, None, None]
    gt = landmarks.to(crop)
    known = torch.isfinite(gt).all(-1, keepdim=True)
    err = torch.where(known, (frame - torch.nan_to_num(gt)) * zoom, torch.zeros_like(frame))
    if err.shape[1] < 3:
        return err.new_zeros(())
    d2 = err[:, 1:-1] - 0.5 * (err[:, :-2] + err[:, 2:])
    usable = known[:, 1:-1] & known[:, :-2] & known[:, 2:]
    return (d2.pow(2) * usable).sum((-1, -2)).mean()


# ---------------------------------------------------------------------------------------------- run


def load_confidence_model(path: str) -> Any:
    from facetrack.models.hub import load_model
    from facetrack.models.rle import RLE

    model = load_model(path)
    if not isinstance(model, RLE):
        raise DataError(path, f"data.confidence_labels must be an RLE model, got {type(model).__name__}")
    return model


def prepare_temporal(config: TemporalTrainConfig, out: Path, last: Path, resume: bool) -> Any:
    """The ``temporal`` recipe kind: a temporal model (from ``model.encoder_weights``) on clips."""
    from facetrack.data.catalog import terms
    from facetrack.train.module import TemporalModule
    from facetrack.train.run import Run, _check_same_model

    t = config.trainer
    cached = bool(config.data.clips.feature_cache)
    model = build_temporal_model(config.model, config.source, freeze_encoder=True if cached else None)
    if resume:
        _check_same_model(last, model)
    rle = load_confidence_model(config.data.confidence_labels) if config.data.confidence_labels else None
    if rle is None:
        model.set_confidence_loss(False)
    train_set, val_set, info = build_clip_datasets(config, model, rle)
    module = TemporalModule(model, config.optim, t.max_epochs, rle)

    lc = (f"Eq. 7: L_h + {model.lambda_c} L_c for epochs < {t.max_epochs / 2:g}, L_h after; c* from RLE model "
          f"{config.data.confidence_labels}") if rle is not None and getattr(model, "lambda_c", 0) > 0 else \
        "L_c off (no data.confidence_labels): L_h only; confidence branches trained only through the attention"
    if config.optim.jitter_weight > 0:
        lc += f"; + {config.optim.jitter_weight:g} x jitter_loss (second difference of the error in frame space)"

    def card() -> dict[str, Any]:
        return {
            "name": config.name,
            "crop": {"scale": config.data.crop_scale, "box": "landmark_extent", "square": True,
                     "tracking": "frame t cropped around the landmarks of frame t-1, the crop box smoothed over "
                                 "time (facetrack.data.transforms.CropSmoothing)",
                     "training_policy": dataclasses.asdict(_policy(config.data, config.source))},
            "training": {
                "recipe": config.to_dict(), "recipe_path": config.source,
                "encoder_weights": config.model.encoder_weights or None,
                "encoder": ("frozen: trained on cached encoder features (not fine-tuned; a deviation from "
                            "the paper's end-to-end training)") if cached else
                           ("frozen" if model.freeze_encoder else "fine-tuned end to end"),
                "loss": lc,
                "data": {"dataset": config.data.dataset, "root": config.data.root, **info,
                         "train_clips": len(train_set), "val_clips": len(val_set),
                         "clip_frames": train_set.num_frames,
                         "terms": terms(config.data.dataset)},
                "metric": "val_nme: video NRMSE (inter-ocular NME in frame pixels, per clip then over clips), "
                          "crops from the previous frame's GT plus tracker noise (open loop)",
            },
        }

    def finish(result: dict[str, Any]) -> dict[str, Any]:
        rows = result["metrics"]
        return {**result, "final_val_nme": rows[-1]["val_nme"] if rows else math.nan}

    return Run(model, train_set, val_set, module, card,
               f"on {len(train_set)} clips of {train_set.num_frames} frames, validating on {len(val_set)}",
               fit_options={"num_sanity_val_steps": 0}, finish=finish)


def _register() -> None:
    from facetrack.train.run import RecipeKind, register_recipe_kind

    register_recipe_kind(RecipeKind("temporal", TemporalTrainConfig, is_temporal_recipe, prepare_temporal))


_register()
