"""Fixtures for the training tests: a tiny 300-W folder (official layout) and a tiny model config."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.io.pts import write_pts

FOLDERS = ("afw", "helen/trainset", "lfpw/trainset")

# A model small enough to train a step in well under a second on one CPU thread.
TINY_MODEL = {
    "arch": "aohr",
    "config": {
        "input_size": 64, "ratio": 3.0, "gamma": 0.4, "head_channels": 16, "attn_dim": 8, "head_layers": 1,
        "head_separable": True,
        "backbone": {"name": "lite", "channels": [8, 8, 16, 16], "expand": 2, "out_channels": 16},
    },
}


def face_template() -> np.ndarray:
    """A plausible 68-point iBUG face in a unit box (x right, y down), subject's right on image left."""
    pts = np.zeros((68, 2))
    t = np.linspace(np.pi, 0, 17)  # jaw: left ear -> chin -> right ear
    pts[0:17] = np.c_[0.5 + 0.5 * np.cos(t), 0.45 + 0.55 * np.sin(t)]
    pts[17:22] = np.c_[np.linspace(0.12, 0.42, 5), 0.28 - 0.05 * np.sin(np.linspace(0, np.pi, 5))]
    pts[22:27] = np.c_[np.linspace(0.58, 0.88, 5), 0.28 - 0.05 * np.sin(np.linspace(0, np.pi, 5))]
    pts[27:31] = np.c_[np.full(4, 0.5), np.linspace(0.35, 0.6, 4)]
    pts[31:36] = np.c_[np.linspace(0.4, 0.6, 5), np.full(5, 0.66)]
    for start, cx in ((36, 0.3), (42, 0.7)):
        a = np.linspace(np.pi, -np.pi, 7)[:6]
        pts[start:start + 6] = np.c_[cx + 0.1 * np.cos(a), 0.4 - 0.04 * np.sin(a)]
    a = np.linspace(np.pi, -np.pi, 13)[:12]
    pts[48:60] = np.c_[0.5 + 0.18 * np.cos(a), 0.8 - 0.07 * np.sin(a)]
    a = np.linspace(np.pi, -np.pi, 9)[:8]
    pts[60:68] = np.c_[0.5 + 0.12 * np.cos(a), 0.8 - 0.03 * np.sin(a)]
    return pts


def write_300w(root: Path, per_folder: int = 4, size: int = 96, seed: int = 0) -> Path:
    """Write ``per_folder`` faces into each 300-W training folder: noise images with the landmarks drawn."""
    rng = np.random.default_rng(seed)
    template = face_template()
    for f, folder in enumerate(FOLDERS):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            side = rng.uniform(0.45, 0.6) * size
            origin = rng.uniform(0.1 * size, size - side - 0.1 * size, size=2)
            pts = origin + template * side + rng.normal(0, 0.5, size=(68, 2))
            image = rng.integers(60, 120, size=(size, size, 3)).astype(np.uint8)
            for x, y in pts:
                cv2.circle(image, (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
            stem = f"{1000 + 10 * f + i}_1"
            cv2.imwrite(str(root / folder / f"{stem}.png"), image)
            write_pts(root / folder / f"{stem}.pts", pts)
    return root


@pytest.fixture
def w300_root(tmp_path: Path) -> Path:
    return write_300w(tmp_path / "300w")


@pytest.fixture
def tiny_recipe(tmp_path: Path, w300_root: Path) -> Path:
    """A recipe file training TINY_MODEL on the tiny 300-W folder for 2 short epochs."""
    import yaml

    recipe = {
        "model": TINY_MODEL,
        "data": {"dataset": "300w", "root": str(w300_root), "split": "train", "val_fraction": 0.25,
                 "augment": {"occlusion_prob": 0.5}},
        "optim": {"lr": 1e-3, "batch_size": 4},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "out": str(tmp_path / "run"), "threads": 1,
                    "limit_train_batches": 2, "progress_bar": False},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path
