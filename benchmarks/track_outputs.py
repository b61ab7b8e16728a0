"""Memory of ``facetrack track`` over a long video with every output format, and a SIGKILL + resume:
``python benchmarks/track_outputs.py [--frames 4000] [--out benchmarks/results/track_outputs.md]``.

Each run is a fresh ``facetrack track`` process whose resident memory (VmRSS) is sampled every 0.1 s: the peak,
and the mean over the first and the last quarter of the run (flat memory: they are equal). Runs: csv only; csv,
jsonl, npz and pts (the npz assembled from bounded parts, never from the CSV); the same killed with SIGKILL
half-way and resumed (the resumed run's peak; the rows then checked: every frame once, none lost).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

RUN = "import sys; from facetrack.cli import main; sys.exit(main(sys.argv[1:]))"


def rss_of(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run(args: list[str], kill_at: int | None = None, out: Path | None = None) -> dict[str, object]:
    """Run ``facetrack ARGS`` sampling its memory; with ``kill_at``, SIGKILL it once ``out``'s summary says that
    frame is checkpointed."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUN, *args], stdout=subprocess.DEVNULL, stderr=sys.stderr)
    samples: list[float] = []
    killed = False
    while proc.poll() is None:
        value = rss_of(proc.pid)
        if value is not None:
            samples.append(value)
        if kill_at is not None and out is not None:
            try:
                progress = json.loads((out / "summary.json").read_text()).get("progress") or {}
                if progress.get("last_frame", -1) >= kill_at:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
            except (OSError, ValueError):
                pass
        time.sleep(0.1)
    wall = time.perf_counter() - started
    q = max(1, len(samples) // 4)
    return {"rc": proc.returncode, "killed": killed, "wall_s": wall, "peak_mb": max(samples, default=0.0),
            "first_quarter_mb": sum(samples[:q]) / q if samples else 0.0,
            "last_quarter_mb": sum(samples[-q:]) / q if samples else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--kill-only", action="store_true", help="only the SIGKILL + resume runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "track_outputs.md")
    args = parser.parse_args(argv)
    from track_speed import synthetic_video

    from facetrack.io.results import read_landmarks_csv

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = synthetic_video(tmp_path / "long.mp4", args.frames)
        common = ["track", str(video), "--no-progress", "--max-faces", "1"]
        for label, formats in () if args.kill_only else (("csv", "csv"), ("csv,jsonl,npz,pts", "csv,jsonl,npz,pts")):
            out = tmp_path / label.replace(",", "_")
            result = run([*common, "--out", str(out), "--format", formats])
            npz = out / "landmarks.npz"
            result.update(label=label, npz_mb=npz.stat().st_size / 2**20 if npz.exists() else None,
                          csv_mb=(out / "landmarks.csv").stat().st_size / 2**20)
            rows.append(result)
        out = tmp_path / "killed"
        killed = run([*common, "--out", str(out), "--format", "csv,jsonl,npz,pts"], kill_at=args.frames // 2, out=out)
        summary = json.loads((out / "summary.json").read_text())
        killed.update(label=f"same, SIGKILL at frame >= {args.frames // 2}",
                      npz_mb=(out / "landmarks.npz").stat().st_size / 2**20 if (out / "landmarks.npz").exists() else None,
                      csv_mb=(out / "landmarks.csv").stat().st_size / 2**20)
        rows.append(killed)
        resumed = run([*common, "--out", str(out), "--format", "csv,jsonl,npz,pts"])
        table = read_landmarks_csv(out / "landmarks.csv")
        final = json.loads((out / "summary.json").read_text())
        frames = [int(f) for f in table.frame]
        check = (f"resume exit code {resumed['rc']}, resumed from frame {final.get('resumed_from')}: {len(frames)} rows, {len(set(frames))} distinct "
                 f"frames, frames_read {final['frames_read']}, completed {final['completed']}; killed at checkpoint "
                 f"frame {summary.get('progress', {}).get('last_frame')}")
        resumed.update(label="resumed", npz_mb=(out / "landmarks.npz").stat().st_size / 2**20,
                       csv_mb=(out / "landmarks.csv").stat().st_size / 2**20)
        rows.append(resumed)
    lines = [f"# `facetrack track` memory with every output format ({args.frames} frames, 640x360)", "",
             f"`python benchmarks/track_outputs.py --frames {args.frames}`; default tracker and detector, `--max-faces 1`; VmRSS of "
             "the `track` process sampled every 0.1 s.", "",
             "| run | wall (s) | peak RSS (MB) | mean RSS first / last quarter (MB) | landmarks.csv (MB) | landmarks.npz (MB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        npz = "-" if r["npz_mb"] is None else f"{r['npz_mb']:.1f}"
        lines.append(f"| {r['label']} | {r['wall_s']:.0f} | {r['peak_mb']:.0f} | {r['first_quarter_mb']:.0f} / "
                     f"{r['last_quarter_mb']:.0f} | {r['csv_mb']:.1f} | {npz} |")
    lines += ["", f"Kill and resume: {check}."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.kill_only:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
