"""Belmonte et al.'s local-motion networks against the shipped trackers on held-out pseudo-videos.

Analogues of the paper's Tables 2-5 and 7 on the clips of the 1DFormer tables (``benchmarks/temporal_bench.py``:
24 held-out pseudo-videos x 75 frames made from identities never trained on, tracked closed-loop from the GT box of
frame 0 through the engines of ``facetrack track``, raw model output, scored with the code of ``facetrack evaluate
--video``), for the six local-motion models (``runs/lm_<variant>/last.safetensors``, ``configs/lm_*.yaml``) and the
packaged ``1dformer-68`` / ``aohr-tracker-68``:

- error per frame normalised by the GT box diagonal (the paper's metric; box = landmark extent) and by the
  inter-ocular distance (outer corners, 300VW), mean over frames; CED (PNG), AUC@0.08 and FR@0.08 of the
  diagonal-normalised error (the paper's tables); NRMSE and the FHR jitter e3 of ``evaluate --video``;
- Table 7: parameters, weight size, and the network's speed per face on the CPU (``--threads``, default 2): every
  model's ``step`` through the predictor ``track`` uses (onnxruntime when it exports, else PyTorch), all models
  measured in interleaved rounds in one run so that a shared CPU slows them alike; the median round is reported.

    python benchmarks/local_motion.py            # resumes: rows already in --work/results.json are kept
    python benchmarks/local_motion.py --redo 2d  # re-score a row (e.g. after more training)
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from temporal_bench import StudySettings, _json_default, score_heldout, write_heldout_clips  # noqa: E402

log = logging.getLogger("local_motion")
VARIANTS = ("2d", "3d", "2drnn", "3drnn", "2dfcrnn", "3dfcrnn")
PACKAGED = ("1dformer-68", "aohr-tracker-68")
THRESHOLD = 0.08


def model_rows(runs: str) -> dict[str, str]:
    """Row name -> weights (a trained run's last checkpoint, or a packaged name)."""
    rows = {f"LM {v.upper()}": f"{runs}/lm_{v}/last.safetensors" for v in VARIANTS
            if Path(f"{runs}/lm_{v}/last.safetensors").is_file()}
    rows.update({p: p for p in PACKAGED})
    return rows


def frame_errors(tracks: Path, clips: Path) -> dict[str, np.ndarray]:
    """Per-frame errors (all clips pooled) by the GT box diagonal and by the inter-ocular distance."""
    from facetrack.evaluation import load_pseudo_truth
    from facetrack.evaluation.matching import find_track
    from facetrack.metrics.nme import nme, normaliser

    diag, ocular = [], []
    for truth in load_pseudo_truth(clips):
        track = find_track(tracks, truth, single=False)
        pred = track.landmarks if track is not None else np.full_like(truth.landmarks, np.nan)
        gt = truth.landmarks
        diag.append(nme(pred, gt, normaliser(gt, "ibug68", "diagonal")))
        ocular.append(nme(pred, gt, normaliser(gt, "ibug68", "ocular")))
    return {"diagonal": np.concatenate(diag), "ocular": np.concatenate(ocular)}


def open_loop_errors(model: Any, clips: Path, crop_scale: float) -> dict[str, np.ndarray]:
    """The paper's protocol (a face box given on every frame): each frame cropped from its own GT box (landmark
    extent), the model's streaming state carried over the clip; per-frame errors by diagonal and inter-ocular."""
    from facetrack.data.sample import read_image
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.evaluation import load_pseudo_truth
    from facetrack.landmarker import Landmarker
    from facetrack.metrics.nme import nme, normaliser
    from facetrack.tracking.engine import engine_for

    engine = engine_for(Landmarker(model, crop_scale=crop_scale, refine=0))
    diag, ocular = [], []
    for truth in load_pseudo_truth(clips):
        images = sorted((clips / truth.name / "imgs").iterdir())
        states: list[Any] = [None]
        pred = []
        for path, gt in zip(images, truth.landmarks):
            est = engine._predict(read_image(path), box_from_landmarks(gt)[None], np.zeros(1), states)
            states = [est[0].state]
            pred.append(est[0].landmarks)
        gt = truth.landmarks
        diag.append(nme(np.stack(pred), gt, normaliser(gt, "ibug68", "diagonal")))
        ocular.append(nme(np.stack(pred), gt, normaliser(gt, "ibug68", "ocular")))
    return {"diagonal": np.concatenate(diag), "ocular": np.concatenate(ocular)}


def score_row(weights: str, clips: Path, tracks: Path) -> dict[str, Any]:
    from facetrack.metrics.auc import auc_fr
    from facetrack.models.hub import load_model

    model = load_model(weights)
    crop_scale = float((getattr(model, "card", {}) or {}).get("crop", {}).get("scale", 1.25))
    given = open_loop_errors(model, clips, crop_scale)
    given_curve = auc_fr(given["diagonal"], THRESHOLD)
    record = {"weights": weights, "arch": model.arch, "config": model.config,
              "gt_box_diag": float(given["diagonal"].mean()), "gt_box_ocular": float(given["ocular"].mean()),
              "gt_box_auc": given_curve["auc"], "gt_box_fr": given_curve["fr"],
              "gt_box_errors_diag": given["diagonal"].tolist()}
    try:
        column, seconds = score_heldout(model, clips, tracks, crop_scale)
    except ValueError as exc:  # e.g. every landmark on one point: no box to crop the next frame from
        log.warning("%s: closed-loop tracking failed (%s)", weights, exc)
        return {**record, "closed_loop_failed": str(exc), "column": {}, "errors_diag": []}
    errors = frame_errors(tracks, clips)
    finite = {k: v[np.isfinite(v)] for k, v in errors.items()}
    curve = auc_fr(errors["diagonal"], THRESHOLD)
    return {**record, "weights": weights, "arch": model.arch, "config": model.config, "column": column,
            "track_seconds": seconds, "mean_diag": float(finite["diagonal"].mean()),
            "mean_ocular": float(finite["ocular"].mean()), "auc_diag": curve["auc"], "fr_diag": curve["fr"],
            "auc_settings": {k: curve[k] for k in ("step", "integrator", "inclusive", "count")},
            "errors_diag": errors["diagonal"].tolist()}


def speed(rows: dict[str, str], threads: int, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """Parameters, weight size and median ms per face of each model's streaming step, interleaved rounds."""
    import torch

    from facetrack.landmarker import Landmarker
    from facetrack.models.hub import load_model

    torch.set_num_threads(threads)
    units: dict[str, Any] = {}
    out: dict[str, dict[str, float]] = {}
    for name, weights in rows.items():
        model = load_model(weights)
        card_path = getattr(model, "card_path", None)
        files = [Path(card_path).with_suffix(".safetensors")] if card_path else []
        landmarker = Landmarker(model, refine=0)
        crop = torch.rand(1, 3, model.input_size, model.input_size)
        units[name] = (landmarker, crop)
        out[name] = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "size_mb": sum(f.stat().st_size for f in files if f.is_file()) / 1e6,
                     "input": model.input_size, "runtime": landmarker.runtime}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (landmarker, crop) in units.items():
            state = landmarker.model.init_state(1)
            with torch.inference_mode():
                landmarker.predictor.step(crop, state)  # warm
                start = time.perf_counter()
                for _ in range(steps):
                    outputs, state = landmarker.predictor.step(crop, state)
                    landmarker.model.decode(outputs)
            times[name].append((time.perf_counter() - start) / steps)
    for name in rows:
        ms = 1000 * float(np.median(times[name]))
        out[name].update({"ms": ms, "fps": 1000 / ms, "threads": threads, "rounds": rounds, "steps": steps})
    return out


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def write_table(results: dict[str, Any], path: Path) -> str:
    rows, sp = results["rows"], results.get("speed", {})
    lines = ["# Local-motion networks (Belmonte et al.) vs the shipped trackers on held-out pseudo-videos", "",
             f"{results['clips']}: {results['clip_count']} held-out pseudo-videos x {results['frames']} frames "
             "(identities never trained on), tracked closed-loop from the GT box of frame 0, raw output (no output "
             "filter). Diag: mean error / GT box diagonal (%), Ocular: / outer-eye-corner distance (%), both mean "
             "over all frames; AUC / FR at 0.08 of the diagonal error (CED trapezoid, step 1e-4); NRMSE: per video "
             "then over videos (evaluate --video); e3: FHR jitter (% of face size). Speed: median ms per face of the "
             f"network's streaming step on {results.get('threads', '?')} CPU threads, all models interleaved in one "
             "run (the CPU is shared with other jobs).", "",
             "Closed loop: `facetrack track`'s policy (each crop around the model's own previous landmarks); "
             "GT box: the paper's protocol, each frame cropped from its own ground-truth box (landmark extent), "
             "the model's temporal state carried over the clip.", "",
             "| model | input | closed loop: Diag % | Ocular % | AUC@0.08 | FR@0.08 % | NRMSE % | e3 % "
             "| GT box: Diag % | Ocular % | AUC@0.08 | FR@0.08 % | params M | size MB | ms/face | fps |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        s = sp.get(name, {})
        c = r["column"]
        if r.get("closed_loop_failed"):
            lines.append(f"| {name} | {s.get('input', '-')} | closed loop failed: {r['closed_loop_failed'][:60]} "
                         f"| | | | | | {_f(100 * r['gt_box_diag'])} | {_f(100 * r['gt_box_ocular'])} "
                         f"| {_f(r['gt_box_auc'])} | {_f(100 * r['gt_box_fr'], 2)} | {_f(s.get('params_m'), 2)} "
                         f"| {_f(s.get('size_mb'), 1)} | {_f(s.get('ms'), 2)} | {_f(s.get('fps'), 0)} |")
            continue
        lines.append(f"| {name} | {s.get('input', '-')} | {_f(100 * r['mean_diag'])} | {_f(100 * r['mean_ocular'])} "
                     f"| {_f(r['auc_diag'])} | {_f(100 * r['fr_diag'], 2)} | {_f(c['nrmse_per_video_mean'])} "
                     f"| {_f(c['e3_jitter'])} | {_f(100 * r['gt_box_diag'])} | {_f(100 * r['gt_box_ocular'])} "
                     f"| {_f(r['gt_box_auc'])} | {_f(100 * r['gt_box_fr'], 2)} "
                     f"| {_f(s.get('params_m'), 2)} | {_f(s.get('size_mb'), 1)} "
                     f"| {_f(s.get('ms'), 2)} | {_f(s.get('fps'), 0)} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="folder holding lm_<variant>/last.safetensors")
    parser.add_argument("--work", default="runs/lm_bench", help="tracks and results.json (resume point)")
    parser.add_argument("--cache", default="runs/temporal_cache", help="held-out clips (shared with the 1DFormer tables)")
    parser.add_argument("--root", default="../shared/data/300w")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the speed rounds")
    parser.add_argument("--track-threads", type=int, default=1, help="CPU threads while tracking the clips")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--redo", nargs="*", default=[], help="rows to score again (LM variant names or packaged)")
    parser.add_argument("--out", default="benchmarks/results/local_motion.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.track_threads)
    clips = write_heldout_clips(StudySettings(encoder="", root=args.root, cache=args.cache))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {"rows": {}}
    rows = model_rows(args.runs)
    redo = {f"LM {r.upper()}" if r.lower() in VARIANTS else r for r in args.redo}
    for name, weights in rows.items():
        if name in results["rows"] and name not in redo:
            continue
        log.info("tracking %s (%s)", name, weights)
        results["rows"][name] = score_row(weights, clips, work / "tracks" / name.replace(" ", "_"))
        results_path.write_text(json.dumps(results, default=_json_default), encoding="utf-8")
    results["rows"] = {k: results["rows"][k] for k in rows if k in results["rows"]}
    first = next(r for r in results["rows"].values() if r["column"])
    results.update({"clips": str(clips), "clip_count": first["column"]["videos"],
                    "frames": first["column"]["frames"] // max(first["column"]["videos"], 1), "threads": args.threads})
    results["speed"] = speed(rows, args.threads, args.rounds, args.steps)
    results_path.write_text(json.dumps(results, default=_json_default), encoding="utf-8")
    from facetrack.metrics.plots import plot_ced

    plot_ced({k: np.array(r["errors_diag"]) for k, r in results["rows"].items() if r["column"]},
             Path(args.out).with_suffix(".png"), THRESHOLD,
             "Held-out pseudo-videos: error / GT box diagonal")
    plot_ced({k: np.array(r["gt_box_errors_diag"]) for k, r in results["rows"].items()},
             Path(args.out).with_name(Path(args.out).stem + "_gt_box.png"), THRESHOLD,
             "Held-out pseudo-videos, GT box every frame: error / box diagonal")
    summary = {k: {kk: vv for kk, vv in r.items() if "errors_diag" not in kk} for k, r in results["rows"].items()}
    Path(args.out).with_suffix(".json").write_text(
        json.dumps({**{k: v for k, v in results.items() if k != "rows"}, "rows": summary}, indent=1,
                   default=_json_default), encoding="utf-8")
    print(write_table(results, Path(args.out)))


if __name__ == "__main__":
    main()
