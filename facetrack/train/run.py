"""``facetrack train``: one readable function from a recipe to a run directory of safetensors checkpoints.

Kept as plain steps (seed, model, data, module, trainer, fit) in the spirit of the torchvision reference
scripts; everything Lightning-specific that touches files lives in ``facetrack.train.checkpoint``. What differs
between kinds of recipe (per-frame stills here, temporal clips in ``facetrack.train.temporal``) is one
``RecipeKind`` hook each: ``prepare`` builds the model, datasets, module and card; ``train`` does the rest.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrack.errors import DataError
from facetrack.train.config import TrainConfig

log = logging.getLogger(__name__)



def __getattr__(name: str) -> Any:
    """``DATA_TERMS``: dataset -> the terms of its data, from the catalogue (``facetrack.data.catalog``)."""
    if name == "DATA_TERMS":
        from facetrack.data.catalog import get_dataset, list_datasets

        return {n: get_dataset(n).terms for n in list_datasets()}
    raise AttributeError(name)


# ---------------------------------------------------------------------------------------------- recipe kinds


@dataclass
class Run:
    """What one kind of recipe prepares for the steps ``train`` shares: the model, the (train, val) datasets,
    the LightningModule, the model card, a log phrase ("on 1810 faces, validating on 202") and Lightning
    options; ``finish`` may add to the returned summary."""

    model: Any
    train_set: Any
    val_set: Any
    module: Any
    card: Callable[[], dict[str, Any]]
    description: str
    fit_options: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class RecipeKind:
    """One kind of training recipe: its config class, how a raw recipe is recognised as one, and
    ``prepare(config, out, last, resume) -> Run``. Registered with :func:`register_recipe_kind`."""

    name: str
    config_class: type
    is_recipe: Callable[[dict[str, Any]], bool]
    prepare: Callable[[Any, Path, Path, bool], Run]


_KINDS: dict[str, RecipeKind] = {}
_BUILTIN_KINDS = ("facetrack.train.temporal",)


def register_recipe_kind(kind: RecipeKind) -> RecipeKind:
    """Register a recipe kind (once per name); later kinds are tried first, so a specialisation wins."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"recipe kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def _kinds() -> list[RecipeKind]:
    import importlib

    for module in _BUILTIN_KINDS:
        importlib.import_module(module)
    return list(reversed(_KINDS.values()))


def recipe_class(raw: dict[str, Any]) -> type:
    """The config class of a raw recipe mapping: the first kind that recognises it, else ``TrainConfig``."""
    return next((k.config_class for k in _kinds() if k.is_recipe(raw)), TrainConfig)


def recipe_kind(config: TrainConfig) -> RecipeKind:
    """The kind that trains ``config`` (the most specific config class)."""
    kind = next((k for k in _kinds() if type(config) is k.config_class), None)
    kind = kind or next((k for k in _kinds() if isinstance(config, k.config_class)), None)
    if kind is None:
        raise TypeError(f"no recipe kind trains a {type(config).__name__}")
    return kind


# ---------------------------------------------------------------------------------------------- train


def train(config: TrainConfig, resume: bool | None = None) -> dict[str, Any]:
    """Train ``config``; ``resume`` True continues ``<out>/last``, None follows ``trainer.resume``.

    The same steps for every kind of recipe (per-frame stills, temporal clips, ...): check the run folder and
    seed, let the recipe's kind build model, data and module, save the recipe, fit. Returns a summary: out dir,
    epochs run, best validation NME and its epoch. Refuses to start over a run directory that already holds a
    checkpoint unless resuming, so no run is overwritten by accident.
    """
    from facetrack.train.multi import MultiTrainConfig, train_multi

    if isinstance(config, MultiTrainConfig):  # extra datasets in other schemes mixed into the batches
        return train_multi(config, resume)
    import yaml

    kind = recipe_kind(config)
    out, last, resume = prepare_run(config, resume)
    run = kind.prepare(config, out, last, resume)
    (out / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    log.info("training %s %s -> %s", run.model.arch, run.description, out)
    train_loader, val_loader = loaders(config, run.train_set, run.val_set)
    result = fit(config, run.module, train_loader, val_loader, run.card, resume, **run.fit_options)
    return run.finish(result) if run.finish is not None else result


def loaders(config: Any, train_set: Any, val_set: Any) -> tuple[Any, Any]:
    """(train, val) DataLoaders of a recipe: shuffled training batches, the last dropped when it would be short
    (a final batch of one face breaks BatchNorm and gives a noisy step)."""
    import torch
    from torch.utils.data import DataLoader

    t = config.trainer
    batch = config.optim.batch_size
    on_gpu = torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda")
    loader_args = {"batch_size": batch, "num_workers": t.num_workers, "pin_memory": on_gpu,
                   "persistent_workers": False}
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > batch, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    return train_loader, val_loader


def prepare_frame(config: TrainConfig, out: Path, last: Path, resume: bool) -> Run:
    """Per-frame recipes: a model from the registry (or fine-tuned from ``model.init_weights``) on still crops."""
    from facetrack.data.catalog import terms
    from facetrack.models.registry import build_model
    from facetrack.train.dataset import build_datasets
    from facetrack.train.module import LandmarkModule

    model = build_model(config.model.arch, **config.model.config)
    if resume:
        _check_same_model(last, model)
    elif config.model.init_weights:  # fine-tuning: same architecture, trained weights
        from facetrack.models.hub import load_model

        start = Path(config.model.init_weights)
        _check_same_model(start, model, "model.init_weights needs the same model.arch and model.config")
        model.load_state_dict(load_model(start).state_dict())
    train_set, val_set = build_datasets(config.data, config.source, out, model.encode_targets,
                                        model.input_size, model.scheme)
    module = LandmarkModule(model, config.optim, config.trainer.max_epochs)

    def card() -> dict[str, Any]:
        return {
            "name": config.name,
            "crop": {"scale": config.data.crop_scale, "box": "landmark_extent", "square": True},
            "training": {
                "recipe": config.to_dict(), "recipe_path": config.source,
                "data": {"dataset": config.data.dataset, "root": config.data.root, "split": config.data.split,
                         "train_faces": len(train_set), "val_faces": len(val_set),
                         "validation": config.data.val_split or "held-out subjects (split.json)",
                         "terms": terms(config.data.dataset)},
                "metric": "val_nme: mean inter-ocular NME (fraction) in original image pixels",
            },
        }

    return Run(model, train_set, val_set, module, card,
               f"on {len(train_set)} faces, validating on {len(val_set)}")


register_recipe_kind(RecipeKind("frame", TrainConfig, lambda raw: False, prepare_frame))


def fit(config: Any, module: Any, train_loader: Any, val_loader: Any, card: dict[str, Any], resume: bool,
        **trainer_options: Any) -> dict[str, Any]:
    """Run Lightning with safetensors checkpoints (no pickled ``.ckpt``) and return the run's metrics."""
    import lightning.pytorch as pl

    from facetrack.train.checkpoint import RunRecorder, SafetensorsCheckpointIO, read_metrics

    t = config.trainer
    out = config.out_dir
    recorder = RunRecorder(out, card, t.checkpoint_every)
    strategy = "ddp" if t.strategy == "auto" and t.devices > 1 else t.strategy
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, strategy=strategy,
        precision=t.precision, callbacks=[recorder], plugins=[SafetensorsCheckpointIO()],
        enable_checkpointing=False, logger=False, default_root_dir=str(out),
        limit_train_batches=_limit(t.limit_train_batches), limit_val_batches=_limit(t.limit_val_batches),
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar, check_val_every_n_epoch=1,
        enable_model_summary=False, **trainer_options,
    )
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(out / "last.safetensors") if resume else None)
    rows = read_metrics(out / "metrics.csv")
    return {"out": str(out), "epochs": len(rows), "best_val_nme": recorder.best_val_nme,
            "best_epoch": recorder.best_epoch, "metrics": rows}


def _check_same_model(checkpoint: Path, model: Any, fix: str = "resume with the original model settings or use "
                                                                   "another trainer.out") -> None:
    """A resumed or fine-tuned run must rebuild the architecture it starts from; say so clearly instead of a key
    mismatch."""
    import json

    from facetrack.models.hub import read_card

    card_path = checkpoint.with_suffix(".json")
    card = read_card(card_path)
    wanted = json.loads(json.dumps(model.config))
    if card["arch"] != model.arch or card["config"] != wanted:
        raise DataError(card_path, f"the run was trained as {card['arch']} {card['config']}; the recipe now builds "
                                   f"{model.arch} {wanted}: {fix}")


def prepare_run(config: Any, resume: bool | None) -> tuple[Path, Path, bool]:
    """Check the output folder (new run or resume), create it, set threads and seeds: (out, last, resume).

    A resumed run must not replay epoch 0's shuffles and augmentations, so its seed moves with the epoch.
    """
    import lightning.pytorch as pl
    import torch

    from facetrack.train.checkpoint import state_paths

    t = config.trainer
    out = config.out_dir
    last = out / "last.safetensors"
    if resume is None:
        resume = t.resume == "auto" and all(p.is_file() for p in state_paths(last))
    if resume and not last.is_file():
        raise DataError(last, "cannot resume: no checkpoint here (train without --resume first)")
    if not resume and (last.is_file() or (out / "metrics.csv").is_file()):
        raise DataError(out, "already holds a training run; resume it (--resume or trainer.resume=auto) "
                             "or choose another trainer.out")
    out.mkdir(parents=True, exist_ok=True)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    pl.seed_everything(t.seed + (_saved_epoch(last) + 1 if resume else 0), workers=True, verbose=False)
    return out, last, bool(resume)


def _saved_epoch(checkpoint: Path) -> int:
    """The last completed epoch recorded next to a checkpoint."""
    import json

    from facetrack.train.checkpoint import state_paths

    path = state_paths(checkpoint)[2]
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"cannot read the saved epoch ({exc})") from None


def _limit(value: float) -> float | int:
    """Lightning reads a float as a fraction of the batches and an int as a count."""
    return int(value) if value > 1.0 else float(value)
