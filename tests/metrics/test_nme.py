from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from facetrack.metrics.nme import NMEMetric, component_nme, nme, normaliser, normaliser_label

# A 6-point toy scheme: eyes at 0..3 (outer corners 0 and 3, pupils = centroids of {0,1} and {2,3}), mouth 4,5.
TOY = SimpleNamespace(
    name="toy6",
    num_points=6,
    ocular=(0, 3),
    pupils=((0, 1), (2, 3)),
    groups={"eyes": (0, 1, 2, 3), "mouth": (4, 5)},
)
GT = np.array([[0.0, 0.0], [10.0, 0.0], [30.0, 0.0], [40.0, 0.0], [10.0, 30.0], [30.0, 30.0]])


def test_ocular_and_pupil_normalisers():
    assert normaliser(GT, TOY, "ocular")[0] == pytest.approx(40.0)
    assert normaliser(GT, TOY, "pupil")[0] == pytest.approx(30.0)  # (5, 0) to (35, 0)


def test_box_normalisers_use_given_box_or_landmark_extent():
    box = np.array([[0.0, 0.0, 40.0, 90.0]])
    assert normaliser(GT, TOY, "bbox", box)[0] == pytest.approx(60.0)
    assert normaliser(GT, TOY, "diagonal", box)[0] == pytest.approx(np.hypot(40, 90))
    assert normaliser(GT, TOY, "max_side", box)[0] == pytest.approx(90.0)
    assert normaliser(GT, TOY, "height", box)[0] == pytest.approx(90.0)
    # without a box: the landmark extent 40 x 30
    assert normaliser(GT, TOY, "bbox")[0] == pytest.approx(np.sqrt(1200.0))
    assert normaliser(GT, TOY, "max_side")[0] == pytest.approx(40.0)
    assert normaliser_label("bbox", boxes_given=False) == "bbox:landmark_extent"
    assert normaliser_label("bbox", boxes_given=True) == "bbox:annotated_box"
    with pytest.raises(ValueError, match="unknown normaliser"):
        normaliser(GT, TOY, "iod")


def test_nme_known_value_and_visibility():
    pred = GT.copy()
    pred[4] += [3.0, 4.0]  # 5 px off on one point
    d = normaliser(GT, TOY, "ocular")
    assert nme(pred, GT, d)[0] == pytest.approx(5.0 / 6 / 40)
    vis = np.array([True, True, True, True, True, False])
    assert nme(pred, GT, d, vis)[0] == pytest.approx(5.0 / 5 / 40)
    hidden = np.array([True, True, True, True, False, True])
    assert nme(pred, GT, d, hidden)[0] == 0.0  # the wrong point is not counted


def test_nme_batch_and_non_finite_prediction_is_inf():
    gt = np.stack([GT, GT * 2])
    pred = gt + [1.0, 0.0]
    pred[1, 2] = np.nan
    err = nme(pred, gt, normaliser(gt, TOY))
    assert err[0] == pytest.approx(1 / 40)
    assert np.isinf(err[1])


def test_nme_rejects_degenerate_normaliser():
    with pytest.raises(ValueError, match="positive"):
        nme(GT, GT, 0.0)


def test_component_nme():
    pred = GT.copy()
    pred[4:] += [0.0, 8.0]
    comp = component_nme(pred, GT, 40.0, TOY)
    assert list(comp) == ["eyes", "mouth"]
    assert comp["eyes"][0] == 0.0
    assert comp["mouth"][0] == pytest.approx(8 / 40)


def test_metric_accumulates_with_dataset_defaults_and_misses():
    metric = NMEMetric(TOY, norms=("ocular", "pupil"))
    metric.update(GT + [4.0, 0.0], GT)
    metric.update(None, GT)  # a miss
    out = metric.compute()
    assert out["ocular"]["nme"] == pytest.approx(0.1)
    assert out["pupil"]["nme"] == pytest.approx(4 / 30)
    assert out["ocular"]["count"] == 2 and out["ocular"]["missing"] == 1
    assert np.isinf(metric.errors("ocular")[1])
    assert out["ocular"]["components"]["mouth"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no default normaliser"):
        NMEMetric(TOY, dataset="nowhere")


def test_real_schemes_have_the_documented_normalising_indices():
    from facetrack.schemes import get_scheme

    assert get_scheme("ibug68").ocular == (36, 45)
    assert get_scheme("wflw98").ocular == (60, 72)
    assert get_scheme("cofw29").ocular == (8, 9)
    assert get_scheme("common7").ocular == (0, 3)
    for name in ("inner49", "inner51"):
        assert get_scheme(name).ocular == (19, 28)
    # 68-point pupils are the centroids of the eye contours
    pts = np.zeros((68, 2))
    pts[36:42] = [10.0, 5.0]
    pts[42:48] = [50.0, 5.0]
    assert normaliser(pts, "ibug68", "pupil")[0] == pytest.approx(40.0)
    assert NMEMetric("cofw29", dataset="cofw").norms == ("pupil", "ocular")
