from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrack.cli import main
from facetrack.data.sample import FaceSample
from facetrack.errors import DataError
from facetrack.evaluation import default_settings, evaluate, load_ground_truth, match_faces, write_gt_boxes
from facetrack.io.pts import write_pts
from facetrack.io.results import FacePrediction, ImagePrediction, Prediction, write_predictions


def make_face(rng, cx: float, cy: float, iod: float) -> np.ndarray:
    pts = np.column_stack([rng.uniform(cx - iod, cx + iod, 68), rng.uniform(cy - iod, cy + iod, 68)])
    pts[36] = [cx - iod / 2, cy]
    pts[45] = [cx + iod / 2, cy]
    return pts


def as_pred(points: np.ndarray) -> FacePrediction:
    box = np.concatenate([points.min(0), points.max(0)])
    return FacePrediction(box, points, 0.9, np.ones(len(points)))


def sample(path: Path, points: np.ndarray) -> FaceSample:
    return FaceSample(path, points, "ibug68", bbox=np.concatenate([points.min(0), points.max(0)]))


def test_known_nme_with_path_variants_multi_face_and_misses(tmp_path, rng, monkeypatch):
    root = tmp_path / "data"
    a = [make_face(rng, 100, 100, 40), make_face(rng, 300, 100, 80)]  # two faces in one image
    b = make_face(rng, 100, 100, 50)
    c = make_face(rng, 100, 100, 50)
    gt = [sample(root / "x" / "a.jpg", a[0]), sample(root / "x" / "a.jpg", a[1]),
          sample(root / "y" / "b.jpg", b), sample(root / "z" / "c.jpg", c)]
    off = np.array([3.0, 4.0])  # 5 px everywhere
    pred = Prediction("m", "ibug68", [
        # faces listed in the other order, path relative to the working directory with ./
        ImagePrediction("./data/x/a.jpg", 500, 300, [as_pred(a[1] + 2 * off), as_pred(a[0] + off)]),
        ImagePrediction(str(root / "y" / "b.jpg"), 200, 200, []),  # absolute path, face not found
        # c.jpg absent; an extra image that is not in the ground truth
        ImagePrediction("extra.jpg", 10, 10, [as_pred(b)]),
    ])
    monkeypatch.chdir(tmp_path)
    settings = default_settings("300w", split="mine", threshold=0.2)
    result = evaluate(pred, {"mine": gt}, root, settings, pred_path=tmp_path / "p.json")
    faces = result["faces"]
    assert [f["matched"] for f in faces] == [True, True, False, False]
    assert faces[0]["nme"]["ocular"] == pytest.approx(5 / 40)
    assert faces[1]["nme"]["ocular"] == pytest.approx(10 / 80)
    summary = result["subsets"]["mine"]
    assert summary["faces"] == 4 and summary["misses"] == 2
    m = summary["nme"]["ocular"]
    assert m["nme"] == pytest.approx(0.125) and m["scored"] == 2
    assert m["auc_fr"]["fr"] == pytest.approx(0.5)  # the two misses fail
    assert m["components"]["contour"] == pytest.approx(0.125)
    reasons = {(x["path"], x["reason"]) for x in result["misses"]}
    assert reasons == {("y/b.jpg", "no predicted face matches"), ("z/c.jpg", "image not in predictions")}
    assert result["settings"]["threshold"] == 0.2 and result["settings"]["normalisers"] == {"ocular": "ocular"}
    json.dumps(result, allow_nan=True)  # serialisable


def test_suffix_matching_of_paths_from_another_machine(tmp_path, rng):
    root = tmp_path / "300W"
    p1, p2 = make_face(rng, 50, 50, 20), make_face(rng, 50, 50, 20)
    gt = [sample(root / "lfpw" / "testset" / "image_0001.png", p1), sample(root / "ibug" / "image_0001.png", p2)]
    pred = Prediction("m", "ibug68", [
        ImagePrediction("/elsewhere/300W/ibug/image_0001.png", 100, 100, [as_pred(p2)]),
        ImagePrediction("D:\\sets\\300W\\lfpw\\testset\\image_0001.png", 100, 100, [as_pred(p1 + [0.0, 2.0])]),
    ])
    result = evaluate(pred, {"full": gt}, root, default_settings("300w"))
    assert [f["nme"]["ocular"] for f in result["faces"]] == pytest.approx([0.1, 0.0])
    # a bare file name is ambiguous between the two folders: no guess, both are misses
    pred.images = [ImagePrediction("image_0001.png", 100, 100, [as_pred(p2)])]
    assert evaluate(pred, {"full": gt}, root, default_settings("300w"))["subsets"]["full"]["misses"] == 2


def test_match_faces_falls_back_to_landmark_centroid(rng):
    gt = make_face(rng, 100, 100, 40)
    far_box = FacePrediction([500, 500, 600, 600], gt + 1.0)  # box disagrees, landmarks agree
    assert match_faces([sample(Path("a.jpg"), gt)], ImagePrediction("a.jpg", 9, 9, [far_box])) == [0]
    elsewhere = FacePrediction([500, 500, 600, 600], gt + 200.0)
    assert match_faces([sample(Path("a.jpg"), gt)], ImagePrediction("a.jpg", 9, 9, [elsewhere])) == [None]


def test_scheme_mismatch_is_reported(tmp_path, rng):
    gt = [sample(tmp_path / "a.jpg", make_face(rng, 50, 50, 20))]
    pred = Prediction("m", "cofw29", [ImagePrediction("a.jpg", 9, 9, [])])
    with pytest.raises(DataError, match="scheme"):
        evaluate(pred, {"s": gt}, tmp_path, default_settings("300w"))


def write_300w(root: Path, rng) -> dict[str, np.ndarray]:
    faces = {}
    for folder, n in (("helen/testset", 2), ("lfpw/testset", 1), ("ibug", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            pts = make_face(rng, 64, 64, 30)
            cv2.imwrite(str(root / folder / f"im{i}.jpg"), np.zeros((128, 128, 3), np.uint8))
            write_pts(root / folder / f"im{i}.pts", pts)
            faces[f"{folder}/im{i}.jpg"] = pts
    return faces


def test_cli_on_300w_layout(tmp_path, rng, capsys):
    root = tmp_path / "300w"
    faces = write_300w(root, rng)
    images = []
    for rel, pts in faces.items():
        shift = 0.0 if rel.startswith("ibug") else 1.5  # common set 5% error, challenge perfect
        if rel != "ibug/im1.jpg":  # one challenge miss
            images.append(ImagePrediction(rel, 128, 128, [as_pred(pts + [shift, 0.0])]))
    pred_path = tmp_path / "pred.json"
    write_predictions(pred_path, Prediction("toy", "ibug68", images))
    out, ced, boxes = tmp_path / "res.json", tmp_path / "ced.png", tmp_path / "boxes.json"
    rc = main(["evaluate", str(pred_path), "--dataset", "300w", "--root", str(root), "--split", "full",
               "--out", str(out), "--ced", str(ced), "--boxes-out", str(boxes), "--preset", "star"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("common", "challenge", "full"):
        assert name in printed
    res = json.loads(out.read_text())
    assert list(res["subsets"]) == ["common", "challenge", "full"]
    assert res["subsets"]["common"]["nme"]["ocular"]["nme"] == pytest.approx(0.05, abs=2e-3)  # .pts has 3 decimals
    assert res["subsets"]["challenge"]["nme"]["ocular"]["nme"] == pytest.approx(0.0, abs=1e-4)
    assert res["subsets"]["challenge"]["misses"] == 1 and res["subsets"]["full"]["faces"] == 5
    assert res["subsets"]["full"]["nme"]["ocular"]["auc_fr"]["fr"] == pytest.approx(0.2)
    assert res["settings"]["preset"] == "star" and res["settings"]["threshold"] == 0.08
    assert res["subsets"]["full"]["nme"]["ocular"]["auc_fr"]["integrator"] == "simpson"
    assert ced.read_bytes()[:4] == b"\x89PNG"
    gt_boxes = json.loads(boxes.read_text())
    assert len(gt_boxes) == 5 and all(len(v) == 1 and len(v[0]) == 4 for v in gt_boxes.values())


def test_cli_bad_prediction_file_names_it(tmp_path, rng, capsys):
    root = tmp_path / "300w"
    write_300w(root, rng)
    bad = tmp_path / "pred.json"
    bad.write_text(json.dumps({"model": "m", "scheme": "ibug68", "images": [
        {"path": "ibug/im0.jpg", "width": 1, "height": 1, "faces": [{"bbox": [0, 0, 1, 1], "landmarks": [[0, 0]]}]}]}))
    assert main(["evaluate", str(bad), "--dataset", "300w", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "images[0].faces[0].landmarks: expected 68 points" in err


def test_write_gt_boxes(tmp_path, rng):
    pts = make_face(rng, 50, 50, 20)
    s1 = sample(tmp_path / "d" / "a.jpg", pts)
    s2 = FaceSample(tmp_path / "d" / "a.jpg", pts + 100, "ibug68")  # no box: landmark extent
    path = write_gt_boxes([s1, s2], tmp_path / "boxes.json", relative_to=tmp_path / "d")
    doc = json.loads(path.read_text())
    assert list(doc) == ["a.jpg"] and len(doc["a.jpg"]) == 2
    np.testing.assert_allclose(doc["a.jpg"][1], np.concatenate([(pts + 100).min(0), (pts + 100).max(0)]), atol=1e-3)


def test_wflw_subsets_come_from_attributes(tmp_path, rng):
    from facetrack.data.wflw import ATTRIBUTES as WFLW_SUBSETS
    from facetrack.evaluation import load_ground_truth

    lst = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lst.mkdir(parents=True)
    lines = []
    for i, flags in enumerate([(1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 1), (0, 0, 0, 0, 0, 0)]):
        pts = rng.uniform(10, 90, (98, 2))
        fields = [f"{v:.3f}" for v in pts.ravel()] + ["5", "5", "95", "95"] + [str(f) for f in flags]
        lines.append(" ".join(fields + [f"0--Parade/img{i}.jpg"]))
    (lst / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    subsets = load_ground_truth("wflw", tmp_path, "test")
    assert list(subsets) == ["full", *WFLW_SUBSETS]
    assert [len(subsets[k]) for k in subsets] == [3, 1, 0, 0, 0, 1, 1]


def test_ground_truth_as_prediction_scores_zero_on_shared_300w(shared_data):
    from facetrack.evaluation import load_ground_truth

    root = shared_data / "300w"
    samples = load_ground_truth("shared300w", root, "all")["all"][:150]
    pred = Prediction("gt", "ibug68", [
        ImagePrediction(str(s.image_path), 384, 384, [as_pred(s.landmarks)]) for s in samples
    ])
    result = evaluate(pred, {"train": samples}, root, default_settings("shared300w"))
    entry = result["subsets"]["train"]
    assert entry["faces"] == 150 and entry["misses"] == 0
    assert entry["nme"]["ocular"]["nme"] == 0.0 and entry["nme"]["ocular"]["auc_fr"]["auc"] == pytest.approx(1.0)


def test_virtual_image_names_match_exported_files_by_stem(tmp_path, rng):
    mat = tmp_path / "COFW_test_color.mat"
    p1, p2 = make_face(rng, 50, 50, 20), make_face(rng, 50, 50, 20)
    gt = [sample(mat / "0001", p1), sample(mat / "0002", p2)]
    pred = Prediction("m", "ibug68", [
        ImagePrediction("export/0002.png", 100, 100, [as_pred(p2 + [2.0, 0.0])]),
        ImagePrediction("export/0001.png", 100, 100, [as_pred(p1)]),
    ])
    result = evaluate(pred, {"test": gt}, mat, default_settings("cofw", norm="ocular"))
    assert [f["nme"]["ocular"] for f in result["faces"]] == pytest.approx([0.0, 0.1])


def test_shared300w_val_split_is_held_out_by_subject(shared_data):
    root = shared_data / "300w"
    val = load_ground_truth("shared300w", root)["val"]
    train = load_ground_truth("shared300w", root, "train")["train"]
    assert len(val) + len(train) == len(load_ground_truth("shared300w", root, "all")["all"])
    assert not {s.subject for s in val} & {s.subject for s in train}
    assert 0.08 < len(val) / (len(val) + len(train)) < 0.13


@pytest.mark.parametrize("scheme", ["ideask21", "mtfl5"])
def test_68_point_predictions_score_on_other_schemes_through_the_correspondence(tmp_path, rng, scheme):
    from facetrack.schemes import ibug68_to

    root = tmp_path / "data"
    points = make_face(rng, 100, 100, 40)
    gt_points = ibug68_to(points, scheme)
    gt = [FaceSample(root / "a.jpg", gt_points, scheme, bbox=np.concatenate([points.min(0), points.max(0)]))]
    pred = Prediction("m", "ibug68", [ImagePrediction(str(root / "a.jpg"), 200, 200, [as_pred(points + [3.0, 4.0])])])
    result = evaluate(pred, {"test": gt}, root, default_settings(scheme), pred_path=tmp_path / "p.json")
    assert result["ground_truth_scheme"] == scheme
    norm = default_settings(scheme).norms[0]
    a, b = (6, 9) if scheme == "ideask21" else (0, 1)  # outer eye corners / eye centres
    iod = np.linalg.norm(gt_points[a] - gt_points[b])
    assert result["subsets"]["test"]["nme"][norm]["nme"] == pytest.approx(5 / iod)
