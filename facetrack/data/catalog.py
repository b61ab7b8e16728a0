"""The dataset catalogue: every dataset facetrack reads, by name, with everything that differs between datasets.

Shaped like the model registry (``facetrack.models.registry``): each reader module registers one
:class:`DatasetSpec` at import time (``register_dataset(DatasetSpec(...))``), and evaluation, both training paths,
the metrics' defaults and the CLI's ``--dataset`` choices read it from here. Adding a dataset is one file: a
reader module that registers its spec, named in ``_BUILTIN_MODULES`` (or imported by the user before use).

Splits. ``load(name, root, split)`` accepts the reader's own (source) splits plus, for a dataset with a
:class:`HeldOut` rule, the held-out sides: ``"train"`` and ``"val"`` split the pool ``held_out.pool`` by
*subject* (``FaceSample.subject``, what it means is the spec's ``subject``; ``facetrack.data.splits``) with a fixed
fraction and seed, so they are deterministic and never share a subject; a training run's ``split.json``
selects its held-out subjects from the pool. A training recipe's ``data.split: train`` on such a dataset
reads the pool and holds out ``data.val_fraction`` of its subjects with ``data.seed`` (the same faces as ``"val"``
with the defaults 0.1 and 0).

Kinds: ``"image"`` specs give ``read(root, split) -> list[FaceSample]``; ``"video"`` specs give ground-truth videos
for ``evaluate --video`` (``truth``) and/or training clips for temporal recipes (``clips``).
"""
from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facetrack.errors import DataError

Reader = Callable[[Any, str], list]  # (root, split) -> list[FaceSample]

_SPECS: dict[str, "DatasetSpec"] = {}
_MODULE_OF: dict[str, str] = {}  # dataset -> the module that registered it (for a stable listing order)
_BUILTIN_MODULES = (
    "facetrack.data.w300", "facetrack.data.wflw", "facetrack.data.cofw", "facetrack.data.aflw",
    "facetrack.data.ideask21", "facetrack.data.mtfl5", "facetrack.data.ytf68",
    "facetrack.data.w300vw", "facetrack.data.talking_face", "facetrack.data.pseudo",
)


@dataclass(frozen=True)
class HeldOut:
    """How the ``train``/``val`` splits (and a recipe's validation faces) are carved from a pool by subject."""

    pool: str                   # the reader split the two sides come from
    val_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its reader and every dataset-specific default (mmpose's metainfo, as data).

    ``subsets(split, faces) -> {name: faces}`` names the rows a report lists (300-W full: common, challenge,
    full); ``matching_root(root, split)`` is the folder prediction paths are matched against (COFW: the .mat);
    ``truth(root, splits, skip_frames) -> {column: [VideoTruth]}`` and ``clips(data, source) -> (train source,
    val source, description)`` serve video datasets (``evaluate --video``, temporal training).
    """

    name: str
    kind: Literal["image", "video"]
    scheme: str
    description: str
    read: Reader | None = None
    splits: tuple[str, ...] = ()          # the splits ``load`` accepts (besides a split.json path)
    default_split: str = "test"           # what ``evaluate`` scores without --split (video: comma-separated columns)
    normalisers: tuple[str, ...] = ("ocular",)  # NME normalisers reported by default, the headline first
    threshold: float = 0.08               # AUC/FR threshold (fraction)
    subsets: Callable[[str, list], dict[str, list]] | None = None
    subject: str = ""                     # what FaceSample.subject means (held-out splits never share one)
    held_out: HeldOut | None = None
    terms: str = "unknown"                # the data's licence, copied into model cards
    matching_root: Callable[[Any, str], Path] | None = None
    truth: Callable[..., dict[str, list]] | None = None
    clips: Callable[[Any, Any], tuple[Any, Any, dict[str, Any]]] | None = None
    trainable: bool = True                # image datasets: may a per-frame recipe train on it
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"dataset {self.name}: kind must be 'image' or 'video', got {self.kind!r}")
        if self.kind == "image" and self.read is None:
            raise ValueError(f"image dataset {self.name} needs a reader")
        if self.default_split and self.splits and not set(self.default_split.split(",")) <= set(self.splits):
            raise ValueError(f"dataset {self.name}: default split {self.default_split!r} is not in {self.splits}")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under its name (each name once); returns it so a module can keep a reference."""
    if spec.name in _SPECS and _SPECS[spec.name] != spec:
        raise ValueError(f"dataset name {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec
    _MODULE_OF.setdefault(spec.name, sys._getframe(1).f_globals.get("__name__", ""))
    return spec


def _order(name: str) -> tuple[int, int]:
    """Built-in datasets in ``_BUILTIN_MODULES`` order whatever was imported first, then the others."""
    module = _MODULE_OF.get(name, "")
    rank = _BUILTIN_MODULES.index(module) if module in _BUILTIN_MODULES else len(_BUILTIN_MODULES)
    return rank, list(_MODULE_OF).index(name) if name in _MODULE_OF else 0


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of ``name`` (case-insensitive); the error lists the known names."""
    _load_builtins()
    spec = _SPECS.get(str(name).lower())
    if spec is None:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return spec


def list_datasets(kind: str | None = None, *, trainable: bool | None = None, video_truth: bool | None = None,
                  clips: bool | None = None) -> list[str]:
    """Registered names in registration order, optionally only one ``kind`` / those that train / score videos."""
    _load_builtins()
    out = []
    for spec in sorted(_SPECS.values(), key=lambda spec: _order(spec.name)):
        if kind is not None and spec.kind != kind:
            continue
        if trainable is not None and (spec.kind == "image" and spec.trainable) != trainable:
            continue
        if video_truth is not None and (spec.truth is not None) != video_truth:
            continue
        if clips is not None and (spec.clips is not None) != clips:
            continue
        out.append(spec.name)
    return out


def _split_record(path: str) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        record["val_subjects"] = set(record["val_subjects"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a training split file with 'val_subjects' ({exc})") from None
    return record


def pool(name: str, root: str | Path, split: str = "train") -> list:
    """The faces a training recipe's ``data.split`` reads before holding out validation subjects: the held-out
    pool for ``"train"`` on a dataset with a :class:`HeldOut` rule, else the reader's own split."""
    spec = get_dataset(name)
    if spec.held_out is not None and split == "train":
        split = spec.held_out.pool
    return list(spec.read(root, split))


def held_out_sides(spec: DatasetSpec, faces: Sequence[Any], val_fraction: float | None = None,
                   seed: int | None = None) -> tuple[list, list]:
    """(train, val) of ``faces`` by subject with the spec's fraction and seed unless given."""
    from facetrack.data.splits import split_by_subject

    rule = spec.held_out or HeldOut(pool="")
    return split_by_subject(faces, rule.val_fraction if val_fraction is None else val_fraction,
                            seed=rule.seed if seed is None else seed)


def load(name: str, root: str | Path, split: str | None = None) -> list:
    """The faces of one split of an image dataset (``split`` None: its default). See the module docstring."""
    spec = get_dataset(name)
    if spec.kind != "image":
        raise ValueError(f"{name} is a video dataset: use its truth or clips")
    split = split or spec.default_split
    if split.endswith(".json"):
        record = _split_record(split)
        faces = pool(name, root, str(record.get("split") or "train"))
        return [s for s in faces if s.subject in record["val_subjects"]]
    if spec.held_out is not None and split in ("train", "val"):
        train, val = held_out_sides(spec, pool(name, root, "train"))
        return val if split == "val" else train
    if spec.splits and split not in spec.splits:
        raise DataError(root, f"{name} split must be one of {', '.join(spec.splits)} or a split.json path, "
                              f"got {split!r}")
    return list(spec.read(root, split))


def train_val(name: str, root: str | Path, split: str = "train", val_split: str | None = None,
              val_fraction: float | None = None, seed: int | None = None) -> tuple[list, list]:
    """(train, val) faces for training: ``val_split`` read as is when given, else the subjects of
    ``pool(name, root, split)`` held out by ``val_fraction``/``seed`` (the spec's defaults when None).

    ``train_val("ytf68", root)`` is the same pair as ``load(.., "train")``, ``load(.., "val")``."""
    spec = get_dataset(name)
    faces = pool(name, root, split)
    if val_split:
        return faces, load(name, root, val_split)
    return held_out_sides(spec, faces, val_fraction, seed)


def subsets(name: str, root: str | Path, split: str | None = None) -> dict[str, list]:
    """The named subsets a report lists for one split (by default just ``{split: faces}``)."""
    spec = get_dataset(name)
    split = split or spec.default_split
    faces = load(name, root, split)
    if spec.subsets is not None:
        return spec.subsets(split, faces)
    return {Path(split).stem if split.endswith(".json") else split: faces}


def matching_root(name: str, root: str | Path, split: str | None = None) -> Path:
    """The folder (or file) prediction image paths are matched relative to."""
    spec = get_dataset(name)
    if spec.matching_root is not None:
        return spec.matching_root(root, split or spec.default_split)
    return Path(root)


def normalisers(name: str) -> tuple[str, ...]:
    """The NME normalisers ``name`` reports by default, the headline first."""
    return get_dataset(name).normalisers


def terms(name: str) -> str:
    """The terms of use of a dataset, as model cards record them."""
    return get_dataset(name).terms
