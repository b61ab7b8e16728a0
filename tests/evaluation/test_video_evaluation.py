from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facetrack.cli import main
from facetrack.io.results import landmarks_csv_header
from facetrack.evaluation import (
    VideoSettings,
    auroc,
    evaluate_videos,
    format_video_table,
    load_pseudo_truth,
    merge_results,
    score_video,
    summarise,
)


def face68(rng: np.random.Generator, centre=(60.0, 60.0), size=40.0) -> np.ndarray:
    """68 points in a box; points 36 and 45 (outer eye corners) exactly ``size / 2`` apart."""
    pts = np.asarray(centre) + rng.uniform(-size / 2, size / 2, (68, 2))
    pts[36] = (centre[0] - size / 4, centre[1] - size / 8)
    pts[45] = (centre[0] + size / 4, centre[1] - size / 8)
    return pts


def moving_gt(rng: np.random.Generator, frames: int) -> np.ndarray:
    base = face68(rng)
    return np.stack([base + (0.5 * t, 0.2 * t) for t in range(frames)])


def test_nrmse_per_video_and_frame_pooled_conventions(rng):
    # Video a: 2 frames, error 1 px on every point; video b: 4 frames, error 3 px. IOD = 20 px.
    a, b = moving_gt(rng, 2), moving_gt(rng, 4)
    rec_a = score_video(a + (1.0, 0.0), a, name="a")
    rec_b = score_video(b + (0.0, 3.0), b, name="b")
    assert rec_a["nrmse"] == pytest.approx(5.0) and rec_b["nrmse"] == pytest.approx(15.0)
    col = summarise([rec_a, rec_b])
    assert col["nrmse_per_video_mean"] == pytest.approx((5.0 + 15.0) / 2)
    assert col["nrmse_frame_pooled"] == pytest.approx((2 * 5.0 + 4 * 15.0) / 6)
    assert col["frames"] == 6 and col["frames_lost"] == 0


def test_lost_frames_are_counted_and_do_not_create_jitter(rng):
    gt = moving_gt(rng, 12)
    pred = gt + (2.0, 0.0)  # constant offset: the same jitter as GT itself
    pred[5] = np.nan
    rec = score_video(pred, gt)
    assert rec["frames_lost"] == 1
    assert rec["nrmse"] == pytest.approx(10.0)
    assert rec["e3_jitter"] == pytest.approx(rec["gt_e3_jitter"], abs=1e-9)
    assert rec["nmj"] == pytest.approx(0.0, abs=1e-9)  # the residual never changes
    # A jump across the gap would have been counted if the gap were bridged.
    bridged = score_video(np.delete(pred, 5, axis=0), np.delete(gt, 5, axis=0))
    assert bridged["nrmse"] == pytest.approx(rec["nrmse"])


def test_jitter_on_a_constructed_track(rng):
    gt = np.repeat(face68(rng)[None], 9, axis=0)  # a still face: GT jitter 0
    pred = gt.copy()
    pred[1::2] += (0.0, 1.0)  # alternate +1 px in y: second difference 1 px on every point
    rec = score_video(pred, gt)
    width = np.ptp(gt[0], axis=0).max() / 100
    assert rec["gt_e3_jitter"] == pytest.approx(0.0)
    assert rec["e3_jitter"] == pytest.approx(1.0 / width)  # sqrt(sum over N of (1/w)^2 / N)


def test_auroc():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def write_pseudo_clip(folder, gt: np.ndarray, occluded: np.ndarray) -> None:
    from facetrack.io.pts import write_pts

    (folder / "annot").mkdir(parents=True)
    for t, pts in enumerate(gt):
        write_pts(folder / "annot" / f"{t + 1:06d}.pts", pts)
    (folder / "pseudo_video.json").write_text(json.dumps({"occluded": occluded.astype(int).tolist()}))


def csv_row(frame: int, track: int, pts: np.ndarray, conf: np.ndarray) -> str:
    box = [*pts.min(axis=0), *pts.max(axis=0)]
    cells = [str(frame), f"{frame / 30:.6f}", str(track)] + [f"{v:.2f}" for v in box] + ["0.9"]
    cells += [f"{v:.3f}" for v in pts.ravel()] + [f"{c:.4f}" for c in conf]
    return ",".join(cells)


def test_cli_on_a_pseudo_video_folder_and_handwritten_csv(tmp_path, rng, capsys):
    frames = 8
    gt = moving_gt(rng, frames)
    occluded = np.zeros((frames, 68), bool)
    occluded[2:5, :10] = True
    root = tmp_path / "gt"
    write_pseudo_clip(root / "clip_a", gt, occluded)
    truth = load_pseudo_truth(root)
    assert len(truth) == 1 and truth[0].name == "clip_a" and truth[0].occluded[3, 0]

    out_dir = tmp_path / "mine" / "clip_a"
    out_dir.mkdir(parents=True)
    lines = [",".join(landmarks_csv_header(68, pose=False))]  # a file written before the pose columns
    for t in range(frames):
        if t == 6:
            continue  # a lost frame
        conf = np.where(occluded[t], 0.2, 0.9)
        lines.append(csv_row(t, 1, gt[t] + (1.0, 0.0), conf))
        lines.append(csv_row(t, 2, gt[t] + (300.0, 300.0), np.full(68, 0.99)))  # another face, far away
    (out_dir / "landmarks.csv").write_text("\n".join(lines) + "\n")

    result_path = tmp_path / "res.json"
    rc = main(["evaluate", "--video", "--dataset", "pseudo", "--root", str(root), f"ours={tmp_path / 'mine'}",
               "--out", str(result_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ours" in printed and "pseudo N" in printed
    res = json.loads(result_path.read_text())
    col = res["methods"]["ours"]["columns"]["pseudo"]
    assert col["frames"] == frames and col["frames_lost"] == 1
    assert col["nrmse_per_video_mean"] == pytest.approx(5.0, abs=0.05)  # 1 px / 20 px (.pts: 3 decimals)
    assert col["auroc_visible"] == pytest.approx(1.0)
    assert res["settings"]["stability_headline"] == "e3_jitter"
    assert "per video" in res["settings"]["nrmse_headline"]


def test_missing_video_counts_all_frames_lost_and_merge(tmp_path, rng):
    gt = moving_gt(rng, 5)
    root = tmp_path / "gt"
    write_pseudo_clip(root / "c1", gt, np.zeros((5, 68), bool))
    write_pseudo_clip(root / "c2", gt, np.zeros((5, 68), bool))
    (tmp_path / "m" / "c1").mkdir(parents=True)
    from facetrack.io.pts import write_pts

    for t in range(5):  # .pts output in the 300VW layout for c1 only
        write_pts(tmp_path / "m" / "c1" / f"{t + 1:06d}.pts", gt[t])
    truth = {"pseudo": load_pseudo_truth(root)}
    result = evaluate_videos({"m": tmp_path / "m"}, truth, VideoSettings("pseudo", str(root)))
    col = result["methods"]["m"]["columns"]["pseudo"]
    assert col["missing_videos"] == ["c2"] and col["frames_lost"] == 5
    assert col["nrmse_per_video_mean"] == pytest.approx(0.0, abs=1e-3)
    other = json.loads(json.dumps(result))
    other["columns"] = ["TF"]
    other["methods"]["m"]["columns"] = {"TF": other["methods"]["m"]["columns"]["pseudo"]}
    table = format_video_table(merge_results([result, other]))
    assert "pseudo N" in table and "TF S" in table


def test_track_clip_applies_the_per_frame_calibration(tiny_aohr_config):
    import torch

    from facetrack.models.registry import build_model
    from facetrack.evaluation import track_clip

    model = build_model("aohr", **tiny_aohr_config)
    pts = torch.full((68, 2), 31.5)
    pts[:, 0] += torch.linspace(-10, 10, 68)  # a face-like spread, so the crop follows a real landmark box
    model.predict = lambda x: (pts.expand(x.shape[0], -1, -1).clone(), torch.ones(x.shape[0], 68))
    frames = [np.zeros((200, 200, 3), np.uint8)] * 3
    box = np.array([60.0, 60.0, 124.0, 124.0])  # crop side 80 image px for 64 crop px
    raw, _ = track_clip(model, frames, box)
    offsets = np.zeros((68, 2))
    offsets[:, 1] = 1.0
    model.card = {"calibration": {"offsets_px": {"plain": offsets.tolist()}}}
    calibrated, _ = track_clip(model, frames, box)
    np.testing.assert_allclose(raw[0] - calibrated[0], np.broadcast_to([0.0, 80 / 64], (68, 2)), atol=1e-6)
