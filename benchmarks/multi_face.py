"""Tracking several faces that touch, overlap, cross and enter: held-out multi-face clips with exact truth.

    python benchmarks/multi_face.py --model 1dformer-68 --out benchmarks/results/multi_face.md

Clips are composed from held-out 300-W faces (``shared300w --split val``; source photographs no shipped recipe
trains on) by ``facetrack.data.multiface`` (``--clips`` per scenario, each with other faces and another seed), and
tracked by ``facetrack.Tracker`` (every face, default detector, validator and output filter) as ``facetrack track``
does. Per frame, tracks are matched one-to-one to the truth's faces by least NME (Hungarian; a pair counts when its
NME is under 100 %). A face-frame is scored when at least half of the face's landmarks are visible (a face hidden
behind another may be lost without penalty). Reported per clip and over all: NME (inter-ocular, %, over matched
scored face-frames), failure rate (matched with NME > 10 %), lost (scored face-frames no track matched), identity
switches (a face matched to another track id than the last one it had), extra tracks (track-frames matched to no
face), and the frame rate end to end (decode excluded: frames are rendered beforehand).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from report_files import write_report

FAIL = 0.10


def held_out_faces(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    from facetrack.evaluation import load_shared300w

    return [(s.load_image(), s.landmarks) for s in load_shared300w(root, "val")]


def make_clips(faces: list[tuple[np.ndarray, np.ndarray]], per_scenario: int, frames: int, seed: int) -> list:
    from facetrack.data.multiface import SCENARIOS, make_multiface_clip

    rng = np.random.default_rng(seed)
    clips = []
    for scenario in SCENARIOS:
        for k in range(per_scenario):
            chosen = rng.choice(len(faces), size=3, replace=False)
            clips.append(make_multiface_clip([faces[i] for i in chosen], scenario, seed=seed * 1000 + k,
                                             num_frames=frames, name=f"{scenario}_{k}"))
    return clips


def score_clip(clip: Any, outputs: list[list[tuple[int, np.ndarray]]]) -> dict[str, float]:
    """Match each frame's tracks to the clip's faces and count what the module docstring lists."""
    from facetrack.metrics.nme import normaliser

    errors: list[float] = []
    lost = scored = switches = extra = 0
    last_id: dict[int, int] = {}
    for t, tracks in enumerate(outputs):
        truth = clip.landmarks[t]  # (F, N, 2)
        norms = normaliser(truth, "ibug68", "ocular")
        cost = np.full((len(truth), len(tracks)), np.inf)
        for j, (_, points) in enumerate(tracks):
            cost[:, j] = np.linalg.norm(points[None] - truth, axis=-1).mean(axis=-1) / norms
        matched: dict[int, tuple[int, float]] = {}
        if len(tracks):
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
            for f, j in zip(rows, cols):
                if cost[f, j] < 1.0:
                    matched[int(f)] = (int(j), float(cost[f, j]))
        extra += len(tracks) - len(matched)
        for f in range(len(truth)):
            if f in matched:
                track_id = tracks[matched[f][0]][0]
                if f in last_id and last_id[f] != track_id:
                    switches += 1
                last_id[f] = track_id
            if clip.visible[t, f].mean() < 0.5:
                continue
            scored += 1
            if f in matched:
                errors.append(matched[f][1])
            else:
                lost += 1
    err = np.array(errors)
    return {"nme": float(err.mean()) if len(err) else float("nan"), "fail": float((err > FAIL).sum() / max(scored, 1)),
            "lost": lost / max(scored, 1), "scored": scored, "switches": switches, "extra": extra}


def run(model: str | None, root: Path, per_scenario: int, frames: int, seed: int, threads: int,
        smooth: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    import facetrack

    torch.set_num_threads(threads)
    clips = make_clips(held_out_faces(root), per_scenario, frames, seed)
    tracker = facetrack.Tracker(model=model, max_faces=8, smoothing=None if smooth == "none" else smooth,
                                **(options or {}))
    per_clip = {}
    for clip in tqdm(clips, desc="clips", unit="clip"):
        rendered = list(clip.frames())
        t0 = time.perf_counter()
        outputs = [[(f.track_id, f.landmarks) for f in result.faces] for result in tracker.track(rendered)]
        seconds = time.perf_counter() - t0
        row = score_clip(clip, outputs)
        row["fps"] = len(rendered) / seconds
        row["scenario"] = clip.scenario
        per_clip[clip.name] = row
    nmes = np.array([r["nme"] for r in per_clip.values()])
    weights = np.array([r["scored"] for r in per_clip.values()], dtype=np.float64)
    summary = {"model": tracker.model_name, "clips": len(per_clip), "frames_per_clip": frames,
               "nme_mean": float(np.nanmean(nmes)), "nme_median_clip": float(np.nanmedian(nmes)),
               "nme_worst_clip": float(np.nanmax(nmes)),
               "worst_clip": max(per_clip, key=lambda k: per_clip[k]["nme"]),
               "fail": float(sum(r["fail"] * r["scored"] for r in per_clip.values()) / weights.sum()),
               "lost": float(sum(r["lost"] * r["scored"] for r in per_clip.values()) / weights.sum()),
               "switches": int(sum(r["switches"] for r in per_clip.values())),
               "extra": int(sum(r["extra"] for r in per_clip.values())),
               "fps": float(np.median([r["fps"] for r in per_clip.values()]))}
    return {"summary": summary, "clips": per_clip}


def table(result: dict[str, Any], command: str) -> str:
    s = result["summary"]
    lines = [f"# Multi-face held-out clips ({s['model']})", "", f"Command: `{command}`", "",
             "| clips | NME % mean | median clip | worst clip | worst / median | failure % (NME > 10 %) | lost % | "
             "id switches | extra track-frames | fps |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| {s['clips']} | {100 * s['nme_mean']:.2f} | {100 * s['nme_median_clip']:.2f} | "
             f"{100 * s['nme_worst_clip']:.2f} ({s['worst_clip']}) | {s['nme_worst_clip'] / s['nme_median_clip']:.2f} | "
             f"{100 * s['fail']:.2f} | {100 * s['lost']:.2f} | {s['switches']} | {s['extra']} | {s['fps']:.0f} |", "",
             "| clip | NME % | failure % | lost % | id switches | extra | fps |", "|---|---|---|---|---|---|---|"]
    for name, r in result["clips"].items():
        lines.append(f"| {name} | {100 * r['nme']:.2f} | {100 * r['fail']:.2f} | {100 * r['lost']:.2f} | "
                     f"{r['switches']} | {r['extra']} | {r['fps']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="landmark model (default: the packaged tracker)")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--clips", type=int, default=4, help="clips per scenario")
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smooth", default="aligned", help="output filter: aligned | one-euro | none")
    parser.add_argument("--out", type=Path, default=None, help="markdown table (and a .json next to it)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Tracker / TrackerConfig keywords, e.g. verify_every=3 keep_threshold=0.4 (numbers parsed)")
    args = parser.parse_args()
    options = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            options[key] = float(value) if "." in value else int(value)
        except ValueError:
            options[key] = value
    result = run(args.model, args.root, args.clips, args.frames, args.seed, args.threads, args.smooth, options)
    command = (f"python benchmarks/multi_face.py{' --model ' + args.model if args.model else ''} --clips {args.clips} "
               f"--frames {args.frames} --seed {args.seed} --smooth {args.smooth}"
               + (f" --set {' '.join(args.set)}" if args.set else ""))
    write_report(args.out, table(result, command), result)


if __name__ == "__main__":
    main()
