"""Scoring any method's output against ground truth with one code path (as SPIGA's benchmark does): prediction
files of ``facetrack detect`` (ours or a peer's) for images, tracking output folders for videos.

- ``ground_truth``: the annotated faces (as the subsets a report lists) and videos of a catalogued dataset,
  and the ``--boxes`` file of the ground-truth-box protocol.
- ``matching``: images by path, faces by box overlap then landmark centroid, tracks to annotated frames.
- ``scoring``: NME / AUC / FR per subset (images); NRMSE, FHR stability, NMJ, frames lost, AUROC (videos).
- ``tables``: the printed tables, joining video results.
"""
from __future__ import annotations

from facetrack.evaluation.ground_truth import (
    VideoTruth,
    load_ground_truth,
    load_pseudo_truth,
    load_shared300w,
    load_video_truth,
    matching_root,
    write_gt_boxes,
)
from facetrack.evaluation.matching import (
    VideoTrack,
    find_track,
    gt_key,
    match_faces,
    match_images,
    track_from_csv,
    track_from_pts,
)
from facetrack.evaluation.scoring import (
    CONVERTIBLE,
    HEADLINE_S,
    STABILITY_TERMS,
    EvaluationSettings,
    FaceRecord,
    VideoSettings,
    auroc,
    default_settings,
    evaluate,
    evaluate_videos,
    score_video,
    summarise,
    track_clip,
)
from facetrack.evaluation.tables import format_table, format_video_table, merge_results, method_name, read_video_result

__all__ = [
    "CONVERTIBLE", "HEADLINE_S", "STABILITY_TERMS", "EvaluationSettings", "FaceRecord", "VideoSettings",
    "VideoTrack", "VideoTruth", "auroc", "default_settings", "evaluate", "evaluate_videos", "find_track",
    "format_table", "format_video_table", "gt_key", "load_ground_truth", "load_pseudo_truth", "load_shared300w",
    "load_video_truth", "match_faces", "match_images", "matching_root", "merge_results", "method_name",
    "read_video_result", "score_video", "summarise", "track_clip", "track_from_csv", "track_from_pts",
    "write_gt_boxes",
]
