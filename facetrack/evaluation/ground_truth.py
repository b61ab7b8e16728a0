"""Ground truth for scoring: the annotated faces of an image dataset as the subsets a report lists, the
``--boxes`` file of the ground-truth-box protocol, and the annotated videos of ``evaluate --video``. Every
dataset-specific choice (splits, subsets, the matching root) comes from the catalogue
(``facetrack.data.catalog``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facetrack.data.pseudo import load_pseudo_truth
from facetrack.data.sample import FaceSample
from facetrack.data.video_truth import VideoTruth
from facetrack.geometry import box_from_points
from facetrack.io.results import atomic_write_text

__all__ = ["VideoTruth", "load_ground_truth", "load_pseudo_truth", "load_shared300w", "load_video_truth",
           "matching_root", "write_gt_boxes"]


def load_ground_truth(dataset: str, root: str | Path, split: str | None = None) -> dict[str, list[FaceSample]]:
    """The annotated faces of ``dataset`` as named subsets, in the order reports list them.

    300W ``full`` yields ``common``, ``challenge`` and ``full`` (AOHR Table 3's rows); WFLW ``test`` yields
    ``full`` then its six attribute subsets, as papers list them. COFW's ``root`` may be the .mat file.
    """
    from facetrack.data import catalog

    return catalog.subsets(dataset, root, split)


def load_shared300w(root: str | Path, split: str = "val") -> list[FaceSample]:
    """The 300-W development crops: ``val`` (10 % of source photographs held out, seed 0: the split every
    shipped recipe validates on), ``train`` (the rest), ``all``, or a training run's ``split.json``."""
    from facetrack.data import catalog

    return catalog.load("shared300w", root, split)


def matching_root(dataset: str, root: str | Path, split: str | None = None) -> Path:
    """The folder (or file) image paths are matched relative to: the dataset root, except COFW, whose
    faces are named ``<file.mat>/<index>`` so predictions for ``0001.png`` match face ``0001``."""
    from facetrack.data import catalog

    return catalog.matching_root(dataset, root, split)


def write_gt_boxes(samples: Sequence[FaceSample], path: str | Path, relative_to: str | Path | None = None) -> Path:
    """Write the ``--boxes`` input of ``facetrack detect`` (image path -> list of boxes) from ground truth,
    for the ground-truth-box protocol. A face without an annotated box gets its landmark extent box.

    Keys are the image paths as the reader gives them, or relative to ``relative_to`` (run ``detect`` from
    that folder so its paths match)."""
    boxes: dict[str, list[list[float]]] = {}
    for s in samples:
        key = str(s.image_path)
        if relative_to is not None:
            key = os.path.relpath(os.path.abspath(s.image_path), os.path.abspath(relative_to))
        box = s.bbox if s.bbox is not None else box_from_points(s.landmarks)
        boxes.setdefault(key, []).append([round(float(v), 3) for v in np.asarray(box, dtype=np.float64).reshape(4)])
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in boxes.items())
    return atomic_write_text(path, "{\n" + body + "\n}\n")  # one line per image: easy to read and diff


def load_video_truth(dataset: str, root: str | Path, splits: Sequence[str] = (),
                     skip_frames: str | Path | None = None) -> dict[str, list[VideoTruth]]:
    """Ground-truth videos by table column: 300VW splits (default S1, S2, S3), ``TF`` (7 common points),
    or ``pseudo`` (clip folders written by ``facetrack.data.synthetic.write_clip``): the catalogue spec's
    ``truth``."""
    from facetrack.data.catalog import get_dataset, list_datasets

    try:
        spec = get_dataset(dataset)
    except KeyError:
        spec = None
    if spec is None or spec.truth is None:
        raise ValueError(f"unknown video dataset {dataset!r}; known: {', '.join(list_datasets(video_truth=True))}")
    return spec.truth(root, splits, skip_frames)
