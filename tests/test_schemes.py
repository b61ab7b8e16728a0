from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from facetrack.io.pts import read_pts
from facetrack.schemes import (
    COMMON7_FROM_68,
    INNER49_FROM_68,
    INNER51_FROM_68,
    SCHEMES,
    WFLW98_TO_IBUG68,
    Scheme,
    get_scheme,
    subset,
    wflw98_to_ibug68,
)

ALL = sorted(SCHEMES)


def symmetric_shape(scheme: Scheme, rng: np.random.Generator) -> np.ndarray:
    """A face mirror-symmetric about x=0 by construction: the subject's right side at x<0 (image left)."""
    side = {}
    for group, members in scheme.groups.items():
        for i in members:
            side[i] = -1.0 if group.startswith("right_") else 1.0 if group.startswith("left_") else 0.0
    pts = np.zeros((scheme.num_points, 2))
    for i in range(scheme.num_points):
        j = scheme.flip_perm[i]
        if j < i:
            continue
        y = rng.uniform(-1.0, 1.0)
        if j == i:
            pts[i] = (0.0, y)
            continue
        x = rng.uniform(0.1, 1.0) * (side[i] if side[i] != 0 else rng.choice([-1.0, 1.0]))
        pts[i], pts[j] = (x, y), (-x, y)
    return pts


def mirror(points: np.ndarray, scheme: Scheme, width: float = 0.0) -> np.ndarray:
    """Horizontal flip about x = width/2 (width 0: about x=0), with the point order permuted."""
    flipped = points.copy()
    flipped[..., 0] = width - flipped[..., 0]
    return flipped[..., list(scheme.flip_perm), :]


@pytest.mark.parametrize("name", ALL)
def test_flip_perm_is_involution_and_groups_partition_points(name):
    s = get_scheme(name)
    perm = np.array(s.flip_perm)
    assert sorted(perm) == list(range(s.num_points))
    assert np.array_equal(perm[perm], np.arange(s.num_points))
    members = [i for g in s.groups.values() for i in g]
    assert sorted(members) == list(range(s.num_points)), "groups must cover every point exactly once"
    for a, b in s.edges:
        assert 0 <= a < s.num_points and 0 <= b < s.num_points and a != b
    for pair in [s.ocular] + list(s.pupils or ()):
        if pair is not None:
            assert all(0 <= i < s.num_points for i in pair)


@pytest.mark.parametrize("name", ALL)
def test_flip_of_symmetric_face_is_identity(name, rng):
    s = get_scheme(name)
    shape = symmetric_shape(s, rng)
    np.testing.assert_allclose(mirror(shape, s), shape)
    asym = rng.normal(size=(3, s.num_points, 2))
    np.testing.assert_allclose(mirror(mirror(asym, s), s), asym)
    assert not np.allclose(mirror(asym, s), asym)


@pytest.mark.parametrize("name", ALL)
def test_flip_maps_left_groups_to_right_groups(name):
    s = get_scheme(name)
    for group, members in s.groups.items():
        image = {s.flip_perm[i] for i in members}
        if group.startswith("left_"):
            assert image == set(s.groups["right_" + group[len("left_"):]])
        elif group.startswith("right_"):
            assert image == set(s.groups["left_" + group[len("right_"):]])
        else:
            assert image == set(members)
    if s.ocular is not None:
        a, b = s.ocular
        assert s.flip_perm[a] == b
    if s.pupils is not None:
        assert {s.flip_perm[i] for i in s.pupils[0]} == set(s.pupils[1])


def test_ibug68_definition():
    s = get_scheme("ibug68")
    assert list(s.groups) == ["right_brow", "left_brow", "right_eye", "left_eye", "nose", "mouth", "contour"]
    assert s.groups["right_eye"] == tuple(range(36, 42))
    assert s.groups["right_brow"] == tuple(range(17, 22))
    assert s.ocular == (36, 45)
    assert s.flip_perm[8] == 8 and s.flip_perm[30] == 30 and s.flip_perm[62] == 62
    assert s.flip_perm[60] == 64 and s.flip_perm[48] == 54 and s.flip_perm[0] == 16


def test_subset_schemes_match_68_indices():
    assert len(INNER51_FROM_68) == 51 and 0 not in INNER51_FROM_68 and 16 not in INNER51_FROM_68
    assert len(INNER49_FROM_68) == 49 and 60 not in INNER49_FROM_68 and 64 not in INNER49_FROM_68
    # EVALUATION.md: the 49/51-point IOD uses indices 19 and 28.
    assert get_scheme("inner49").ocular == (19, 28) and get_scheme("inner51").ocular == (19, 28)
    c7 = get_scheme("common7")
    assert COMMON7_FROM_68 == (36, 39, 42, 45, 30, 48, 54)
    assert c7.ocular == (0, 3) and c7.pupils is None
    assert c7.flip_perm == (3, 2, 1, 0, 4, 6, 5)
    ibug = get_scheme("ibug68")
    for name, table in (("inner49", INNER49_FROM_68), ("inner51", INNER51_FROM_68), ("common7", COMMON7_FROM_68)):
        s = get_scheme(name)
        for k, old in enumerate(table):  # the subset's mirror is the mirror of the original point
            assert table[s.flip_perm[k]] == ibug.flip_perm[old]


def test_other_schemes_normalisers():
    assert get_scheme("wflw98").ocular == (60, 72) and get_scheme("wflw98").pupils == ((96,), (97,))
    assert get_scheme("cofw29").ocular == (8, 9) and get_scheme("cofw29").pupils == ((16,), (17,))
    assert get_scheme("aflw19").ocular is None and get_scheme("aflw19").pupils is None
    assert get_scheme("aflw19").flip_perm[18] == 18 and get_scheme("aflw19").flip_perm[0] == 5


def test_schemes_are_hashable_and_compare_by_value():
    assert len({get_scheme("ibug68"), get_scheme("ibug68"), get_scheme("wflw98")}) == 2
    assert get_scheme("ibug68") != get_scheme("inner51")


def test_get_scheme_unknown_lists_names():
    with pytest.raises(KeyError, match="ibug68"):
        get_scheme("ibug-68")


def test_scheme_validation_rejects_bad_tables():
    with pytest.raises(ValueError, match="involution"):
        Scheme("bad", 3, (1, 2, 0), {"a": (0, 1, 2)}, None, None, ())
    with pytest.raises(ValueError, match="out of range"):
        Scheme("bad", 2, (1, 0), {"a": (0, 1, 2)}, None, None, ())


def test_subset_selects_and_validates(rng):
    pts = rng.normal(size=(4, 68, 2))
    out = subset(pts, COMMON7_FROM_68)
    assert out.shape == (4, 7, 2)
    np.testing.assert_array_equal(out[:, 4], pts[:, 30])
    with pytest.raises(ValueError):
        subset(pts, [68])
    with pytest.raises(ValueError):
        subset(pts[..., 0], [0])


def test_wflw98_to_ibug68_on_known_shape():
    wflw = np.stack([np.arange(98.0), 1000.0 + np.arange(98.0)], axis=1)  # point k sits at (k, 1000 + k)
    out = wflw98_to_ibug68(wflw)
    assert out.shape == (68, 2)
    expected = {0: 0, 8: 16, 16: 32, 17: 33, 21: 37, 22: 42, 26: 46, 27: 51, 30: 54, 35: 59,
                36: 60, 37: 61, 38: 63, 39: 64, 40: 65, 41: 67, 42: 68, 45: 72, 47: 75, 48: 76, 67: 95}
    for i68, i98 in expected.items():
        np.testing.assert_array_equal(out[i68], [i98, 1000 + i98])
    assert len(set(WFLW98_TO_IBUG68)) == 68
    batch = np.broadcast_to(wflw, (2, 3, 98, 2))
    assert wflw98_to_ibug68(batch).shape == (2, 3, 68, 2)
    with pytest.raises(ValueError):
        wflw98_to_ibug68(wflw[:68])


def test_wflw98_to_ibug68_commutes_with_flip(rng):
    """Three independent tables (98 flips, 68 flips, 98->68) must agree: convert(flip) == flip(convert)."""
    w, i = get_scheme("wflw98"), get_scheme("ibug68")
    pts = rng.normal(size=(98, 2))
    np.testing.assert_allclose(wflw98_to_ibug68(mirror(pts, w)), mirror(wflw98_to_ibug68(pts), i))
    for group, members in i.groups.items():
        assert {WFLW98_TO_IBUG68[k] for k in members} <= set(w.groups[group])


@lru_cache(maxsize=1)
def _read_all_300w_pts(root: Path) -> np.ndarray | None:
    files = sorted((root / "300w").rglob("*.pts"))
    return np.stack([read_pts(f, num_points=68) for f in files]) if files else None


def _all_300w_pts(root: Path) -> np.ndarray:
    faces = _read_all_300w_pts(root)
    if faces is None:
        pytest.skip("no 300w .pts files")
    return faces.copy()


def test_real_faces_mirror_puts_components_on_the_correct_side(shared_data):
    faces = _all_300w_pts(shared_data)
    s = get_scheme("ibug68")

    def correct_side(p: np.ndarray) -> np.ndarray:
        cx = {g: p[:, list(s.groups[g]), 0].mean(axis=1) for g in s.groups}
        return (cx["right_eye"] < cx["left_eye"]) & (cx["right_brow"] < cx["left_brow"])

    assert correct_side(faces).mean() > 0.99  # subject's right appears on the image's left
    mirrored = mirror(faces, s, width=383.0)
    assert correct_side(mirrored).mean() > 0.99
    unpermuted = faces.copy()
    unpermuted[..., 0] = 383.0 - unpermuted[..., 0]
    assert correct_side(unpermuted).mean() < 0.01  # without the permutation the sides are swapped


def _normalised(face: np.ndarray) -> np.ndarray:
    """Similarity-normalise on the outer eye corners: centre between them, IOD 1, eyes horizontal."""
    left, right = face[36], face[45]
    d = right - left
    a = -np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (face - (left + right) / 2) @ rot.T / np.linalg.norm(d)


@pytest.mark.parametrize("name", ["ibug68", "inner49", "inner51", "common7"])
def test_real_mean_shape_is_symmetric_under_flip_perm(shared_data, name):
    """The 300-W mean face is nearly symmetric, so a wrong pair (e.g. 61<->65) would move points ~0.06 IOD."""
    faces = _all_300w_pts(shared_data)
    mean68 = np.mean([_normalised(f) for f in faces], axis=0)
    table = {"ibug68": tuple(range(68)), "inner49": INNER49_FROM_68,
             "inner51": INNER51_FROM_68, "common7": COMMON7_FROM_68}[name]
    mean = subset(mean68, table)
    err = np.linalg.norm(mirror(mean, get_scheme(name)) - mean, axis=1)
    assert err.max() < 0.03
