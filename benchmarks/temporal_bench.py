"""Temporal-model studies on pseudo-videos (``benchmarks/ablation.py``, ``benchmarks/window_study.py``).

Every row of a study is a 1DFormer variant trained with the frozen-encoder recipe (``facetrack.train.temporal``
with ``data.clips.feature_cache``) on *training* identities and scored by GT-initialised closed-loop tracking
(``facetrack.evaluation.track_clip``: frame 0 from the GT box, then the model's own crops) of held-out
pseudo-videos made from identities never used in training (``load_shared300w(root, "val")``), through the
same scoring code as ``facetrack evaluate --video --dataset pseudo``. The held-out clips are written once in
the 300VW layout (``write_clip``), so any row can be re-scored from its ``landmarks.csv`` with the CLI.

Every study also scores the per-frame encoder itself, tracked the same way (row ``per-frame encoder``): the
reference a temporal model has to beat. Studies resume: rows already in ``results.json`` are skipped, each row's training resumes from its
``last`` checkpoint, and the table is rewritten after every row. The model scored is the *last* epoch's (no
checkpoint selection on the validation pseudo-videos, whose identities are those of the test clips).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PER_FRAME = "per-frame encoder"  # the reference row of every study: the encoder alone, no temporal head


@dataclass
class StudySettings:
    """What every row of a study shares (the command-line options of the benchmark scripts)."""

    encoder: str
    root: str = "../shared/data/300w"
    cache: str = "runs/temporal_cache"
    work: str = "runs/study"
    preset: str = "1dformer-lite-128"
    train_clips: int = 256
    clip_frames: int = 12
    val_clips: int = 24
    test_clips: int = 24
    test_frames: int = 75
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    jitter_weight: float = 0.0
    threads: int = 0
    seed: int = 0
    video_size: int = 256

    def key(self) -> str:
        """Identifies the data a cache was built for (encoder file and clip settings)."""
        from dataclasses import asdict

        from facetrack.data.sequences import TrackerCropPolicy

        enc = Path(self.encoder)
        stamp = f"{enc.resolve()}:{enc.stat().st_mtime_ns if enc.exists() else 0}"
        text = json.dumps([stamp, self.root, self.train_clips, self.clip_frames, self.val_clips, self.seed,
                           self.video_size, asdict(TrackerCropPolicy())])
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def write_heldout_clips(settings: StudySettings) -> Path:
    """Held-out pseudo-videos (val identities; expression model of the training identities) in the 300VW
    layout under ``<cache>/heldout_<frames>x<clips>``; clips already written are kept."""
    from facetrack.data.sequences import fit_training_shape_model
    from facetrack.data.synthetic import PseudoVideoConfig, make_pseudo_video, write_clip
    from facetrack.data.pseudo import spread as _spread
    from facetrack.evaluation import load_shared300w

    folder = Path(settings.cache) / f"heldout_{settings.test_frames}x{settings.test_clips}_s{settings.seed}"
    val = _spread(load_shared300w(settings.root, "val"), settings.test_clips)
    missing = [i for i in range(len(val)) if not (folder / f"clip_{i:03d}" / "pseudo_video.json").is_file()]
    if not missing:
        return folder
    shape_model = fit_training_shape_model(load_shared300w(settings.root, "train"))
    config = PseudoVideoConfig(num_frames=settings.test_frames, size=(settings.video_size, settings.video_size))
    for i in missing:
        sample = val[i]
        video = make_pseudo_video(sample.load_image(), np.asarray(sample.landmarks), config,
                                  seed=10_000 + settings.seed * 1000 + i, shape_model=shape_model)
        write_clip(video, folder / f"clip_{i:03d}")
        # write_clip writes pseudo_video.json last, so a clip without it is rewritten next time.
    log.info("wrote %d held-out pseudo-videos to %s", len(missing), folder)
    return folder


def row_recipe(settings: StudySettings, name: str, model_config: dict[str, Any]) -> Any:
    """The frozen-encoder training recipe of one row."""
    from facetrack.train.config import config_from_dict

    safe = name.replace("^", "").replace("+", "_")
    data = {
        "name": f"study_{safe}",
        "model": {"arch": settings.preset, "config": dict(model_config), "encoder_weights": settings.encoder},
        "data": {"dataset": "pseudo300w", "root": settings.root, "seed": settings.seed,
                 "clips": {"num_frames": settings.clip_frames, "val_clips": settings.val_clips,
                           "cache_clips": settings.train_clips,
                           "video": {"size": [settings.video_size, settings.video_size]},
                           "feature_cache": str(Path(settings.cache) / f"features_{settings.key()}")}},
        "optim": {"lr": settings.lr, "batch_size": settings.batch_size, "schedule": "cosine", "min_lr_ratio": 0.05,
                  "jitter_weight": settings.jitter_weight},
        "trainer": {"max_epochs": settings.epochs, "accelerator": "cpu", "out": str(Path(settings.work) / "rows" / safe),
                    "threads": settings.threads, "progress_bar": False, "resume": "auto", "num_workers": 0,
                    "seed": settings.seed},
    }
    return config_from_dict(data, f"<{name}>")


def track_heldout(model: Any, clips: Path, out: Path, crop_scale: float, crop_smoothing: Any = None,
                  smoothing: Any = None, runtime: str = "auto") -> None:
    """Closed-loop tracking of every held-out clip; one ``landmarks.csv`` per clip, as ``facetrack track``
    (``crop_smoothing``: the tracker's crop policy, ``CropSmoothing()`` by default; ``smoothing``: the output
    filter, as ``Tracker(smoothing=...)``)."""
    from facetrack.data.sample import read_image
    from facetrack.data.transforms import box_from_landmarks
    from facetrack.io.pts import read_pts
    from facetrack.io.results import LandmarksCSVWriter
    from facetrack.evaluation import track_clip

    for clip in sorted(p for p in clips.iterdir() if (p / "annot").is_dir()):
        images = sorted((clip / "imgs").iterdir())
        first = read_pts(clip / "annot" / "000001.pts")
        pred, conf = track_clip(model, (read_image(p) for p in images), box_from_landmarks(first), crop_scale,
                                crop_smoothing, smoothing, runtime)
        target = out / clip.name / "landmarks.csv"
        with LandmarksCSVWriter(target, pred.shape[1]) as writer:
            for t, (pts, c) in enumerate(zip(pred, conf)):
                writer.write(t, t / 30.0, 1, box_from_landmarks(pts), None, pts, c)


def score_heldout(model: Any, clips: Path, tracks: Path, crop_scale: float, crop_smoothing: Any = None,
                  smoothing: Any = None, runtime: str = "auto") -> tuple[dict[str, Any], float]:
    """Track every held-out clip (``track_heldout``) into ``tracks`` and score them with the code of ``facetrack
    evaluate --video``: (the pseudo column without per-video rows, tracking seconds)."""
    from facetrack.evaluation import VideoSettings, evaluate_videos, load_pseudo_truth

    start = time.perf_counter()
    track_heldout(model, clips, tracks, crop_scale, crop_smoothing, smoothing, runtime)
    seconds = time.perf_counter() - start
    scored = evaluate_videos({"m": tracks}, {"pseudo": load_pseudo_truth(clips)}, VideoSettings("pseudo", str(clips)))
    column = scored["methods"]["m"]["columns"]["pseudo"]
    column.pop("per_video", None)
    return column, seconds


def run_study(settings: StudySettings, rows: dict[str, dict[str, Any]], title: str, table_path: Path,
              plot: Any = None) -> dict[str, Any]:
    """Train, track and score every row (skipping finished ones); rewrite the table after each row."""
    import torch

    from facetrack.models.hub import load_model
    from facetrack.train.config import DataSection
    from facetrack.train.run import train
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    work = Path(settings.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    if results.get("settings", {}).get("key") not in (None, _settings_record(settings)["key"]):
        raise SystemExit(f"{results_path} holds rows of other settings; use another --work folder")
    results["settings"] = _settings_record(settings)
    results.setdefault("rows", {})
    clips = write_heldout_clips(settings)
    if PER_FRAME not in results["rows"]:  # the per-frame encoder itself, tracked the same way: the reference
        tracks = work / "tracks" / "per_frame"
        column, track_s = score_heldout(load_model(settings.encoder), clips, tracks, DataSection.crop_scale)
        results["rows"] = {PER_FRAME: {"model": {"encoder": settings.encoder}, "column": column, "train_seconds": 0.0,
                                       "track_seconds": track_s, "frames": column["frames"],
                                       "final_val_nrmse": math.nan, "run": "", "tracks": str(tracks)},
                           **results["rows"]}
        results_path.write_text(json.dumps(results, indent=1, default=_json_default), encoding="utf-8")
    for name, model_config in rows.items():
        if name in results["rows"]:
            log.info("%s: done already (in %s)", name, results_path)
            continue
        start = time.perf_counter()
        config = row_recipe(settings, name, model_config)
        summary = train(config)
        train_s = time.perf_counter() - start
        model = load_model(Path(config.trainer.out) / "last.safetensors")
        tracks = work / "tracks" / config.trainer.out.split("/")[-1]
        column, track_s = score_heldout(model, clips, tracks, config.data.crop_scale)
        results["rows"][name] = {"model": model_config, "column": column, "train_seconds": train_s,
                                 "track_seconds": track_s, "frames": column["frames"],
                                 "final_val_nrmse": summary["final_val_nme"], "run": config.trainer.out,
                                 "tracks": str(tracks)}
        results_path.write_text(json.dumps(results, indent=1, default=_json_default), encoding="utf-8")
        write_table(results, title, table_path)
        if plot is not None:
            plot(results)
        log.info("%s: NRMSE %.3f%%, e3 %.3f%% (train %.0f s, track %.0f s)", name,
                 column["nrmse_per_video_mean"], column["e3_jitter"], train_s, track_s)
    write_table(results, title, table_path)
    return results


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def _settings_record(settings: StudySettings) -> dict[str, Any]:
    from dataclasses import asdict

    from facetrack.data.sequences import TrackerCropPolicy

    record = asdict(settings)
    record.pop("work")
    record.pop("threads")
    record["crop_policy"] = asdict(TrackerCropPolicy())  # training crops and (its smoothing) tracking crops
    record["key"] = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]
    return record


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def write_table(results: dict[str, Any], title: str, path: Path) -> str:
    """Markdown table of the finished rows (and every setting), written to ``path`` and returned."""
    s = results["settings"]
    lines = [f"# {title}", "",
             f"Held-out pseudo-videos: {s['test_clips']} clips x {s['test_frames']} frames from identities never used "
             f"in training (load_shared300w val split), tracked closed-loop from the GT box of frame 0. Training: "
             f"frozen encoder `{s['encoder']}`, {s['train_clips']} cached clips of {s['clip_frames']} frames from the "
             f"training identities, {s['epochs']} epochs, Adam lr {s['lr']} (cosine), batch {s['batch_size']}, "
             + (f"jitter loss weight {s['jitter_weight']:g}, " if s.get("jitter_weight") else "") +
             f"seed {s['seed']}. The last epoch's model is scored. NRMSE: inter-ocular (outer corners) %, per video "
             "then over videos; N/frame: frame-pooled. e3/e4: FHR stability jitter (% of face size), GT floor "
             "e3 = " + _f(next((r["column"]["gt_e3_jitter"] for r in results["rows"].values()), None)) +
             "; NMJ: LDEQ residual jitter. AUROC: confidence predicting visibility (not occluded).", "",
             "| row | NRMSE % | N/frame % | e1 delay | e3 % | e4 % | NMJ | lost % | AUROC | val NRMSE % | train s | track ms/frame |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["rows"].items():
        c = row["column"]
        ms = 1000 * row["track_seconds"] / max(row["frames"], 1)
        lines.append(f"| {name} | {_f(c['nrmse_per_video_mean'])} | {_f(c['nrmse_frame_pooled'])} | {_f(c['e1_delay'])} "
                     f"| {_f(c['e3_jitter'])} | {_f(c['e4_jitter_velocity_invariant'])} | {_f(c['nmj'])} "
                     f"| {_f(100 * c['lost_fraction'], 1)} | {_f(c.get('auroc_visible'))} "
                     f"| {_f(100 * row['final_val_nrmse'])} | {row['train_seconds']:.0f} | {ms:.1f} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def add_arguments(parser: Any, work: str, epochs: int = 4) -> None:
    """The options both study scripts share. Defaults fit ~30-40 CPU minutes for the 9 ablation rows on 2
    cores: the full 1DFormer-lite head costs ~2.7 s per training step of 8 clips x 12 frames on one thread,
    closed-loop tracking ~36 ms per frame."""
    parser.add_argument("--encoder", required=True, help="trained per-frame AOHR (runs/*/best.safetensors)")
    parser.add_argument("--root", default="../shared/data/300w", help="the shared 300-W crops")
    parser.add_argument("--cache", default="runs/temporal_cache", help="feature cache and held-out clips (shared)")
    parser.add_argument("--work", default=work, help="per-row runs, tracks and results.json (resume point)")
    parser.set_defaults(default_work=work)
    parser.add_argument("--preset", default="1dformer-lite-128", help="1DFormer preset the rows modify")
    parser.add_argument("--train-clips", type=int, default=256, help="cached training clips")
    parser.add_argument("--clip-frames", type=int, default=12, help="frames per training clip")
    parser.add_argument("--val-clips", type=int, default=24, help="validation clips (val NRMSE per epoch)")
    parser.add_argument("--test-clips", type=int, default=24, help="held-out pseudo-videos")
    parser.add_argument("--test-frames", type=int, default=75, help="frames per held-out pseudo-video")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--jitter-weight", type=float, default=0.0,
                        help="weight of the training-only jitter loss (facetrack.train.temporal.jitter_loss)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="a one-minute check: 16 training clips of 12 frames, 4 held-out clips of 24 frames, "
                             "1 epoch (numbers meaningless)")


def parser_default_work(args: Any) -> str:
    return getattr(args, "default_work", "")


def settings_from_args(args: Any) -> StudySettings:
    settings = StudySettings(
        encoder=args.encoder, root=args.root, cache=args.cache, work=args.work, preset=args.preset,
        train_clips=args.train_clips, clip_frames=args.clip_frames, val_clips=args.val_clips,
        test_clips=args.test_clips, test_frames=args.test_frames, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, jitter_weight=args.jitter_weight, threads=args.threads, seed=args.seed)
    if args.smoke:
        if args.work == parser_default_work(args):
            settings.work = args.work + "_smoke"
        settings.train_clips, settings.clip_frames, settings.val_clips = 16, 12, 4
        settings.test_clips, settings.test_frames, settings.epochs = 4, 24, 1
    return settings
