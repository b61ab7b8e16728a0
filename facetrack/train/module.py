"""The LightningModules: the model's own loss for training, inter-ocular NME in original pixels for validation;
``TemporalModule`` the same on clips (temporal recipes, ``facetrack.train.temporal``).

The model owns its loss and codec (``LandmarkModel.loss`` / ``predict``), so this module only moves batches,
maps predictions back through the inverse crop matrix and keeps per-epoch sums that are reduced across
processes (DDP) before anything is logged or written.
"""
from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from facetrack.data.transforms import apply_affine, invert_affine
from facetrack.metrics.nme import nme, normaliser
from facetrack.models.base import LandmarkModel
from facetrack.train.config import OptimSection
from facetrack.train.temporal import jitter_loss


def lr_factor(epoch: int, optim: OptimSection, max_epochs: int) -> float:
    """Multiplier of the base learning rate at ``epoch``: linear warmup, then none/cosine/step decay."""
    if optim.warmup_epochs > 0 and epoch < optim.warmup_epochs:
        return (epoch + 1) / (optim.warmup_epochs + 1)
    e = epoch - optim.warmup_epochs
    if optim.schedule == "cosine":
        span = max(max_epochs - optim.warmup_epochs - 1, 1)
        t = min(e / span, 1.0)
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if optim.schedule == "step":
        return optim.gamma ** (e // max(optim.step_size, 1))
    return 1.0


class LandmarkModule(pl.LightningModule):
    """Trains ``model`` with Adam on ``model.loss``; validates with the mean inter-ocular NME (a fraction)."""

    def __init__(self, model: LandmarkModel, optim: OptimSection, max_epochs: int,
                 nme_kind: str = "ocular") -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.max_epochs = max_epochs
        self.nme_kind = nme_kind
        self._train_sum = torch.zeros(2, dtype=torch.float64)  # loss x faces, faces
        self._val_sum = torch.zeros(2, dtype=torch.float64)    # NME sum, faces
        self.last_val_nme = math.nan

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.model(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        outputs = self.model(batch["image"])
        loss = self.model.loss(outputs, batch["targets"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {self.current_epoch}, "
                                     f"batch {batch_idx} (lower optim.lr?)")
        size = len(batch["image"])
        self._train_sum += torch.tensor([loss.item() * size, size], dtype=torch.float64)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_sum.zero_()
        # The learning rate is a pure function of (recipe, epoch), set here rather than kept in a scheduler's
        # state, so a resumed run (even one whose max_epochs was raised) follows the recipe exactly.
        lr = self.optim.lr * lr_factor(self.current_epoch, self.optim, self.max_epochs)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_validation_epoch_start(self) -> None:
        self._val_sum.zero_()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        coords, _ = self.model.predict(batch["image"])
        errors = self.batch_nme(coords, batch)
        self._val_sum += torch.tensor([float(errors.sum()), len(errors)], dtype=torch.float64)

    def batch_nme(self, coords: Tensor, batch: dict[str, Any]) -> np.ndarray:
        """Per-face NME of crop-pixel predictions, mapped back to original pixels through each crop matrix."""
        pred_crop = coords.detach().float().cpu().numpy().astype(np.float64)
        matrices = batch["matrix"].cpu().numpy()
        pred = np.stack([apply_affine(p, invert_affine(m)) for p, m in zip(pred_crop, matrices)])
        gt = batch["landmarks"].cpu().numpy()
        visible = batch["visible"].cpu().numpy()
        return nme(pred, gt, normaliser(gt, self.model.scheme, self.nme_kind), visible)

    def on_validation_epoch_end(self) -> None:
        total = self._reduce(self._val_sum)
        self.last_val_nme = float(total[0] / total[1]) if total[1] > 0 else math.nan
        if not self.trainer.sanity_checking:
            self.log("val_nme", self.last_val_nme, prog_bar=True)  # already reduced over processes

    def epoch_summary(self) -> dict[str, float]:
        """Mean training loss and validation NME of the epoch over all processes (call on every rank)."""
        total = self._reduce(self._train_sum)
        train_loss = float(total[0] / total[1]) if total[1] > 0 else math.nan
        return {"train_loss": train_loss, "val_nme": self.last_val_nme}

    def _reduce(self, sums: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return sums.clone()
        reduced = self.trainer.strategy.reduce(sums.to(self.device, torch.float64), reduce_op="sum")
        return reduced.cpu()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Adam as in AOHR (lr 1e-4); the schedule is applied per epoch in on_train_epoch_start.
        return torch.optim.Adam(self.model.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)


class TemporalModule(LandmarkModule):
    """``LandmarkModule`` on clips: the model's loss over (B, T, ...), Eq. 7's schedule, and video NRMSE
    (per clip, then over clips) for validation. Batches hold ``crops`` or cached ``sx``/``sy``."""

    def __init__(self, model: Any, optim: Any, max_epochs: int, rle: Any = None) -> None:
        super().__init__(model, optim, max_epochs)
        self.rle = rle
        if rle is not None:
            rle.requires_grad_(False)
            rle.eval()

    def _outputs(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        if "sx" in batch:
            return self.model.forward_features(batch["sx"], batch["sy"])
        return self.model.forward_sequence(batch["crops"])

    def _targets(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        targets = dict(batch["targets"])
        if self.rle is not None and "cx" not in targets and self.model.use_confidence_loss and "crops" in batch:
            from facetrack.train.confidence_labels import sequence_confidence_labels

            targets["cx"], targets["cy"] = sequence_confidence_labels(self.rle, batch["crops"])
        return targets

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        outputs = self._outputs(batch)
        loss = self.model.loss(outputs, self._targets(batch))
        weight = getattr(self.optim, "jitter_weight", 0.0)
        if weight > 0:
            loss = loss + weight * jitter_loss(self.model, outputs, batch["matrix"], batch["landmarks"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {self.current_epoch}, "
                                     f"batch {batch_idx} (lower optim.lr?)")
        size = len(batch["landmarks"])
        self._train_sum += torch.tensor([loss.item() * size, size], dtype=torch.float64)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        # Eq. 7: L_c only in the first half of the epochs (and only with labels).
        self.model.set_confidence_loss(self.current_epoch < self.max_epochs / 2)
        if callable(getattr(self.model, "set_epoch", None)):  # e.g. CRCT's curriculum over sequence lengths
            self.model.set_epoch(self.current_epoch, self.max_epochs)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        with torch.no_grad():
            coords, _ = self.model.decode(self._outputs(batch))
        errors = self.clip_nrmse(coords, batch)
        self._val_sum += torch.tensor([float(errors.sum()), len(errors)], dtype=torch.float64)

    def clip_nrmse(self, coords: Tensor, batch: dict[str, Any]) -> np.ndarray:
        """Per clip: mean over frames of the inter-ocular NME in frame pixels (B,)."""
        crop = coords.detach().float().cpu().numpy().astype(np.float64)  # (B, T, N, 2)
        mats = batch["matrix"].cpu().numpy()
        gt = batch["landmarks"].cpu().numpy()
        b, t = crop.shape[:2]
        pred = np.stack([[apply_affine(crop[i, j], invert_affine(mats[i, j])) for j in range(t)]
                         for i in range(b)])
        flat_gt = gt.reshape(b * t, *gt.shape[2:])
        per_frame = nme(pred.reshape(b * t, *pred.shape[2:]), flat_gt,
                        normaliser(flat_gt, self.model.scheme, self.nme_kind))
        return per_frame.reshape(b, t).mean(axis=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
