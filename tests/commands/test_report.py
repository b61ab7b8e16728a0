"""``facetrack report``: the page of a real tracking run on a pseudo-video of the packaged astronaut photo, with
its ground truth, opened in a real headless browser (Debian's chromium driven by Playwright): every thumbnail
and plot must render. Skips only when chromium or Playwright is absent (CI installs both)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetrack.cli import main
from facetrack.report import frame_jitter
from facetrack.report.svg import Marker, Plot, Series, line_plot

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STILL = Path(__file__).resolve().parents[2] / "facetrack" / "assets" / "astronaut.png"


def test_frame_jitter_is_fhr_e3_of_the_prediction():
    from facetrack.metrics.stability import fhr_stability

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 68, 2)) + np.linspace(0, 50, 68)[None, :, None]
    frames = np.array([0, 1, 2, 3, 5, 6])  # frame 4 missing: no jitter at 3 or 5
    jit = frame_jitter(pts, frames)
    assert np.isnan(jit[[0, 3, 4, 5]]).all()
    for t in (1, 2):
        assert jit[t] == pytest.approx(fhr_stability(pts[t - 1:t + 2], pts[t - 1:t + 2])["e3_jitter"])


def test_svg_plot_breaks_lines_at_gaps_and_marks_events():
    svg = line_plot(Plot("t", "frame", "y", [Series("a", np.arange(6.0), np.array([1, 2, np.nan, 3, 4, 5.0]))],
                         [Marker(2.0, "re-detection (track 0, frame 2)")]))
    assert svg.count("<polyline") == 2 and svg.count('class="marker"') == 1 and "re-detection" in svg


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """A 16-frame pseudo-video (with vid.mp4 and its ground truth) tracked by the packaged defaults."""
    from facetrack.api import Tracker
    from facetrack.data.sample import read_image
    from facetrack.data.synthetic import PseudoVideoConfig, demo_clip, write_clip
    from facetrack.tracking.session import track_to_folder

    root = tmp_path_factory.mktemp("report")
    tracker = Tracker()
    still = read_image(STILL)
    (first,) = next(iter(tracker.track([still]))).faces[:1]
    clip = demo_clip(first.landmarks, PseudoVideoConfig(num_frames=16, size=(320, 180), face_fraction=0.5),
                     seed=1, image=still)
    clip_dir = write_clip(clip, root / "truth" / "astronaut", mp4=True)
    run = root / "run"
    track_to_folder(tracker, str(clip_dir / "vid.mp4"), run / "astronaut", progress=False)
    return run, root / "truth"


def test_report_renders_in_headless_chromium(tracked_run, tmp_path, capsys):
    run, truth = tracked_run
    summary = json.loads((run / "astronaut" / "summary.json").read_text())
    assert summary["track_starts"] and summary["track_starts"][0][0] == 0
    assert main(["report", str(run), "--truth", str(truth), "--out", str(tmp_path / "report.html")]) == 0
    assert "1 scored against" in capsys.readouterr().out
    page_text = (tmp_path / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"]https?:", page_text)  # self-contained: nothing fetched
    assert page_text.count("class=\"plot\"") == 5  # confidence, landmark confidence, jitter, error, CED
    assert page_text.count("class='thumb'") == 4
    assert page_text.count('class="marker"') >= 5 * len(summary["track_starts"]) - 5  # the CED has no markers

    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((tmp_path / "report.html").as_uri())
            images = page.eval_on_selector_all(
                "img.thumb", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            plots = page.eval_on_selector_all("svg.plot", """els => els.map(e => {
                const b = e.getBBox();
                const lines = [...e.querySelectorAll('polyline')].map(l => l.getBBox());
                return [b.width, b.height, lines.length, lines.filter(l => l.width > 0).length];
            })""")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) == 4 and all(ok and w > 0 and h > 0 for ok, w, h in images)
    assert len(plots) == 5
    for width, height, lines, drawn in plots:
        assert width > 100 and height > 100 and lines >= 1 and drawn >= 1
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no summary.json" in capsys.readouterr().err
