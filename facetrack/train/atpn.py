"""ATPN stages 2 and 3 (thesis §3.2.4): the tracking branch, then the pose branch, each with the backbone and the
landmark branch frozen (stage 1 is an ordinary frame recipe: configs/atpn68_landmarks.yaml).

    python -m facetrack.train.atpn configs/atpn68_tracking.yaml
    python -m facetrack.train.atpn configs/atpn68_pose.yaml

Data (300-W development faces of the project's split, ``catalog.train_val``: the held-out 10 % only validates):
- tracking: positives = each face's crop as the tracker cuts it (upright at the face's roll, landmark box x 1.25)
  with tracking-sized jitter; ``negatives`` per positive (the thesis: 10) = square crops whose overlap with the
  face's crop square is below ``max_iou`` (0.3), cut from the same photograph's background and from the frames of
  the face-free videos (``videos``). Unlike the face validator (``facetrack.train.validator``), whose negatives are
  landmark sets placed wrongly on an image, ATPN finds its own landmarks: its negatives are crops.
- pose: each face's crop with the stage-1 augmentation (rotation, flip, scale, shift) and as label the generic 3D
  face's PnP fit to the crop's landmarks (``facetrack.pose``; the camera: focal = the photograph's larger side,
  scaled to the crop), so flips and turns carry their true effect on the angles.

The frozen part is run once: each crop's fused features F_O (Eq. 3.2) are cached (float16) and the branch is
trained on them, so an epoch costs only the branch. Losses: Eq. 3.5 as standard binary cross-entropy, Eq. 3.7 as the
mean absolute angle error (``facetrack.models.atpn``); the L2 terms of Eq. 3.6 / 3.8 are Adam's weight decay.
Adam (0.9, 0.999) at ``lr`` with a cosine decay (the thesis's "decayed by a factor 0.04 after every 2 epochs" is
ambiguous). Every epoch writes ``out/last`` (safetensors + card, with the epoch); ``out/best`` keeps the best
validation score; a run whose ``out/last`` exists resumes from it (branch weights and epoch; Adam's moments restart).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import yaml

from facetrack.data.transforms import apply_affine, crop_matrix, face_roll, upright_box, warp
from facetrack.errors import DataError
from facetrack.geometry import box_iou
from facetrack.schemes import get_scheme

logger = logging.getLogger(__name__)
STAGES = ("tracking", "pose")


@dataclass
class HeadRecipe:
    """One stage-2 or stage-3 recipe (YAML keys = these fields)."""

    name: str = ""
    stage: str = "tracking"
    init_weights: str = ""          # the previous stage's weights (safetensors + card)
    dataset: str = "shared300w"
    root: str = "../shared/data/300w"
    videos: list[str] = field(default_factory=list)  # face-free videos: tracking negatives
    video_frames: int = 40          # frames sampled from each video
    negatives: int = 10             # per positive (tracking)
    max_iou: float = 0.3            # negatives overlap the face's crop square less than this
    crops_per_face: int = 2         # training crops per face (pose: augmented; tracking: jittered positives)
    rotation: float = 15.0          # pose augmentation, degrees
    flip_prob: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 12
    threads: int = 1
    seed: int = 0
    out: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.negatives < 1 or not 0 < self.max_iou < 1 or self.epochs < 1 or self.crops_per_face < 1:
            raise ValueError("need negatives >= 1, 0 < max_iou < 1, epochs >= 1 and crops_per_face >= 1")


def read_recipe(path: str | Path) -> HeadRecipe:
    """A ``HeadRecipe`` from YAML; an unknown key or a bad value is a DataError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(path, f"cannot read the recipe ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(path, "a recipe is a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(HeadRecipe)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DataError(path, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    raw.setdefault("name", path.stem)
    try:
        return HeadRecipe(**raw)
    except (TypeError, ValueError) as exc:
        raise DataError(path, str(exc)) from None


# ------------------------------------------------------------------------------------------------ crops


def face_crop(image: np.ndarray, points: np.ndarray, size: int, rng: np.random.Generator | None,
              rotation: float = 0.0, flip: bool = False, jitter: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's crop of a face (upright at its roll, landmark box x 1.25), with random shift / scale /
    turn when ``rng`` is given; (crop, image->crop matrix)."""
    roll = face_roll(points, get_scheme("ibug68"))
    box = upright_box(points, roll)
    turn, shift, scale = 0.0, np.zeros(2), 1.25
    if rng is not None:
        turn = rng.uniform(-rotation, rotation) if rotation > 0 else rng.normal(0, 4)
        shift = rng.uniform(-jitter, jitter, 2)
        scale = 1.25 * math.exp(rng.normal(0, jitter))
    matrix = crop_matrix(box, size, scale, roll + turn, shift, flip)
    return warp(image, matrix, size), matrix


def crop_square(points: np.ndarray) -> np.ndarray:
    """The axis-aligned square a face's tracker crop covers (landmark box x 1.25, centred)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    half = 0.625 * float(max(hi - lo))
    c = 0.5 * (lo + hi)
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def negative_crops(image: np.ndarray, faces: Sequence[np.ndarray], count: int, size: int, max_iou: float,
                   rng: np.random.Generator, tries: int = 50) -> list[np.ndarray]:
    """Up to ``count`` square crops of ``image`` overlapping every face's crop square by IoU < ``max_iou``: sides
    from 0.5x to 2x a face's crop (or 10-60 % of the image when it has no face), any position, a small turn."""
    h, w = image.shape[:2]
    squares = np.stack([crop_square(p) for p in faces]) if len(faces) else np.zeros((0, 4))
    face_side = float(np.mean(squares[:, 2] - squares[:, 0])) if len(squares) else 0.0
    out: list[np.ndarray] = []
    for _ in range(count * tries):
        if len(out) == count:
            break
        side = face_side * math.exp(rng.uniform(math.log(0.5), math.log(2.0))) if face_side else \
            rng.uniform(0.1, 0.6) * min(h, w)
        side = min(side, 0.95 * min(h, w))
        x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
        box = np.array([x0, y0, x0 + side, y0 + side])
        if len(squares) and box_iou(box[None], squares).max() >= max_iou:
            continue
        out.append(warp(image, crop_matrix(box, size, 1.0, rng.normal(0, 10)), size))
    return out


def video_frames(paths: Sequence[str], per_video: int) -> list[np.ndarray]:
    """``per_video`` frames spread over each face-free video (BGR uint8)."""
    from facetrack.io.video import open_source

    frames: list[np.ndarray] = []
    for path in paths:
        with open_source(path) as source:
            every = max(1, (source.frame_count or per_video) // per_video)  # the header's count can overstate
            frames += [frame for index, _, frame in source if index % every == 0][:per_video]
    return frames


def to_tensor(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops -> model input (B, 3, F, F) RGB in [0, 1]."""
    rgb = np.stack(crops)[..., ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))


@torch.no_grad()
def fused_features(model: Any, crops: Sequence[np.ndarray], batch: int = 64) -> torch.Tensor:
    """F_O (Eq. 3.2) of each crop from the frozen backbone and landmark branch, float16 (M, C, 28, 28)."""
    from facetrack.models.atpn import heatmap

    model.eval()
    out = []
    for i in range(0, len(crops), batch):
        c28, c14, c7 = model.features(to_tensor(crops[i:i + batch]))
        shape = model.landmarks(c28, c14, c7)
        out.append((c28 * heatmap(shape.float(), c28.shape[-1], model.heatmap_floor)).half())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ data sets


def pose_label(points: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int], size: int) -> np.ndarray | None:
    """(yaw, pitch, roll) radians of a face in its crop: the generic face fitted to the crop's landmarks with the
    photograph's assumed camera scaled to the crop (``facetrack.pose``)."""
    from facetrack.pose import Camera, fit_pose

    zoom = float(np.linalg.norm(matrix[:, 0]))
    camera = Camera(max(image_size) * zoom, 0.5 * (size - 1), 0.5 * (size - 1))
    fit = fit_pose(apply_affine(points, matrix), camera)
    return None if fit is None else np.radians(fit.pose)


def build_set(recipe: HeadRecipe, model: Any, faces: Sequence[Any], train: bool, extra: Sequence[np.ndarray],
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, targets) of one side: labels 0/1 (tracking) or pose radians (M, 3) (pose)."""
    size = model.input_size
    scheme = get_scheme(model.scheme)
    crops: list[np.ndarray] = []
    targets: list[Any] = []
    for sample in faces:
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        size_hw = (image.shape[1], image.shape[0])
        views = recipe.crops_per_face if train else 1
        for k in range(views):
            if recipe.stage == "pose":
                flip = bool(train and rng.random() < recipe.flip_prob)
                crop, matrix = face_crop(image, points, size, rng if train else None, recipe.rotation, flip)
                label = pose_label(points[list(scheme.flip_perm)] if flip else points, matrix, size_hw, size)
                if label is not None:
                    crops.append(crop)
                    targets.append(label)
            else:
                crop, _ = face_crop(image, points, size, rng if (train or k > 0) else None)
                crops.append(crop)
                targets.append(1)
        if recipe.stage == "tracking":
            wanted = recipe.negatives * views
            from_video = int(rng.binomial(wanted, 0.3)) if extra else 0
            found = negative_crops(image, [points], wanted - from_video, size, recipe.max_iou, rng)
            for _ in range(from_video):
                found += negative_crops(extra[int(rng.integers(len(extra)))], [], 1, size, recipe.max_iou, rng)
            crops += found
            targets += [0] * len(found)
    features = fused_features(model, crops)
    if recipe.stage == "pose":
        return features, torch.tensor(np.stack(targets), dtype=torch.float32)
    return features, torch.tensor(targets, dtype=torch.long)


# ------------------------------------------------------------------------------------------------ training


def branch_of(model: Any, stage: str) -> torch.nn.Module:
    return model.track_branch if stage == "tracking" else model.pose_branch


@torch.no_grad()
def evaluate_branch(model: Any, stage: str, features: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Tracking: accuracy at p(face) 0.5 and 0.7 (the thesis's threshold), per class, and average precision;
    pose: MAE per angle and overall (degrees) and FR@10 (faces whose mean angle error exceeds 10 degrees)."""
    branch = branch_of(model, stage).eval()
    out = torch.cat([branch(features[i:i + 256].float()) for i in range(0, len(features), 256)])
    if stage == "pose":
        err = np.degrees((math.pi * torch.tanh(out) - targets).abs().numpy())
        mean = err.mean(axis=1)
        return {"mae": float(mean.mean()), "yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()),
                "roll": float(err[:, 2].mean()), "fr10": float((mean > 10).mean()), "faces": int(len(err))}
    p = torch.softmax(out, dim=-1)[:, 1].numpy()
    y = targets.numpy()
    result = {"faces": int((y == 1).sum()), "non_faces": int((y == 0).sum()), "ap": average_precision(p, y)}
    for t in (0.5, 0.7):
        result[f"acc@{t}"] = float(((p > t) == (y == 1)).mean())
        result[f"face_recall@{t}"] = float((p[y == 1] > t).mean())
        result[f"nonface_rejected@{t}"] = float((p[y == 0] <= t).mean())
    return result


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (the step sum of precision at each positive, VOC-style)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] == 1
    if not hits.any():
        return math.nan
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def train_head(recipe: HeadRecipe) -> dict[str, Any]:
    """Run one stage: cache F_O of the training and held-out crops, train the branch, save ``out/best``."""
    from facetrack.data import catalog
    from facetrack.models.atpn import pose_loss, track_loss
    from facetrack.models.hub import load_model, read_card, save_model

    torch.set_num_threads(max(1, recipe.threads))
    torch.manual_seed(recipe.seed)
    out = Path(recipe.out or f"runs/{recipe.name}")
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.safetensors"
    resume = last.is_file()
    model = load_model(last if resume else recipe.init_weights)
    start = int(read_card(out / "last.json").get("epoch", -1)) + 1 if resume else 0
    model.requires_grad_(False)
    branch = branch_of(model, recipe.stage)
    branch.requires_grad_(True)
    train_faces, val_faces = catalog.train_val(recipe.dataset, recipe.root)
    extra = video_frames(recipe.videos, recipe.video_frames) if recipe.stage == "tracking" else []
    split = len(extra) // 4  # the last quarter of each video's sampled frames validates
    rng = np.random.default_rng(recipe.seed)
    t0 = time.perf_counter()
    x_train, y_train = build_set(recipe, model, train_faces, True, extra[:-split or None], rng)
    x_val, y_val = build_set(recipe, model, val_faces, False, extra[-split:] if split else [], rng)
    logger.info("cached %d training and %d held-out crops in %.0f s", len(x_train), len(x_val),
                time.perf_counter() - t0)
    optimizer = torch.optim.Adam(branch.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = track_loss if recipe.stage == "tracking" else (lambda o, t: pose_loss(math.pi * torch.tanh(o), t))
    key = "ap" if recipe.stage == "tracking" else "mae"
    sign = -1.0 if key == "ap" else 1.0
    best_path = out / "best.json"
    best = float(read_card(best_path)["metrics"][key]) * sign if resume and best_path.is_file() else math.inf
    history = []
    g = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(start, recipe.epochs):
        lr = recipe.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / max(recipe.epochs - 1, 1))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        branch.train()
        order = torch.randperm(len(x_train), generator=g)
        total, seen, t_epoch = 0.0, 0, time.perf_counter()
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(branch(x_train[idx].float()), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        metrics = evaluate_branch(model, recipe.stage, x_val, y_val)
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "lr": lr,
               "seconds": round(time.perf_counter() - t_epoch, 2), **metrics}
        history.append(row)
        print(json.dumps(row), flush=True)
        card = _card(recipe, model, metrics, epoch, len(x_train), len(x_val))
        save_model(model, out / "last", card)
        if sign * metrics[key] < best:
            best = sign * metrics[key]
            save_model(model, out / "best", card)
    with open(out / "history.jsonl", "a", encoding="utf-8") as fh:
        for row in history:
            fh.write(json.dumps(row) + "\n")
    return {"out": str(out), "best": sign * best, "history": history}


def _card(recipe: HeadRecipe, model: Any, metrics: dict[str, Any], epoch: int, n_train: int, n_val: int
          ) -> dict[str, Any]:
    from facetrack.models.hub import read_card

    base = dict(getattr(model, "card", None) or {})
    base.pop("sha256", None)
    stages = dict(base.get("stages", {}))
    stages[recipe.stage] = {"recipe": dataclasses.asdict(recipe), "metrics": metrics, "epoch": epoch,
                            "train_crops": n_train, "held_out_crops": n_val}
    if recipe.init_weights and Path(recipe.init_weights).with_suffix(".json").is_file():
        stages.setdefault("init", read_card(Path(recipe.init_weights).with_suffix(".json")).get("name"))
    return {**base, "name": recipe.name, "epoch": epoch, "metrics": metrics, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facetrack.train.atpn", description=__doc__.split("\n")[0])
    parser.add_argument("recipe", help="configs/atpn68_tracking.yaml or configs/atpn68_pose.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = train_head(read_recipe(args.recipe))
    print(f"best {result['best']:.4f} -> {result['out']}/best.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
