"""Train/validation splits that never put one subject (identity or source photograph) on both sides.

A random per-face split leaks: two faces of one photograph, or frames of one video, are near-duplicates, so
validation error would look better than it is. Splitting whole subjects avoids that.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _subject_key(item: Any, position: int) -> str:
    subject = getattr(item, "subject", None)
    if subject is None:
        raise TypeError(f"item {position} ({type(item).__name__}) has no 'subject' attribute")
    # An empty subject means "unknown": the item is its own group (it cannot leak into another group).
    return str(subject) if str(subject) != "" else f"\x00item-{position}"


def split_by_subject(
    samples: Sequence[T], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[T], list[T]]:
    """Split items with a ``subject`` attribute into (train, val) by whole subjects; deterministic per seed.

    Subjects are shuffled with ``seed`` and moved to validation until it holds at least ``val_fraction`` of
    the items (so it may exceed the fraction by at most one subject); training always keeps at least one
    subject. Items keep their input order within each part. Items with an empty subject count as their own.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = [_subject_key(item, i) for i, item in enumerate(samples)]
    sizes: dict[str, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    subjects = sorted(sizes)
    target = val_fraction * len(samples)
    if target > 0 and len(subjects) < 2:
        raise ValueError("a validation split needs at least two distinct subjects")
    order = np.random.default_rng(seed).permutation(len(subjects))
    val_subjects: set[str] = set()
    val_count = 0
    for index in order:
        if val_count >= target or len(val_subjects) == len(subjects) - 1:
            break
        subject = subjects[int(index)]
        val_subjects.add(subject)
        val_count += sizes[subject]
    train = [item for item, key in zip(samples, keys) if key not in val_subjects]
    val = [item for item, key in zip(samples, keys) if key in val_subjects]
    return train, val
