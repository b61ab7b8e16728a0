"""Checkpoints without pickle: model weights through the hub (safetensors + card), the rest as safetensors + JSON.

Lightning's own ``.ckpt`` files are pickles, which can run code when loaded; a training run's outputs are
shared like any model file, so facetrack never writes them. Instead a run directory holds:

- ``last.safetensors`` / ``last.json``: the model and its card (``facetrack.models.hub.save_model``);
- ``last.optim.safetensors``: every tensor of the optimizer state (Adam moments), flattened by key path;
- ``last.state.json``: everything else Lightning needs to resume (step counts, scalars, loop progress,
  scheduler and callback state, the optimizer's param groups), with references into the tensor file;
- ``best.safetensors`` / ``best.json``: the model with the lowest validation NME so far;
- ``metrics.csv`` (one row per epoch) and ``curve.png`` (validation NME per epoch).

Resuming goes through Lightning's normal ``fit(ckpt_path=...)`` with :class:`SafetensorsCheckpointIO`
rebuilding the checkpoint dictionary from these files, so Lightning's restore logic (epoch, global step,
schedulers, callbacks) is reused instead of re-implemented.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors.torch import load_file, save_file

from facetrack.errors import DataError

METRICS_COLUMNS = ("epoch", "train_loss", "val_nme", "lr", "seconds")
_TENSOR, _SCALAR, _FLOAT, _TUPLE, _DICT = "__tensor__", "__scalar__", "__float__", "__tuple__", "__dict__"
_MARKERS = {_TENSOR, _SCALAR, _FLOAT, _TUPLE, _DICT}


# ----------------------------------------------------------------------------------------------------------
# Nested state <-> (JSON, flat tensors)

def flatten_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tensors, numbers) into JSON-able data and a flat tensor dict.

    Tensors with at least one dimension go to the tensor dict under their key path ("state/3/exp_avg") and
    are referenced from the JSON; 0-d tensors (Adam's ``step``) and non-finite floats are written inline
    with their dtype, so a round trip restores exact types. Anything else raises TypeError naming the path.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            if value.ndim == 0:
                return {_SCALAR: _plain_number(value.item()), "dtype": str(value.dtype).removeprefix("torch.")}
            tensors[path] = value.detach().cpu().contiguous().clone()
            return {_TENSOR: path}
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {_FLOAT: repr(value)}
        if isinstance(value, tuple):
            return {_TUPLE: [walk(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) and k not in _MARKERS and "/" not in k for k in value):
                return {k: walk(v, f"{path}/{k}" if path else k) for k, v in value.items()}
            return {_DICT: [[walk(k, f"{path}/key{i}"), walk(v, f"{path}/{i}")]
                            for i, (k, v) in enumerate(value.items())]}
        raise TypeError(f"cannot store {type(value).__name__} at {path or '<root>'!r} without pickle")

    return walk(obj, ""), tensors


def unflatten_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if _TENSOR in data:
        return tensors[data[_TENSOR]]
    if _SCALAR in data:
        return torch.tensor(unflatten_state(data[_SCALAR], tensors), dtype=getattr(torch, data["dtype"]))
    if _FLOAT in data:
        return float(data[_FLOAT])
    if _TUPLE in data:
        return tuple(unflatten_state(v, tensors) for v in data[_TUPLE])
    if _DICT in data:
        return {_hashable(unflatten_state(k, tensors)): unflatten_state(v, tensors) for k, v in data[_DICT]}
    return {k: unflatten_state(v, tensors) for k, v in data.items()}


def _plain_number(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else {_FLOAT: repr(value)}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# ----------------------------------------------------------------------------------------------------------
# File names

def checkpoint_stem(path: str | Path) -> Path:
    """``runs/x/last.safetensors`` or ``runs/x/last`` -> ``runs/x/last``."""
    path = Path(path)
    return path.with_suffix("") if path.suffix == ".safetensors" else path


def state_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """(model weights, optimizer tensors, training-state JSON) of a checkpoint."""
    stem = checkpoint_stem(path)
    return (stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".optim.safetensors"),
            stem.with_name(stem.name + ".state.json"))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O that never pickles (see the module docstring for the files).

    ``save_checkpoint`` writes everything except the model weights, which the caller writes first with
    ``hub.save_model`` (so they carry a model card); ``load_checkpoint`` reads the three files back into the
    dictionary Lightning expects. ``module_prefix`` is the attribute of the LightningModule holding the model.
    """

    def __init__(self, module_prefix: str = "model.") -> None:
        self.module_prefix = module_prefix

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        _, optim_path, state_path = state_paths(path)
        rest = {k: v for k, v in checkpoint.items() if k != "state_dict"}
        data, tensors = flatten_state(rest)
        optim_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = optim_path.with_name(optim_path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "facetrack-train-state"})
        os.replace(tmp, optim_path)
        _atomic_write_text(state_path, json.dumps(data, indent=1, allow_nan=False))

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        weights_path, optim_path, state_path = state_paths(path)
        for required in (weights_path, optim_path, state_path):
            if not required.is_file():
                raise DataError(required, "cannot resume: checkpoint file missing")
        try:
            data = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(state_path, f"cannot read training state ({exc})") from None
        device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
        checkpoint = unflatten_state(data, load_file(str(optim_path), device=str(device)))
        weights = load_file(str(weights_path), device=str(device))
        checkpoint["state_dict"] = {self.module_prefix + k: v for k, v in weights.items()}
        return checkpoint

    def remove_checkpoint(self, path: str | Path) -> None:
        for file in state_paths(path):
            file.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------
# The callback that writes last/best, metrics.csv and curve.png

def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the code that trained a model (with "+dirty" for local changes), if git is there."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class RunRecorder(Callback):
    """Per epoch: append to ``metrics.csv``, redraw ``curve.png``, save ``best`` when validation NME improves
    and ``last`` (model + optimizer + progress) every ``every_n_epochs`` and at the final epoch.

    The LightningModule must provide ``model`` (a LandmarkModel) and ``epoch_summary() -> dict`` with
    ``train_loss`` and ``val_nme`` (reduced over all processes). ``card`` builds the static part of the model
    card; epoch, scores and the git commit are added here.
    """

    def __init__(self, out_dir: str | Path, card: Callable[[], dict[str, Any]], every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.out_dir = Path(out_dir)
        self.card = card
        self.every_n_epochs = every_n_epochs
        self.best_val_nme = math.inf
        self.best_epoch = -1
        self._epoch_start = time.perf_counter()
        self._commit: str | None = None

    # Lightning stores this in the checkpoint, so a resumed run keeps its best score.
    def state_dict(self) -> dict[str, Any]:
        return {"best_val_nme": self.best_val_nme, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val_nme = float(state_dict["best_val_nme"])
        self.best_epoch = int(state_dict["best_epoch"])

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._commit = git_commit(Path(__file__).resolve().parent)
        if trainer.is_global_zero:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After a resume, rows of epochs that will run again (written after the last checkpoint) are dropped.
        if trainer.is_global_zero:
            truncate_metrics(self.out_dir / "metrics.csv", trainer.current_epoch)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary = pl_module.epoch_summary()  # collective: every rank calls it
        epoch = trainer.current_epoch
        val_nme = float(summary["val_nme"])
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # set per epoch by the module, no scheduler
        improved = math.isfinite(val_nme) and val_nme < self.best_val_nme
        if improved:
            self.best_val_nme, self.best_epoch = val_nme, epoch
        final = epoch + 1 >= (trainer.max_epochs or 0)
        save_last = (epoch + 1) % self.every_n_epochs == 0 or final
        if trainer.is_global_zero:
            row = {"epoch": epoch, "train_loss": float(summary["train_loss"]), "val_nme": val_nme, "lr": lr,
                   "seconds": time.perf_counter() - self._epoch_start}
            append_metrics(self.out_dir / "metrics.csv", row)
            plot_curve(self.out_dir / "metrics.csv", self.out_dir / "curve.png")
            if improved:
                self._save_model(pl_module, "best", epoch, val_nme)
            if save_last:
                self._save_model(pl_module, "last", epoch, val_nme)
        if save_last:
            # collective; rank 0 writes (through SafetensorsCheckpointIO)
            trainer.save_checkpoint(self.out_dir / "last.safetensors", weights_only=False)
        trainer.strategy.barrier("facetrack-checkpoint")

    def _save_model(self, pl_module: LightningModule, name: str, epoch: int, val_nme: float) -> None:
        from facetrack.models.hub import save_model

        card = dict(self.card())
        training = dict(card.get("training", {}))
        training.update({"epoch": epoch, "val_nme": val_nme, "best_val_nme": self.best_val_nme,
                         "best_epoch": self.best_epoch, "git_commit": self._commit})
        card["training"] = training
        save_model(pl_module.model, self.out_dir / name, card)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch to ``metrics.csv`` (header written with the first row); flushed at once."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRICS_COLUMNS})


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` as numbers (epoch as int)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = []
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append({k: (int(row[k]) if k == "epoch" else float(row[k])) for k in METRICS_COLUMNS})
            except (KeyError, TypeError, ValueError):
                raise DataError(path, f"malformed metrics row {row}", i) from None
        return rows


def truncate_metrics(path: Path, first_epoch: int) -> None:
    """Drop rows with ``epoch >= first_epoch`` (they will be written again by the resumed run)."""
    rows = read_metrics(path)
    kept = [r for r in rows if r["epoch"] < first_epoch]
    if len(kept) == len(rows):
        return
    path.unlink()
    for row in kept:
        append_metrics(path, row)


def plot_curve(metrics_path: Path, png_path: Path) -> None:
    """Validation NME (%) per epoch, so a run's progress can be judged at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if math.isfinite(r["val_nme"])]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot([r["epoch"] for r in rows], [100 * r["val_nme"] for r in rows], marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NME (%, inter-ocular)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
