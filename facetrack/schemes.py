"""Landmark schemes as data: point count, mirror permutation, facial components, normalisers, drawing edges.

Every index table here is data copied from a documented source (cited next to it) or derived from another
table by code below, so that flipping, grouping and normalising never hard-code indices elsewhere.
"Left" and "right" are always the *subject's*: in iBUG-68, points 36-41 are the subject's right eye, which
appears on the image's left in a frontal photograph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Scheme:
    """One landmark definition; validated on construction so a typo in a table fails at import time."""

    name: str
    num_points: int
    flip_perm: tuple[int, ...]
    groups: dict[str, tuple[int, ...]]
    ocular: tuple[int, int] | None
    pupils: tuple[tuple[int, ...], tuple[int, ...]] | None
    edges: tuple[tuple[int, int], ...]
    # index sets whose centroids are the five reference points of face detectors (subject's right eye, left eye,
    # nose tip, right mouth corner, left mouth corner: RetinaFace's order): the face's roll comes from them
    five: tuple[tuple[int, ...], ...] | None = None

    def __hash__(self) -> int:  # groups is a dict, so the generated hash would fail; tables fix the rest
        return hash((self.name, self.num_points, self.flip_perm))

    def __post_init__(self) -> None:
        n = self.num_points
        perm = self.flip_perm
        if len(perm) != n or sorted(perm) != list(range(n)):
            raise ValueError(f"scheme {self.name}: flip_perm is not a permutation of range({n})")
        if any(perm[perm[i]] != i for i in range(n)):
            raise ValueError(f"scheme {self.name}: flip_perm is not an involution")
        used: list[int] = [i for members in self.groups.values() for i in members]
        used += [i for edge in self.edges for i in edge]
        used += list(self.ocular or ())
        used += [i for side in (self.pupils or ()) for i in side]
        used += [i for group in (self.five or ()) for i in group]
        if self.five is not None and len(self.five) != 5:
            raise ValueError(f"scheme {self.name}: five needs 5 index sets, got {len(self.five)}")
        bad = [i for i in used if not 0 <= i < n]
        if bad:
            raise ValueError(f"scheme {self.name}: indices {sorted(set(bad))} out of range({n})")


# A chain is a polyline of point indices; closed chains also join the last point to the first.
_Chain = tuple[tuple[int, ...], bool]


def _pairs_to_perm(num_points: int, pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Mirror permutation from swap pairs; unlisted points lie on the symmetry axis and map to themselves."""
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _edges_from_chains(chains: Sequence[_Chain]) -> tuple[tuple[int, int], ...]:
    edges: list[tuple[int, int]] = []
    for members, closed in chains:
        edges.extend(zip(members[:-1], members[1:]))
        if closed and len(members) > 2:
            edges.append((members[-1], members[0]))
    return tuple(edges)


def _r(a: int, b: int) -> tuple[int, ...]:
    """Inclusive index range, as the tables in papers and configs write them."""
    return tuple(range(a, b + 1))


# --- iBUG-68 (300W, 300VW, menpo). Flip pairs: STAR conf/alignment.py (data_definition "300W"). ---------
_IBUG68_PAIRS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (31, 35), (32, 34),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (61, 63), (60, 64), (67, 65), (58, 56), (59, 55),
)
_IBUG68_GROUPS = {
    "right_brow": _r(17, 21),
    "left_brow": _r(22, 26),
    "right_eye": _r(36, 41),
    "left_eye": _r(42, 47),
    "nose": _r(27, 35),
    "mouth": _r(48, 67),
    "contour": _r(0, 16),
}
_IBUG68_CHAINS: tuple[_Chain, ...] = (
    (_r(0, 16), False), (_r(17, 21), False), (_r(22, 26), False), (_r(27, 30), False),
    (_r(31, 35), False), (_r(36, 41), True), (_r(42, 47), True), (_r(48, 59), True), (_r(60, 67), True),
)

IBUG68 = Scheme(
    name="ibug68",
    num_points=68,
    flip_perm=_pairs_to_perm(68, _IBUG68_PAIRS),
    groups=dict(_IBUG68_GROUPS),
    ocular=(36, 45),
    pupils=(_r(36, 41), _r(42, 47)),
    edges=_edges_from_chains(_IBUG68_CHAINS),
    five=(_r(36, 41), _r(42, 47), (30,), (48,), (54,)),
)

# Subsets of iBUG-68 used by the 300VW and Talking Face protocols (EVALUATION.md sections 2 and 5).
INNER51_FROM_68: tuple[int, ...] = _r(17, 67)  # drops the jaw 0-16
INNER49_FROM_68: tuple[int, ...] = tuple(i for i in _r(17, 67) if i not in (60, 64))  # SBR convert68to49
# FHR rnn_set_68 (1-based 37,40,43,46,31,49,55): R-eye outer, R-eye inner, L-eye inner, L-eye outer,
# nose tip, R mouth corner, L mouth corner. For these 7 points the IOD is points 0 and 3.
COMMON7_FROM_68: tuple[int, ...] = (36, 39, 42, 45, 30, 48, 54)


def _subset_scheme(name: str, parent: Scheme, indices: Sequence[int], chains: Sequence[_Chain]) -> Scheme:
    """A scheme made of some of ``parent``'s points; tables are re-indexed rather than re-typed by hand."""
    pos = {old: new for new, old in enumerate(indices)}
    missing = [parent.flip_perm[i] for i in indices if parent.flip_perm[i] not in pos]
    if missing:
        raise ValueError(f"scheme {name}: subset lacks the mirror points {missing}")
    groups = {
        g: tuple(pos[i] for i in members if i in pos) for g, members in parent.groups.items()
    }
    groups = {g: members for g, members in groups.items() if members}
    ocular = None
    if parent.ocular is not None and all(i in pos for i in parent.ocular):
        ocular = (pos[parent.ocular[0]], pos[parent.ocular[1]])
    pupils = None
    if parent.pupils is not None and all(i in pos for side in parent.pupils for i in side):
        pupils = (tuple(pos[i] for i in parent.pupils[0]), tuple(pos[i] for i in parent.pupils[1]))
    sub_chains = [(tuple(pos[i] for i in members if i in pos), closed) for members, closed in chains]
    return Scheme(
        name=name,
        num_points=len(indices),
        flip_perm=tuple(pos[parent.flip_perm[i]] for i in indices),
        groups=groups,
        ocular=ocular,
        pupils=pupils,
        edges=_edges_from_chains([c for c in sub_chains if len(c[0]) > 1]),
    )


INNER51 = _subset_scheme("inner51", IBUG68, INNER51_FROM_68, _IBUG68_CHAINS)
INNER49 = _subset_scheme("inner49", IBUG68, INNER49_FROM_68, _IBUG68_CHAINS)
# common7 has no pupil definition: the corner midpoint is not the 68-point pupil (centroid of 6 eye points).
COMMON7 = _subset_scheme("common7", IBUG68, COMMON7_FROM_68, _IBUG68_CHAINS)

# --- WFLW-98. Flip pairs, groups and normalisers: STAR conf/alignment.py (data_definition "WFLW"). --------
_WFLW98_PAIRS = (
    (0, 32), (1, 31), (2, 30), (3, 29), (4, 28), (5, 27), (6, 26), (7, 25), (8, 24), (9, 23), (10, 22),
    (11, 21), (12, 20), (13, 19), (14, 18), (15, 17),
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),
    (55, 59), (56, 58),
    (76, 82), (77, 81), (78, 80), (87, 83), (86, 84),
    (88, 92), (89, 91), (95, 93), (96, 97),
)
WFLW98 = Scheme(
    name="wflw98",
    num_points=98,
    flip_perm=_pairs_to_perm(98, _WFLW98_PAIRS),
    groups={
        "right_brow": _r(33, 41),
        "left_brow": _r(42, 50),
        "right_eye": _r(60, 67) + (96,),
        "left_eye": _r(68, 75) + (97,),
        "nose": _r(51, 59),
        "mouth": _r(76, 95),
        "contour": _r(0, 32),
    },
    ocular=(60, 72),
    pupils=((96,), (97,)),
    edges=_edges_from_chains((
        (_r(0, 32), False), (_r(33, 41), True), (_r(42, 50), True), (_r(51, 54), False),
        (_r(55, 59), False), (_r(60, 67), True), (_r(68, 75), True), (_r(76, 87), True), (_r(88, 95), True),
    )),
)

# --- COFW-29. Flip pairs, outlines and normalisers: STAR conf/alignment.py (data_definition "COFW"). -----
# Brows 0-7 (corners 0/2 and 1/3, top 4/6, bottom 5/7), eyes 8-15 (corners 8/10 and 9/11, lids 12-15),
# pupils 16/17, nose 18-21, mouth 22-27 (corners 22/23), chin 28.
_COFW29_PAIRS = (
    (0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17), (13, 15), (18, 19), (22, 23),
)
COFW29 = Scheme(
    name="cofw29",
    num_points=29,
    flip_perm=_pairs_to_perm(29, _COFW29_PAIRS),
    groups={
        "right_brow": (0, 2, 4, 5),
        "left_brow": (1, 3, 6, 7),
        "right_eye": (8, 10, 12, 13, 16),
        "left_eye": (9, 11, 14, 15, 17),
        "nose": _r(18, 21),
        "mouth": _r(22, 27),
        "contour": (28,),
    },
    ocular=(8, 9),
    pupils=((16,), (17,)),
    edges=_edges_from_chains((
        ((0, 4, 2, 5), True), ((1, 6, 3, 7), True), ((8, 12, 10, 13), True), ((9, 14, 11, 15), True),
        ((18, 20, 19, 21), True), ((22, 24, 23, 25), True), ((22, 26, 23, 27), True),
    )),
)

# --- AFLW-19: AFLW's 21 points without the two ear lobes. Order: brows 0-5 (subject's right brow 0-2 =
# AFLW "LeftBrow*", named from the viewer), eyes 6-11 (corner, centre, corner), nose 12-14 (left, centre,
# right), mouth 15-17 (corner, centre, corner), chin 18. Pairs agree with mmpose's aflw dataset_info swaps.
# AFLW-19 is evaluated box-normalised, so the scheme offers no inter-ocular or pupil normaliser.
_AFLW19_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17))
AFLW19 = Scheme(
    name="aflw19",
    num_points=19,
    flip_perm=_pairs_to_perm(19, _AFLW19_PAIRS),
    groups={
        "right_brow": (0, 1, 2),
        "left_brow": (3, 4, 5),
        "right_eye": (6, 7, 8),
        "left_eye": (9, 10, 11),
        "nose": (12, 13, 14),
        "mouth": (15, 16, 17),
        "contour": (18,),
    },
    ocular=None,
    pupils=None,
    edges=_edges_from_chains((
        ((0, 1, 2), False), ((3, 4, 5), False), ((6, 7, 8), False), ((9, 10, 11), False),
        ((12, 13, 14), False), ((15, 16, 17), False),
    )),
)

# --- ideask21: the 21 points of ideask/Face-Alignment (../shared/data/README.md, "ideask21 points"). Brows
# 0-5 (subject's right brow outer/centre/inner, then the left brow inner/centre/outer), eye corners 6-9, nose
# wings and base 10-12, lips 13-15, pupils 16/17, nose tip 18, mouth corners 19/20. No chin or jaw point, so it
# is not the AFLW-21 order. Flip permutation: the source's Mirror21.txt.
IDEASK21 = Scheme(
    name="ideask21",
    num_points=21,
    flip_perm=(5, 4, 3, 2, 1, 0, 9, 8, 7, 6, 12, 11, 10, 13, 14, 15, 17, 16, 18, 20, 19),
    groups={
        "right_brow": (0, 1, 2),
        "left_brow": (3, 4, 5),
        "right_eye": (6, 7, 16),
        "left_eye": (8, 9, 17),
        "nose": (10, 11, 12, 18),
        "mouth": (13, 14, 15, 19, 20),
    },
    ocular=(6, 9),
    pupils=((16,), (17,)),
    edges=_edges_from_chains((
        ((0, 1, 2), False), ((3, 4, 5), False), ((6, 16, 7), False), ((8, 17, 9), False),
        ((10, 11, 12), False), ((10, 18, 12), False), ((19, 13, 20, 15), True), ((19, 14, 20), False),
    )),
    five=((16,), (17,), (18,), (19,), (20,)),  # eye centres, nose tip, mouth corners
)

# --- mtfl5: MTFL's five points in RetinaFace's order (subject's right eye centre, left eye centre, nose tip,
# right mouth corner, left mouth corner; MTFL names them from the viewer). The eye points are centres, not
# corners: the scheme has pupils (MTFL's inter-ocular distance) but no outer-corner normaliser.
MTFL5 = Scheme(
    name="mtfl5",
    num_points=5,
    flip_perm=(1, 0, 2, 4, 3),
    groups={"right_eye": (0,), "left_eye": (1,), "nose": (2,), "mouth": (3, 4)},
    ocular=None,
    pupils=((0,), (1,)),
    edges=((0, 1), (3, 4)),
    five=((0,), (1,), (2,), (3,), (4,)),  # RetinaFace's own five points, in its order
)

SCHEMES: dict[str, Scheme] = {
    s.name: s for s in (IBUG68, WFLW98, COFW29, AFLW19, INNER49, INNER51, COMMON7, IDEASK21, MTFL5)
}

# Where each point of a scheme sits in iBUG-68, as data (../shared/data/README.md tables, the datasets'
# ``scheme.json``): point i -> (the iBUG-68 indices whose mean it is, "exact" | "approximate"). "approximate":
# the two markups do not define the point the same way (a brow centre, a nose wing, a pupil as the centroid of
# six eye-contour points), so a 68-point model scored on it carries a systematic offset there.
IBUG68_CORRESPONDENCE: dict[str, tuple[tuple[tuple[int, ...], str], ...]] = {
    "ideask21": (
        ((17,), "exact"), ((19,), "approximate"), ((21,), "exact"), ((22,), "exact"), ((24,), "approximate"),
        ((26,), "exact"), ((36,), "exact"), ((39,), "exact"), ((42,), "exact"), ((45,), "exact"),
        ((31,), "approximate"), ((33,), "exact"), ((35,), "approximate"), ((51,), "exact"),
        ((62, 66), "approximate"), ((57,), "exact"), (_r(36, 41), "approximate"), (_r(42, 47), "approximate"),
        ((30,), "exact"), ((48,), "exact"), ((54,), "exact"),
    ),
    "mtfl5": (
        (_r(36, 41), "approximate"), (_r(42, 47), "approximate"), ((30,), "exact"), ((48,), "exact"),
        ((54,), "exact"),
    ),
    "common7": tuple(((i,), "exact") for i in COMMON7_FROM_68),
}

# WFLW-98 -> iBUG-68, the table circulated as DLIB_68_TO_WFLW_98_IDX_MAPPING (used e.g. by DSLPT's and
# several WFLW-to-68 conversion scripts). Contour: every second of WFLW's 33 jaw points (0, 2, ..., 32 ->
# 17 points). Brows: the five *upper* brow points of each brow (33-37, 42-46); the lower brow edge
# (38-41, 47-50) has no iBUG counterpart. Nose 51-59 -> 27-35 one to one. Eyes: corners plus the outer two
# of the three lid points per lid (60, 61, 63, 64, 65, 67 and 68, 69, 71, 72, 73, 75). Mouth 76-95 -> 48-67.
# The brows and eyelids are not the same anatomical points in the two markups, so a model trained on one and
# scored on the other carries a systematic offset there.
WFLW98_TO_IBUG68: tuple[int, ...] = (
    tuple(range(0, 33, 2))
    + _r(33, 37) + _r(42, 46)
    + _r(51, 59)
    + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75)
    + _r(76, 95)
)


def get_scheme(name: str) -> Scheme:
    """Look a scheme up by name; the error lists the known names so a typo in a config is easy to fix."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise KeyError(f"unknown landmark scheme {name!r}; known: {', '.join(sorted(SCHEMES))}") from None


def subset(points: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """Select landmarks ``indices`` from ``(..., N, 2)`` points, e.g. to score 68-point output on 49 points."""
    pts = np.asarray(points)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., N, 2), got {pts.shape}")
    idx = np.asarray(indices, dtype=np.intp)
    n = pts.shape[-2]
    if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
        raise ValueError(f"indices must be 1-D and within range({n})")
    return pts[..., idx, :]


def wflw98_to_ibug68(points: np.ndarray) -> np.ndarray:
    """Convert ``(..., 98, 2)`` WFLW landmarks to ``(..., 68, 2)`` iBUG order with ``WFLW98_TO_IBUG68``."""
    pts = np.asarray(points)
    if pts.ndim < 2 or pts.shape[-2:] != (98, 2):
        raise ValueError(f"expected WFLW points of shape (..., 98, 2), got {pts.shape}")
    return subset(pts, WFLW98_TO_IBUG68)


def ibug68_to(points: np.ndarray, scheme: str) -> np.ndarray:
    """Map ``(..., 68, 2)`` iBUG landmarks to ``scheme``'s points through ``IBUG68_CORRESPONDENCE`` (each
    point the mean of its iBUG indices), e.g. to score a 68-point model on ideask21 or mtfl5 faces."""
    if scheme == "ibug68":
        return np.asarray(points)
    if scheme not in IBUG68_CORRESPONDENCE:
        raise KeyError(f"no iBUG-68 correspondence for scheme {scheme!r}; known: "
                       f"{', '.join(sorted(IBUG68_CORRESPONDENCE))}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim < 2 or pts.shape[-2:] != (68, 2):
        raise ValueError(f"expected iBUG-68 points of shape (..., 68, 2), got {pts.shape}")
    return np.stack([pts[..., list(indices), :].mean(axis=-2) for indices, _ in IBUG68_CORRESPONDENCE[scheme]],
                    axis=-2)
