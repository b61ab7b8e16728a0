"""``facetrack track --ray``: a corpus of videos on a Ray cluster (local, or ``ray.init(address=...)``).

One Ray task per video; each task runs the single-process path (``facetrack.tracking.session.track_to_folder``)
into the same folder ``facetrack track`` would use, so the outputs, the skip/resume/refuse rules of
``facetrack.io.track_output.plan`` and the summaries are the same with or without Ray. A worker process builds
its ``Tracker`` once (a per-process cache keyed by the options) and keeps it for every later video it runs:
one model load per worker, not per video. A failed video is submitted once more; what still fails is listed
with its reasons in ``DIR/manifest.json`` beside the successes, and the exit code is 1.

On several machines every node needs facetrack (same version) and must see the sources and ``DIR`` at the
same paths (a shared file system): README, "Many videos on a Ray cluster".
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facetrack.errors import FacetrackError

INSTALL_HINT = "facetrack track --ray needs Ray, which is not installed: pip install 'facetrack[ray]'"
MANIFEST = "manifest.json"
MANIFEST_EVERY_S = 5.0  # rewrite the manifest at most this often while videos finish (and at the end)

_TRACKERS: dict[str, Any] = {}  # this process's trackers, by options (one model load per worker)
_LOADS = {"count": 0, "seconds": 0.0}


def require_ray() -> Any:
    """The ``ray`` module, or a FacetrackError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FacetrackError(INSTALL_HINT) from None
    return ray


def worker_name() -> str:
    """``host:pid`` of this process (the manifest says which worker ran each video)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def cached_tracker(options: dict[str, Any], threads: int = 1) -> Any:
    """This process's ``facetrack.Tracker`` for ``options`` (its keywords), built on first use and then kept."""
    key = json.dumps(options, sort_keys=True, default=str)
    tracker = _TRACKERS.get(key)
    if tracker is None:
        import torch

        from facetrack.api import Tracker

        torch.set_num_threads(max(1, int(threads)))  # onnxruntime sessions follow torch's thread count
        started = time.perf_counter()
        tracker = Tracker(**options)
        _TRACKERS[key] = tracker
        _LOADS["count"] += 1
        _LOADS["seconds"] += time.perf_counter() - started
    return tracker


def track_video(source: str, folder: str, options: dict[str, Any], formats: Sequence[str], render: bool = False,
                force: bool = False, threads: int = 1) -> dict[str, Any]:
    """Track one video into ``folder`` in this process (the body of each Ray task) and say how it went.

    Returns ``status`` ("tracked", "skipped" or "failed"), ``reason`` (why it failed, or why a tracked video
    stopped early), ``retry`` (False when another attempt cannot help: a folder made by another run), the
    summary's counts and timings, the worker and how many trackers that worker has built so far."""
    from facetrack.io.track_output import plan
    from facetrack.tracking.session import provenance, track_to_folder

    out: dict[str, Any] = {"source": source, "folder": folder, "worker": worker_name()}
    started = time.perf_counter()
    try:
        tracker = cached_tracker(options, threads)
        record = provenance(tracker, source, formats, render)
        todo = plan(folder, record, force=force, resumable=not render)
        if todo.action == "skip":
            out.update(status="skipped", reason=None, note=todo.message)
        elif todo.action == "refuse":
            out.update(status="failed", reason=f"refused: {todo.message}", retry=False)
        else:
            summary = track_to_folder(tracker, source, folder, formats, render=render, progress=False,
                                      resume=todo.action == "resume", record=record)
            out.update(status="tracked", reason=summary.get("reason"), resumed_from=summary.get("resumed_from"),
                       **{k: summary.get(k) for k in ("frames_read", "frames_with_face", "tracks", "fps")})
    except Exception as exc:  # one bad video is a record, not a crashed worker
        text = str(exc) if isinstance(exc, FacetrackError) else f"{type(exc).__name__}: {exc}"
        out.update(status="failed", reason=text)
    out["task_s"] = time.perf_counter() - started
    out["worker_loads"], out["worker_load_s"] = _LOADS["count"], round(_LOADS["seconds"], 3)
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cluster(ray: Any) -> dict[str, Any]:
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = ray.cluster_resources().get("CPU")
    except Exception:  # the manifest must not fail over a description
        nodes, cpus = [], None
    return {"nodes": len(nodes), "cpus": cpus}


def track_on_ray(sources: Sequence[str], folders: Sequence[Path], options: dict[str, Any], formats: Sequence[str],
                 out: Path, render: bool = False, force: bool = False, address: str | None = None,
                 progress: bool = True, retries: int = 1, task_cpus: int = 1) -> dict[str, Any]:
    """Track ``sources`` into ``folders`` with one Ray task per video; write and return ``out/manifest.json``.

    ``address``: passed to ``ray.init`` (None: Ray's default, i.e. ``RAY_ADDRESS`` or a new local instance;
    "auto": the cluster this machine belongs to; "ray://head:10001": a remote one). A Ray instance already
    initialised by the caller is used as it is. ``retries``: further attempts of a failed video (default 1).
    """
    ray = require_ray()
    if len(sources) != len(folders):
        raise ValueError("one output folder per source")
    started_here = not ray.is_initialized()
    if started_here:
        # Ray starts workers at niceness 15: on a busy machine they then wait behind everything else (measured
        # here: 30x slower model loads). Tracking is the job these workers are for; RAY_worker_niceness overrides.
        os.environ.setdefault("RAY_worker_niceness", "0")
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
        except Exception as exc:
            raise FacetrackError(f"cannot start or reach the Ray cluster ({address or 'local'}): {exc}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "kind": "facetrack track --ray", "started": _now(), "finished": None, "completed": False,
        "ray": {"address": address or "default", **_cluster(ray)},
        "options": options, "formats": list(formats), "render": bool(render), "videos": len(sources),
    }
    remote = ray.remote(num_cpus=task_cpus, max_retries=0)(track_video)
    results: list[dict[str, Any] | None] = [None] * len(sources)
    errors: list[list[str]] = [[] for _ in sources]
    pending: dict[Any, tuple[int, int]] = {}

    def submit(i: int, attempt: int) -> None:
        ref = remote.remote(str(sources[i]), str(folders[i]), options, list(formats), render, force, task_cpus)
        pending[ref] = (i, attempt)

    from tqdm import tqdm

    clock = time.perf_counter()
    last_write = clock
    bar = tqdm(total=len(sources), unit="video", disable=not progress, dynamic_ncols=True, desc="videos")
    try:
        for i in range(len(sources)):
            submit(i, 1)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, attempt = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died (a crashing decoder, out of memory, a lost node)
                    result = {"source": str(sources[i]), "folder": str(folders[i]), "status": "failed",
                              "reason": f"Ray task failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
                result["attempts"] = attempt
                if result["status"] == "failed":
                    errors[i].append(str(result["reason"]))
                    if result.get("retry", True) and attempt <= retries:
                        submit(i, attempt + 1)
                        continue
                    result["errors"] = errors[i]
                results[i] = result
                bar.update(1)
                if result["status"] == "failed":
                    bar.write(f"FAILED {sources[i]}: {result['reason']}", file=sys.stderr)
            if time.perf_counter() - last_write >= MANIFEST_EVERY_S:
                _write(out, _finish(manifest, results, clock, done=False))
                last_write = time.perf_counter()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        _write(out, _finish(manifest, results, clock, done=False, note="interrupted (Ctrl-C)"))
        raise
    finally:
        bar.close()
        if started_here:
            ray.shutdown()
    manifest = _finish(manifest, results, clock, done=True)
    _write(out, manifest)
    return manifest


def _finish(manifest: dict[str, Any], results: list[dict[str, Any] | None], clock: float, done: bool,
            note: str | None = None) -> dict[str, Any]:
    """The manifest with the results so far: successes, failures (with every attempt's reason), counts, rates."""
    finished = [r for r in results if r is not None]
    ok = [r for r in finished if r["status"] != "failed"]
    wall = time.perf_counter() - clock
    tracked = [r for r in ok if r["status"] == "tracked"]
    frames = sum(int(r.get("frames_read") or 0) for r in tracked)
    workers: dict[str, int] = {}
    for r in finished:
        if "worker" in r:
            workers[r["worker"]] = max(workers.get(r["worker"], 0), int(r.get("worker_loads") or 0))
    return {**manifest, "finished": _now() if done else None, "completed": done, "note": note, "wall_s": wall,
            "counts": {"tracked": len(tracked), "skipped": len(ok) - len(tracked),
                       "failed": len(finished) - len(ok), "not_finished": len(results) - len(finished)},
            "frames_tracked": frames,
            "videos_per_s": len(tracked) / wall if wall > 0 else None,
            "frames_per_s": frames / wall if wall > 0 else None,
            "model_loads_per_worker": workers,
            "succeeded": ok, "failed": [r for r in finished if r["status"] == "failed"]}


def _write(out: Path, manifest: dict[str, Any]) -> Path:
    from facetrack.io.results import write_json

    return write_json(out / MANIFEST, manifest)
