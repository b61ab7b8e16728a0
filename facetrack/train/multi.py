"""Multi-dataset training (issue 15): more faces for a model from datasets annotated in other landmark schemes.

The 300-W crops (the *primary* dataset, which also gives the validation faces) are mixed with ``ideask21``
(21 points), ``mtfl5`` (5 points) and ``ytf68`` (68 points, systematically different labels) from
``../shared/data``. Two ways to use them:

* a fixed-scheme model (``aohr``: iBUG-68 outputs): every extra face becomes a 68-point face whose points are
  *masked*: only the points with an exact single-index iBUG-68 correspondence in the dataset's ``scheme.json``
  (``mix.supervise: exact``; ``single`` adds the approximate single-index ones) carry a loss weight (the codec's
  per-point ``weight``, i.e. the model's own masked loss). The others are filled in by a similarity fit of the
  300-W mean shape onto the labelled points, so the training crop is cut around a 68-point extent as for 300-W.
  ``mix.correction: model`` removes each dataset's systematic label offset: the mean per-point residual (label
  minus prediction, crop pixels of the centred crop) of the starting model on that dataset's faces is
  subtracted from its labels (a per-dataset correction, as ../shared/data/README.md asks for ytf68);
* TUFA (``tufa``: any scheme): each face keeps its own scheme; the model's per-dataset semantic alignment
  embeddings absorb the differences (``facetrack.models.tufa``).

Batches are mixed: an epoch draws ``mix.epoch_faces`` faces (default: as many as the primary training set, so the
schedule in steps equals a primary-only run's), ``mix.primary_fraction`` of them from the primary set and the
rest from the extra datasets in proportion to their ``weight``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from facetrack.data.sample import FaceSample
from facetrack.errors import DataError
from facetrack.train.config import TrainConfig

log = logging.getLogger(__name__)

@dataclass
class MixSection:
    """Which extra datasets fill the batches next to ``data`` (the primary dataset) and how."""

    # name -> {root: PATH, weight: float (default 1), split (default train), faces: N (few-shot: N random faces,
    # seed: S)}
    extra: dict[str, Any] = field(default_factory=dict)
    primary_fraction: float = 0.5   # share of each epoch's faces drawn from the primary dataset
    epoch_faces: int = 0            # faces per epoch; 0: the primary training set's size
    supervise: Literal["exact", "single"] = "exact"  # which correspondences carry a loss (fixed-scheme models)
    correction: Literal["none", "model"] = "model"   # per-dataset label offsets from the starting model
    correction_faces: int = 300     # faces per dataset used to estimate them
    # iBUG-68 indices never supervised in any dataset (TUFA recipes): the zero-shot protocol of issue 15 withholds
    # the jaw (0-16) and then asks for those points through their mean-face positions
    withhold: list[int] = field(default_factory=list)


@dataclass
class MultiTrainConfig(TrainConfig):
    """A ``TrainConfig`` with a ``mix`` section (recognised by ``is_multi_recipe``)."""

    mix: MixSection = field(default_factory=MixSection)


def is_multi_recipe(raw: dict[str, Any]) -> bool:
    """Whether a raw recipe mapping is a multi-dataset recipe (it has a ``mix`` section)."""
    return isinstance(raw, dict) and "mix" in raw


# ---------------------------------------------------------------------------------------------- sources

@dataclass
class Source:
    """One dataset in its own scheme: faces (native points), the scheme's flip permutation and its iBUG-68
    correspondences ``{native index: (ibug indices, "exact" | "approximate")}``."""

    name: str
    num_points: int
    flip_perm: tuple[int, ...]
    ibug68: dict[int, tuple[tuple[int, ...], str]]
    samples: list[FaceSample]

    def withheld(self, ibug: Sequence[int]) -> set[int]:
        """Native indices of the points that correspond (exactly or approximately) to any of the iBUG-68 ``ibug``."""
        hidden = set(int(i) for i in ibug)
        return {i for i, (idx, _) in self.ibug68.items() if hidden.intersection(idx)}

    def supervised(self, mode: str = "exact") -> dict[int, int]:
        """native index -> iBUG-68 index of the points that supervise a 68-point model."""
        kinds = ("exact",) if mode == "exact" else ("exact", "approximate")
        return {i: idx[0] for i, (idx, kind) in self.ibug68.items() if len(idx) == 1 and kind in kinds}


def load_source(name: str, root: str | Path, split: str = "train") -> Source:
    """The faces of an extra dataset (``facetrack.data.catalog``: ``train`` = all but the catalogue's held-out
    ``val`` subjects for the shared sets; a user's WFLW or 300-W in its official layout) in their own
    scheme, with the scheme's flip permutation and iBUG-68 correspondences (``scheme_correspondence``)."""
    from facetrack.data import catalog
    from facetrack.schemes import get_scheme

    try:
        spec = catalog.get_dataset(name)
    except KeyError:
        spec = None
    usable = [n for n in catalog.list_datasets()
              if catalog.get_dataset(n).kind == "image" and scheme_correspondence(catalog.get_dataset(n).scheme)]
    if spec is None or name not in usable:
        raise DataError(root, f"unknown extra dataset {name!r}; usable: {', '.join(usable)} (an image dataset of the "
                              f"catalogue whose scheme has iBUG-68 correspondences)")
    samples = catalog.load(name, root, split)
    if not samples:
        raise DataError(root, f"no {name} faces in split {split!r}")
    scheme = get_scheme(samples[0].scheme)
    return Source(name, scheme.num_points, tuple(scheme.flip_perm), scheme_correspondence(scheme.name), samples)


def scheme_correspondence(scheme: str) -> dict[int, tuple[tuple[int, ...], str]]:
    """``{native index: (iBUG-68 indices, "exact" | "approximate")}`` of a scheme's points that have an iBUG-68
    counterpart (empty: none known). WFLW's brows and eyelids are other anatomical points than iBUG's (approximate);
    its contour's odd points and eyelid centres have no counterpart."""
    from facetrack.schemes import IBUG68_CORRESPONDENCE, WFLW98_TO_IBUG68

    if scheme == "ibug68":
        return {i: ((i,), "exact") for i in range(68)}
    if scheme == "wflw98":
        approximate = set(range(17, 27)) | {37, 38, 40, 41, 43, 44, 46, 47}
        return {w: ((i,), "approximate" if i in approximate else "exact") for i, w in enumerate(WFLW98_TO_IBUG68)}
    if scheme in IBUG68_CORRESPONDENCE:
        return {i: (tuple(idx), kind) for i, (idx, kind) in enumerate(IBUG68_CORRESPONDENCE[scheme])}
    return {}


def mean_shape_68(samples: list[FaceSample]) -> np.ndarray:
    """Procrustes mean (unit RMS radius, centred) of 68-point training faces."""
    from facetrack.data.shape_model import procrustes_align

    return procrustes_align(np.stack([s.landmarks for s in samples]))[1]


def to_ibug68(source: Source, mean68: np.ndarray, supervise: str = "exact") -> list[FaceSample]:
    """The source's faces as masked iBUG-68 faces: supervised points labelled and ``visible``; the others filled by
    a similarity fit of ``mean68`` onto the supervised points (so crops see a 68-point extent), ``visible`` False."""
    from facetrack.data.shape_model import similarity_fit

    mapping = source.supervised(supervise)
    if len(mapping) < 2:
        raise DataError(source.name, f"only {len(mapping)} supervised points: cannot place a face")
    native = np.array(sorted(mapping))
    ibug = np.array([mapping[i] for i in native])
    out = []
    for s in source.samples:
        labelled = s.landmarks[native]
        m = similarity_fit(mean68[ibug], labelled)
        filled = mean68 @ m[:, :2].T + m[:, 2]
        filled[ibug] = labelled
        visible = np.zeros(68, dtype=bool)
        visible[ibug] = True
        out.append(FaceSample(s.image_path, filled, "ibug68", visible=visible, subject=s.subject, source=s.source))
    return out


def estimate_offsets(model: Any, samples: list[FaceSample], crop_scale: float, faces: int, seed: int = 0,
                     batch: int = 32) -> np.ndarray:
    """Mean per-point residual (label - prediction; (N, 2) crop pixels of the centred crop, NaN where no face
    labels the point) of ``model`` on up to ``faces`` of ``samples`` (68-point masked faces)."""
    import torch

    from facetrack.data.transforms import apply_affine, box_from_landmarks, crop_for_inference

    rng = np.random.default_rng(seed)
    chosen = [samples[i] for i in sorted(rng.permutation(len(samples))[:faces])]
    total = np.zeros((model.num_points, 2))
    count = np.zeros(model.num_points)
    model.eval()
    for start in range(0, len(chosen), batch):
        part = chosen[start:start + batch]
        crops, labels, masks = [], [], []
        for s in part:
            crop, matrix = crop_for_inference(s.load_image(), box_from_landmarks(s.landmarks), model.input_size,
                                              crop_scale)
            crops.append(crop[:, :, ::-1].transpose(2, 0, 1) / 255.0)
            labels.append(apply_affine(s.landmarks, matrix))
            masks.append(np.ones(model.num_points, bool) if s.visible is None else s.visible)
        with torch.no_grad():
            coords, _ = model.predict(torch.as_tensor(np.stack(crops), dtype=torch.float32))
        residual = np.stack(labels) - coords.numpy().astype(np.float64)
        mask = np.stack(masks)
        total += (residual * mask[..., None]).sum(0)
        count += mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count[:, None]


def apply_offsets(samples: list[FaceSample], offsets: np.ndarray, input_size: int,
                  crop_scale: float) -> list[FaceSample]:
    """Labels less the per-point offsets (crop pixels of the centred crop, mapped to each image's pixels);
    points without an offset (NaN) are left as they are."""
    from facetrack.data.transforms import box_from_landmarks, crop_matrix

    shift = np.nan_to_num(offsets)
    out = []
    for s in samples:
        matrix = crop_matrix(box_from_landmarks(s.landmarks), input_size, crop_scale)
        delta = shift @ np.linalg.inv(matrix[:, :2]).T
        if s.visible is not None:
            delta = delta * s.visible[:, None]
        out.append(FaceSample(s.image_path, s.landmarks - delta, s.scheme, visible=s.visible, subject=s.subject,
                              source=s.source))
    return out


def mixed_sampler(sizes: list[int], fractions: list[float], epoch_faces: int) -> Any:
    """A sampler over the concatenated datasets drawing ``epoch_faces`` items per epoch, dataset d with
    probability ``fractions[d]`` (uniform within it); torch's generator makes it reproducible under Lightning."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    weights = torch.cat([torch.full((n,), f / n, dtype=torch.float64) for n, f in zip(sizes, fractions)])
    return WeightedRandomSampler(weights, num_samples=epoch_faces, replacement=True)


def extra_sources(mix: MixSection, source: str | Path) -> list[tuple[Source, float]]:
    """The recipe's extra datasets, loaded, with their weights; errors name the recipe key."""
    out = []
    for name, spec in mix.extra.items():
        if not isinstance(spec, dict) or not spec.get("root"):
            raise DataError(source, f"mix.extra.{name} needs a mapping with a 'root' (e.g. root: ../shared/data/{name})")
        unknown = set(spec) - {"root", "weight", "split", "faces", "seed"}
        if unknown:
            raise DataError(source, f"mix.extra.{name}: unknown keys {sorted(unknown)} (known: root, weight, split, "
                                    "faces, seed)")
        weight = float(spec.get("weight", 1.0))
        if weight <= 0:
            raise DataError(source, f"mix.extra.{name}.weight must be > 0")
        loaded = load_source(name, spec["root"], str(spec.get("split", "train")))
        faces = int(spec.get("faces", 0))  # few-shot: only this many faces (a seeded random choice)
        if faces > 0:
            chosen = np.random.default_rng(int(spec.get("seed", 0))).permutation(len(loaded.samples))[:faces]
            loaded.samples = [loaded.samples[i] for i in sorted(chosen)]
        out.append((loaded, weight))
    if not out:
        raise DataError(source, "mix.extra names no dataset")
    return out


def mix_fractions(mix: MixSection, weights: list[float]) -> list[float]:
    """Per-dataset share of an epoch: primary first, then the extra datasets by weight."""
    if not 0 <= mix.primary_fraction <= 1:
        raise DataError("mix.primary_fraction", "must be in [0, 1]")
    rest = 1.0 - mix.primary_fraction
    return [mix.primary_fraction, *(rest * w / sum(weights) for w in weights)]


# ---------------------------------------------------------------------------------------------- training

def train_multi(config: MultiTrainConfig, resume: bool | None = None) -> dict[str, Any]:
    """Train a model on the primary dataset mixed with ``mix.extra``; validation on the primary's held-out faces."""
    if config.model.arch.startswith("tufa"):
        from facetrack.train.tufa import train_tufa

        return train_tufa(config, resume)
    import yaml
    from torch.utils.data import DataLoader

    from facetrack.data.transforms import Augmenter
    from facetrack.models.registry import build_model
    from facetrack.train.dataset import LandmarkDataset, split_train_val
    from facetrack.train.module import LandmarkModule
    from facetrack.data import catalog
    from facetrack.train.run import DATA_TERMS as PRIMARY_TERMS
    from facetrack.train.run import _check_same_model, fit, prepare_run

    t, data, mix = config.trainer, config.data, config.mix
    if mix.withhold:
        raise DataError(config.source, "mix.withhold is for TUFA recipes (model.arch tufa*): a fixed-scheme model "
                                       "cannot be asked for points it was not trained on")
    out, last, resume = prepare_run(config, resume)
    model = build_model(config.model.arch, **config.model.config)
    if model.scheme != "ibug68":
        raise DataError(config.source, f"multi-dataset masking maps schemes to ibug68; {model.arch} predicts "
                                       f"{model.scheme}")
    start_model = None
    if config.model.init_weights:
        from facetrack.models.hub import load_model

        _check_same_model(Path(config.model.init_weights), model, "model.init_weights needs the same model.arch "
                                                                  "and model.config")
        start_model = load_model(config.model.init_weights)
        model.load_state_dict(start_model.state_dict())
    if resume:
        _check_same_model(last, model)

    primary, val = split_train_val(data, config.source, out)
    mean68 = mean_shape_68(primary)
    groups: list[list[FaceSample]] = [primary]
    record: dict[str, Any] = {}
    extras = extra_sources(mix, config.source)
    for src, _ in extras:
        faces = to_ibug68(src, mean68, mix.supervise)
        info: dict[str, Any] = {"faces": len(faces), "supervised_ibug68": sorted(src.supervised(mix.supervise).values())}
        if mix.correction == "model":
            if start_model is None:
                raise DataError(config.source, "mix.correction: model needs model.init_weights (the starting model "
                                               "estimates each dataset's label offsets)")
            offsets = estimate_offsets(start_model, faces, data.crop_scale, mix.correction_faces)
            faces = apply_offsets(faces, offsets, model.input_size, data.crop_scale)
            valid = offsets[np.isfinite(offsets[:, 0])]
            info["offsets_px"] = np.round(np.nan_to_num(offsets), 3).tolist()
            info["mean_abs_offset_px"] = float(np.abs(valid).mean()) if len(valid) else 0.0
        record[src.name] = info
        groups.append(faces)
        log.info("%s: %d faces, supervising %d points", src.name, len(faces), len(info["supervised_ibug68"]))
    (out / "mix.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

    augmenter = Augmenter(out_size=model.input_size, scale=data.crop_scale, **data.augment.augmenter_kwargs()) \
        if data.augment.enabled else None
    train_samples = [s for group in groups for s in group]
    train_set = LandmarkDataset(train_samples, model.encode_targets, model.input_size, model.scheme, True,
                                data.crop_scale, augmenter)
    val_set = LandmarkDataset(val, model.encode_targets, model.input_size, model.scheme, False, data.crop_scale)
    fractions = mix_fractions(mix, [w for _, w in extras])
    epoch_faces = mix.epoch_faces or len(primary)
    sampler = mixed_sampler([len(g) for g in groups], fractions, epoch_faces)
    (out / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")

    loader_args = {"batch_size": config.optim.batch_size, "num_workers": t.num_workers, "persistent_workers": False}
    train_loader = DataLoader(train_set, sampler=sampler, drop_last=True, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    module = LandmarkModule(model, config.optim, t.max_epochs)
    terms = [PRIMARY_TERMS.get(data.dataset, "unknown"), *(catalog.terms(s.name) for s, _ in extras)]

    extra = {name: {k: v for k, v in info.items() if k != "offsets_px"} for name, info in record.items()}

    def card() -> dict[str, Any]:
        return mixed_card(config, len(primary), len(val), extra, fractions, epoch_faces, terms)

    return fit(config, module, train_loader, val_loader, card, resume)


def mixed_card(config: MultiTrainConfig, train_faces: int, val_faces: int, extra: dict[str, Any],
               fractions: list[float], epoch_faces: int, terms: list[str]) -> dict[str, Any]:
    """The model card of a multi-dataset run (what ``facetrack.train.run`` writes, plus the extra datasets)."""
    data = config.data
    return {
        "name": config.name,
        "crop": {"scale": data.crop_scale, "box": "landmark_extent", "square": True},
        "training": {
            "recipe": config.to_dict(), "recipe_path": config.source,
            "data": {"dataset": data.dataset, "root": data.root, "split": data.split,
                     "train_faces": train_faces, "val_faces": val_faces, "extra": extra,
                     "fractions": fractions, "epoch_faces": epoch_faces,
                     "validation": "held-out subjects of the primary dataset (split.json)",
                     "terms": "; ".join(terms)},
            "metric": "val_nme: mean inter-ocular NME (fraction) in original image pixels",
        },
    }
