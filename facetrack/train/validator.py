"""Training the face validator (``facetrack.tracking.validator``, CRCT's FV, Eq. 6) on the *training* split of
300W only:

    python -m facetrack.train.validator train --data ../shared/data/300w --out facetrack/weights/face_validator

positives: annotated faces with tracking-sized landmark noise (shift, scale, roll, per-point jitter);
negatives: background patches carrying a face-shaped landmark set, landmark sets shifted or scaled off the
face, and landmark sets rotated on the face.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facetrack.data.transforms import apply_affine, box_from_landmarks
from facetrack.schemes import IBUG68
from facetrack.tracking.validator import (
    DEFAULT_PATH, INPUT_SIZE, FaceValidatorNet, save_validator, to_tensor, validator_crop,
)

logger = logging.getLogger(__name__)

KINDS = ("positive", "background", "shifted", "rotated", "collapsed", "scattered", "positive_pair", "spanning", "blend")


def _similarity(points: np.ndarray, angle_deg: float, scale: float, shift: np.ndarray) -> np.ndarray:
    centre = points.mean(axis=0)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    return (points - centre) @ rot.T + centre + shift


def _degrade(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photometric jitter of the image channels: brightness/contrast, gray, low resolution (small faces)."""
    img = crop[..., :3].astype(np.float32)
    img = img * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
    if rng.random() < 0.15:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        small = int(rng.integers(14, 40))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (INPUT_SIZE, INPUT_SIZE),
                         interpolation=cv2.INTER_LINEAR)
    return np.concatenate([img, crop[..., 3:]], axis=2)


def pair_scene(image: np.ndarray, landmarks: np.ndarray, other: np.ndarray, other_landmarks: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with a second face pasted beside its face (touching or overlapping it, either side, in front),
    and that face's landmarks in the scene: what a tracker sees when two faces meet."""
    from facetrack.data.multiface import face_mask

    box, obox = box_from_landmarks(landmarks), box_from_landmarks(other_landmarks)
    size = float(max(box[2:] - box[:2]))
    zoom = size / float(max(obox[2:] - obox[:2])) * math.exp(rng.normal(0, 0.1))
    side = rng.choice([-1.0, 1.0])
    centre = 0.5 * (box[:2] + box[2:]) + np.array([side * rng.uniform(0.65, 1.2) * size, rng.normal(0, 0.1) * size])
    a = math.radians(rng.normal(0, 10))
    lin = zoom * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    matrix = np.hstack([lin, (centre - lin @ (0.5 * (obox[:2] + obox[2:])))[:, None]])
    h, w = image.shape[:2]
    alpha = cv2.warpAffine(face_mask(other.shape[:2], other_landmarks), matrix, (w, h))[..., None]
    pasted = cv2.warpAffine(other, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    scene = (image.astype(np.float32) * (1 - alpha) + pasted.astype(np.float32) * alpha).astype(np.uint8)
    return scene, apply_affine(other_landmarks, matrix)


def _rolled(image: np.ndarray, landmarks: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and landmarks turned together by ``angle`` degrees about the face."""
    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((float(landmarks[:, 0].mean()), float(landmarks[:, 1].mean())), angle, 1.0)
    return (cv2.warpAffine(image, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101),
            apply_affine(landmarks, rot))


def _tracked(points: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Tracking-sized landmark noise: a small similarity error plus per-point jitter."""
    pts = _similarity(points, rng.normal(0, 3), math.exp(rng.normal(0, 0.05)), rng.normal(0, 0.03 * size, 2))
    return pts + rng.normal(0, 0.012 * size, pts.shape)


def face_samples(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, upright: bool = False,
                 partner: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple[np.ndarray, int, int]]:
    """Training crops of one annotated face: [(crop, label, kind index)] (kinds: ``KINDS``).

    Positives: the face rolled (with ``upright`` crops, by any angle) with tracking-sized landmark noise, once
    with a second face (``partner``) touching it. Negatives: a face-shaped set on the background; the set
    shifted (half a face or more) or scaled off the face; rotated on the face; and the failures a tracker makes
    when faces meet or its model is lost: a shape spanning both faces, a blend of the two faces' shapes, a
    collapsed shape, a scattered one.
    """
    h, w = image.shape[:2]
    size = float(max(np.ptp(landmarks, axis=0)))
    crop = (lambda img, pts: validator_crop(img, pts, upright))
    out: list[tuple[np.ndarray, int, int]] = []
    for _ in range(2):
        angle = rng.uniform(-180, 180) if upright and rng.random() < 0.5 else rng.normal(0, 12)
        img, pts = _rolled(image, landmarks, angle)
        out.append((crop(img, _tracked(pts, size, rng)), 1, 0))
    # Background: a face-shaped landmark set placed away from the face.
    face_box = box_from_landmarks(landmarks)
    from facetrack.geometry import box_iou

    for _ in range(20):
        side = rng.uniform(0.12, 0.4) * min(h, w)
        x0, y0 = rng.uniform(-0.1 * side, w - 0.9 * side), rng.uniform(-0.1 * side, h - 0.9 * side)
        box = np.array([x0, y0, x0 + side, y0 + side])
        grown = np.concatenate([box[:2] - 0.15 * side, box[2:] + 0.15 * side])
        if box_iou(grown, face_box)[0, 0] < 0.05:
            lo, hi = face_box[:2], face_box[2:]
            pts = (landmarks - lo) / max(hi - lo) * side + box[:2]
            pts = _similarity(pts, rng.normal(0, 15), 1.0, np.zeros(2))
            out.append((crop(image, pts), 0, 1))
            break
    # Shifted (from half a face) or scaled off the face.
    if rng.random() < 0.6:
        direction = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(0.3, 0.9) * size * np.array([math.cos(direction), math.sin(direction)])
        pts = _similarity(landmarks, rng.normal(0, 10), math.exp(rng.normal(0, 0.1)), offset)
    else:
        scale = rng.uniform(0.3, 0.55) if rng.random() < 0.5 else rng.uniform(1.9, 3.0)
        pts = _similarity(landmarks, rng.normal(0, 10), scale, rng.normal(0, 0.1 * size, 2))
    out.append((crop(image, pts), 0, 2))
    # Rotated on the face: right place, wrong arrangement.
    angle = rng.choice([-1, 1]) * rng.uniform(45, 180)
    out.append((crop(image, _similarity(landmarks, angle, 1.0, np.zeros(2))), 0, 3))
    # Collapsed (squeezed along one axis or towards the centre) or scattered.
    centre = landmarks.mean(axis=0)
    if rng.random() < 0.5:
        squeeze = np.array([rng.uniform(0.15, 0.5), 1.0]) if rng.random() < 0.5 else np.array([1.0, rng.uniform(0.15, 0.5)])
        squeeze = squeeze if rng.random() < 0.7 else np.full(2, rng.uniform(0.1, 0.35))
        pts = (landmarks - centre) * squeeze + centre + rng.normal(0, 0.02 * size, landmarks.shape)
        out.append((crop(image, pts), 0, KINDS.index("collapsed")))
    else:
        pts = landmarks + rng.normal(0, rng.uniform(0.12, 0.3) * size, landmarks.shape)
        out.append((crop(image, pts), 0, KINDS.index("scattered")))
    if partner is not None:
        scene, other = pair_scene(image, landmarks, partner[0], partner[1], rng)
        out.append((crop(scene, _tracked(landmarks, size, rng)), 1, KINDS.index("positive_pair")))
        if rng.random() < 0.5:  # one shape stretched over both faces
            both = box_from_landmarks(np.concatenate([landmarks, other]))
            own = box_from_landmarks(landmarks)
            stretch = (both[2:] - both[:2]) / (own[2:] - own[:2]) * rng.uniform(0.85, 1.05)
            pts = (landmarks - 0.5 * (own[:2] + own[2:])) * stretch + 0.5 * (both[:2] + both[2:])
            out.append((crop(scene, pts + rng.normal(0, 0.02 * size, pts.shape)), 0, KINDS.index("spanning")))
        else:  # a blend of the two faces' shapes: midway, or some components on each face
            if rng.random() < 0.5:
                lam = rng.uniform(0.3, 0.7)
                pts = (1 - lam) * landmarks + lam * other
            else:
                pts = landmarks.copy()
                for group in IBUG68.groups.values():
                    if rng.random() < 0.5:
                        pts[list(group)] = other[list(group)]
            out.append((crop(scene, pts), 0, KINDS.index("blend")))
    return [(_degrade(c, rng), y, k) for c, y, k in out]


@dataclass
class SampleSet:
    x: np.ndarray  # (M, 64, 64, 4) uint8
    y: np.ndarray  # (M,) int
    kind: np.ndarray  # (M,) index into KINDS


def build_samples(samples: Sequence[Any], seed: int, upright: bool = False) -> SampleSet:
    """Crops for every ``FaceSample`` (image + landmarks), drawn with ``seed``; each face meets another face of
    the same set (the next one) in its two-face scene."""
    rng = np.random.default_rng(seed)
    xs, ys, ks = [], [], []
    previous = None
    for sample in tqdm(samples, desc="validator crops", unit="face", leave=False):
        image = sample.load_image()
        points = np.asarray(sample.landmarks, dtype=np.float64)
        partner, previous = previous, (image, points)
        for crop, label, kind in face_samples(image, points, rng, upright, partner):
            xs.append(crop)
            ys.append(label)
            ks.append(kind)
    return SampleSet(np.stack(xs), np.asarray(ys), np.asarray(ks))


@torch.inference_mode()
def evaluate(net: FaceValidatorNet, data: SampleSet, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy overall and per kind of sample (positives, background, shifted/scaled, rotated)."""
    net.eval()
    probs = np.concatenate([torch.sigmoid(net(to_tensor(data.x[i:i + 256]))).numpy() for i in range(0, len(data.y), 256)])
    correct = (probs >= threshold) == (data.y == 1)
    metrics = {"accuracy": float(correct.mean()), "samples": int(len(data.y))}
    for k, name in enumerate(KINDS):
        sel = data.kind == k
        if sel.any():
            metrics[f"accuracy_{name}"] = float(correct[sel].mean())
    return metrics


def train_validator(root: str | Path, out: str | Path, epochs: int = 6, seed: int = 0,
                    batch_size: int = 64, lr: float = 2e-3, upright: bool = True) -> dict[str, Any]:
    """Train on the 300W training split (``split_by_subject(samples, 0.1, seed=0)``), report held-out accuracy,
    and save the weights and card at ``out``."""
    from facetrack.data.splits import split_by_subject
    from facetrack.data.w300 import load_300w

    started = time.monotonic()
    torch.manual_seed(seed)
    samples = load_300w(root, "train")
    train_faces, val_faces = split_by_subject(samples, 0.1, seed=0)
    train = build_samples(train_faces, seed, upright)
    val = build_samples(val_faces, seed + 1, upright)
    logger.info("validator: %d training crops from %d faces, %d held-out crops from %d faces",
                len(train.y), len(train_faces), len(val.y), len(val_faces))
    net = FaceValidatorNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train.y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    pos_weight = torch.tensor(float((train.y == 0).sum()) / max(float((train.y == 1).sum()), 1.0))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(train.y))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = train.x[idx]
            flip = rng.random(len(idx)) < 0.5
            batch[flip] = batch[flip][:, :, ::-1]
            x, y = to_tensor(batch), torch.from_numpy(train.y[idx].astype(np.float32))
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        logger.info("epoch %d: loss %.4f, held-out %s", epoch + 1, total / len(order), evaluate(net, val))
    metrics = evaluate(net, val)
    train_metrics = evaluate(net, train)
    seconds = time.monotonic() - started
    card = {
        "name": "face_validator",
        "task": "p(face | crop around landmarks, landmarks drawn): CRCT face validator (Aspandi et al. 2019, Eq. 6)",
        "training_data": {"dataset": "300-W training set crops (afw, helen/trainset, lfpw/trainset)",
                          "split": "facetrack.data.splits.split_by_subject(samples, 0.1, seed=0): train part only",
                          "faces": len(train_faces), "crops": int(len(train.y)), "licence": "300-W: research use only"},
        "samples": {"positive": "2 per face, roll N(0,12) deg (half of them any roll with upright crops), shift "
                                "N(0,3%), scale N(0,5%), point jitter 1.2%",
                    "positive_pair": "1 per face: the same with a second training face pasted touching it",
                    "background": "face-shaped landmark set on a patch not overlapping the face",
                    "shifted": "landmarks moved 30-90% of the face size or scaled x0.3-0.55 / x1.9-3.0",
                    "rotated": "landmarks rotated 45-180 deg on the face",
                    "collapsed": "landmarks squeezed to 15-50% along one axis, or to 10-35% towards their centre",
                    "scattered": "every landmark moved by N(0, 12-30% of the face size)",
                    "spanning": "in the two-face scene: the shape stretched over both faces",
                    "blend": "in the two-face scene: the shapes averaged (30-70%) or facial components mixed"},
        "metrics": {"held_out": metrics, "held_out_faces": len(val_faces), "train": train_metrics, "threshold": 0.5},
        "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "AdamW + OneCycle",
                     "seed": seed, "seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
                     "command": "python -m facetrack.train.validator train --data ../shared/data/300w "
                                f"--out facetrack/weights/face_validator --epochs {epochs}"
                                + ("" if upright else " --no-upright")},
        "upright": upright,
        "parameters": int(sum(p.numel() for p in net.parameters())),
    }
    save_validator(net, out, card, upright=upright)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facetrack.train.validator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the face validator on the 300W training split")
    t.add_argument("--data", type=Path, required=True, help="300W root (folders afw, helen, lfpw)")
    t.add_argument("--out", type=Path, default=DEFAULT_PATH, help="weights stem (writes .safetensors and .json)")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-upright", action="store_true", help="crops along the image axes (the first validator's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    card = train_validator(args.data, args.out, epochs=args.epochs, seed=args.seed, upright=not args.no_upright)
    print(json.dumps(card["metrics"], indent=2))
    print(f"wrote {args.out}.safetensors and .json in {card['training']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
