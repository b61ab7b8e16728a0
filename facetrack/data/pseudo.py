"""Pseudo-videos as datasets: ``pseudo`` (clip folders written by ``facetrack.data.synthetic.write_clip``, the
ground truth of ``evaluate --video``) and ``pseudo300w`` (training clips made on the fly from the shared 300-W
crops, for temporal recipes).

- ``pseudo300w``: pseudo-videos of the *training* identities of the shared 300-W crops
  (``catalog.load("shared300w", root, "train")``; the expression model is fitted on them only); validation on
  fixed pseudo-videos of the held-out identities (``"val"``), never used for training.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.data.catalog import DatasetSpec, register_dataset
from facetrack.data.video_truth import VideoTruth
from facetrack.errors import DataError
from facetrack.io.pts import read_pts


def load_pseudo_truth(root: str | Path) -> list[VideoTruth]:
    """Pseudo-video clips in the 300VW layout: ``root`` is one clip (``annot/``) or a folder of clips.

    Occlusion masks come from each clip's ``pseudo_video.json`` when present."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "pseudo-video folder not found")
    clips = [root] if (root / "annot").is_dir() else sorted(p for p in root.iterdir() if (p / "annot").is_dir())
    if not clips:
        raise DataError(root, "no clip folders with annot/*.pts here")
    videos = []
    for clip in clips:
        files = sorted((p for p in (clip / "annot").iterdir() if p.suffix.lower() == ".pts"), key=lambda p: p.stem)
        bad = next((p for p in files if not p.stem.isdigit()), None)
        if bad is not None:
            raise DataError(bad, "annotation name is not a frame number (000001.pts ...)")
        if not files:
            raise DataError(clip / "annot", "no .pts annotations")
        numbers = np.array([int(p.stem) for p in files], dtype=np.int64)
        landmarks = np.stack([read_pts(p) for p in files])
        occluded = None
        meta_path = clip / "pseudo_video.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                occ = np.asarray(meta["occluded"], dtype=bool)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(meta_path, f"cannot read the occlusion masks ({exc})") from None
            if occ.shape[0] < numbers.max() or occ.shape[1:] != landmarks.shape[1:2]:
                raise DataError(meta_path, f"occlusion masks {occ.shape} do not match {len(files)} annotations")
            occluded = occ[numbers - 1]
        videos.append(VideoTruth(clip.name, "pseudo", numbers - 1, [p.stem for p in files], landmarks, occluded))
    return videos


def _pseudo_truth(root: str | Path, splits: Any = (), skip_frames: Any = None) -> dict[str, list[VideoTruth]]:
    return {"pseudo": load_pseudo_truth(root)}


def spread(items: list[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over the list (all when count <= 0 or >= len)."""
    if count <= 0 or count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round()]


def video_config(clips: Any, source: str | Path) -> Any:
    """The ``PseudoVideoConfig`` of a recipe's ``data.clips`` section."""
    from facetrack.data.synthetic import PseudoVideoConfig

    try:
        return PseudoVideoConfig(**{**clips.video, "num_frames": clips.num_frames})
    except (TypeError, ValueError) as exc:
        raise DataError(source, f"data.clips.video: {exc}") from None


def pseudo300w_clips(data: Any, source: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """(train source, val source, description) of pseudo-videos made from the shared 300-W crops."""
    from facetrack.data.catalog import load
    from facetrack.data.sequences import PseudoVideoSource, fit_training_shape_model

    clips = data.clips
    train = load("shared300w", data.root, "train")
    val = load("shared300w", data.root, "val")
    shape_model = fit_training_shape_model(train, clips.shape_modes or None)
    video = video_config(clips, source)
    train_source = PseudoVideoSource(train, clips.num_frames, video, shape_model, clips.clips_per_still)
    val_source = PseudoVideoSource(spread(val, clips.val_clips), clips.num_frames, video, shape_model)
    info = {"train_identities": "load_shared300w(root, 'train')", "train_stills": len(train),
            "val_identities": "load_shared300w(root, 'val') (held out, never trained on)",
            "val_clips": len(val_source), "shape_model": f"{shape_model.num_modes} modes, training faces only",
            "video": dataclasses.asdict(video)}
    return train_source, val_source, info


register_dataset(DatasetSpec(
    name="pseudo", kind="video", scheme="ibug68",
    description="pseudo-video clip folders (facetrack.data.synthetic.write_clip), exact ground truth",
    truth=_pseudo_truth, subject="the still a clip was made from",
    terms="as the stills the clips were made from",
))
register_dataset(DatasetSpec(
    name="pseudo300w", kind="video", scheme="ibug68",
    description="training clips made on the fly from the shared 300-W crops (held-out identities validate)",
    clips=pseudo300w_clips, subject="source photograph of the still",
    terms="300-W (Sagonas et al.): research use only",
))
