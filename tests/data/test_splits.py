from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from facetrack.data.sample import FaceSample
from facetrack.data.splits import split_by_subject


@dataclass(frozen=True)
class Item:
    index: int
    subject: str


def items_with_sizes(sizes: list[int]) -> list[Item]:
    out = []
    for s, size in enumerate(sizes):
        start = len(out)
        out.extend([Item(start + k, f"subj{s:03d}") for k in range(size)])
    rng = np.random.default_rng(1)
    return [out[i] for i in rng.permutation(len(out))]


def test_no_subject_on_both_sides_and_nothing_lost():
    items = items_with_sizes([1, 3, 2, 5, 1, 1, 4, 2, 2, 3] * 5)
    train, val = split_by_subject(items, val_fraction=0.2, seed=3)
    assert {i.subject for i in train}.isdisjoint({i.subject for i in val})
    assert sorted(i.index for i in train + val) == list(range(len(items)))
    # At least the fraction, and over it by less than one (largest) subject.
    assert 0.2 * len(items) <= len(val) < 0.2 * len(items) + 5


def test_deterministic_and_seed_dependent():
    items = items_with_sizes([2] * 40)
    a = split_by_subject(items, 0.25, seed=7)
    b = split_by_subject(list(items), 0.25, seed=7)
    assert a == b
    c = split_by_subject(items, 0.25, seed=8)
    assert {i.subject for i in c[1]} != {i.subject for i in a[1]}


def test_input_order_does_not_change_which_subjects_go_to_val():
    items = items_with_sizes([1, 2, 3] * 10)
    _, val_a = split_by_subject(items, 0.3, seed=0)
    _, val_b = split_by_subject(items[::-1], 0.3, seed=0)
    assert {i.subject for i in val_a} == {i.subject for i in val_b}


def test_order_within_parts_is_preserved():
    items = items_with_sizes([1] * 20)
    train, val = split_by_subject(items, 0.5, seed=0)
    position = {id(x): k for k, x in enumerate(items)}
    assert [position[id(x)] for x in train] == sorted(position[id(x)] for x in train)
    assert [position[id(x)] for x in val] == sorted(position[id(x)] for x in val)


def test_zero_fraction_and_edge_cases():
    items = items_with_sizes([1, 1, 1])
    train, val = split_by_subject(items, 0.0)
    assert val == [] and train == items
    train, val = split_by_subject(items, 0.9)
    assert len(train) >= 1 and len(val) == 2  # training keeps at least one subject
    with pytest.raises(ValueError):
        split_by_subject([Item(0, "a"), Item(1, "a")], 0.5)
    with pytest.raises(ValueError):
        split_by_subject(items, 1.0)
    with pytest.raises(TypeError, match="subject"):
        split_by_subject([object(), object()], 0.5)
    assert split_by_subject([], 0.1) == ([], [])


def test_empty_subjects_are_their_own_groups():
    items = [Item(i, "") for i in range(10)]
    train, val = split_by_subject(items, 0.3, seed=0)
    assert len(val) == 3 and len(train) == 7


def test_works_on_face_samples():
    samples = [
        FaceSample(image_path=f"img{i}.jpg", landmarks=np.zeros((68, 2)), scheme="ibug68", subject=f"p{i // 2}")
        for i in range(20)
    ]
    train, val = split_by_subject(samples, 0.2, seed=0)
    assert len(val) == 4 and {s.subject for s in train}.isdisjoint({s.subject for s in val})


def test_shared_300w_split_keeps_photographs_together(shared_data):
    from facetrack.data.w300 import load_300w

    root = shared_data / "300w"
    if not root.is_dir():
        pytest.skip("no 300w crops")
    samples = load_300w(root, "train")
    train, val = split_by_subject(samples, 0.1, seed=0)
    assert {s.subject for s in train}.isdisjoint({s.subject for s in val})
    assert len(train) + len(val) == len(samples)
    assert abs(len(val) - 0.1 * len(samples)) < 10
