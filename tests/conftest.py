"""Shared test fixtures. Tests that need ../shared/data use the ``shared_data`` fixture and skip without it."""
from __future__ import annotations

import os
from pathlib import Path

# One BLAS thread: on 2 shared cores OpenBLAS' own threads make small SVDs 100x slower (measured), and
# torch is given its threads explicitly where it matters.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$FACETRACK_SHARED_DATA`` or ``../shared/data`` next to the checkout, if it exists."""
    env = os.environ.get("FACETRACK_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is absent")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_aohr_config() -> dict:
    """A seconds-fast AOHR (64 px, L = 64, light backbone) for tests of geometry and plumbing, not accuracy."""
    return {"input_size": 64, "ratio": 1.0, "backbone": {"name": "lite"}, "head_channels": 16, "attn_dim": 8,
            "head_layers": 1, "head_separable": True, "head_compress": "full"}
