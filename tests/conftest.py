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


@pytest.fixture(autouse=True, scope="session")
def private_model_cache(tmp_path_factory):
    """Exported ONNX graphs (facetrack.models.onnx_runtime) go to a temporary folder, not the user's cache."""
    os.environ["FACETRACK_CACHE"] = str(tmp_path_factory.mktemp("facetrack_cache"))


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


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: extra torch threads only add contention on a shared 2-core CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def overfit_losses():
    """``overfit_losses(model, images, targets, steps=12, lr=3e-3)`` -> the Adam losses of a tiny overfit."""
    import torch

    def run(model, images, targets, steps: int = 12, lr: float = 3e-3) -> list[float]:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            optimiser.zero_grad()
            loss = model.loss(model(images), targets)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return losses

    return run
