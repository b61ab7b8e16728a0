"""What an install gets: a slim core, the extras, every package data file (a wheel built here, no network),
the recipes by name, the licence, the weights budget, and a visible first-use ONNX export."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "facetrack"
TRAINING_ONLY = {"lightning", "matplotlib", "scikit-image", "h5py", "pandas", "pillow"}


def _data_files() -> set[str]:
    """Every non-Python file of the package source (what package-data must carry)."""
    return {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".py", ".pyc") and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel of this tree, built offline from a copy (no build/ or egg-info left in the repository)."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "configs", src / "configs")
    shutil.copytree(PACKAGE, src / "facetrack", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "recipes"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("facetrack-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_carries_every_data_file_recipe_and_the_licence(wheel):
    names = set(wheel.namelist())
    missing = sorted(f for f in _data_files() if f not in names)
    assert not missing, f"package data left out of the wheel: {missing}"
    for must in ("facetrack/peers/data/mediapipe_ibug68.json", "facetrack/weights/aohr-68.safetensors",
                 "facetrack/weights/retinaface_mnet025.onnx", "facetrack/assets/astronaut.png", "facetrack/py.typed"):
        assert must in names
    recipes = {Path(n).stem for n in names if n.startswith("facetrack/recipes/") and n.endswith(".yaml")}
    assert recipes == {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_wheel_metadata_slim_core_and_extras(wheel):
    meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta
    core = {re.split(r"[<>=!\[ ;]", line.split(": ", 1)[1])[0].lower()
            for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert core == {"torch", "numpy", "opencv-python-headless", "onnxruntime", "onnx", "safetensors", "pyyaml", "tqdm",
                    "scipy"}
    assert not core & TRAINING_ONLY
    extras = set(re.findall(r"^Provides-Extra: (\S+)", meta, re.M))
    assert {"train", "eval", "peers", "video", "test"} <= extras and "mediapipe" not in extras


def test_apache_licence_and_weights_budget():
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    size = sum(p.stat().st_size for p in (PACKAGE / "weights").iterdir() if p.is_file())
    assert size < 40e6, f"facetrack/weights is {size / 1e6:.1f} MB, over the 40 MB budget"


def test_recipes_by_name(capsys):
    from facetrack.errors import DataError
    from facetrack.packaged import find_recipe, recipe_names

    assert "aohr68_default" in recipe_names()
    assert find_recipe("aohr68_default").name == "aohr68_default.yaml" == find_recipe("aohr68_default.yaml").name
    with pytest.raises(DataError, match="aohr68_default"):
        find_recipe("no_such_recipe")
    from facetrack.cli import main

    assert main(["train", "no_such_recipe"]) == 1
    assert "packaged recipes" in capsys.readouterr().err


def test_first_onnx_export_says_so(tmp_path, monkeypatch, capsys, tiny_aohr_config):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facetrack.models import build_model
    from facetrack.models.onnx_runtime import predictor_for

    import torch

    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))

    def model():
        torch.manual_seed(0)
        return build_model("aohr", **tiny_aohr_config).inference_copy()

    assert predictor_for(model(), "onnx").runtime == "onnx"
    first = capsys.readouterr().err
    assert re.search(r"facetrack: preparing \S+ for onnxruntime, once \(cached in .*\) \.\.\. \d+ s", first), first
    assert predictor_for(model(), "onnx").runtime == "onnx"  # the same weights: the cached graph, silently
    assert "preparing" not in capsys.readouterr().err


SLIM_SCRIPT = """
import sys
for name in {blocked!r}:  # what a plain `pip install facetrack` does not bring
    sys.modules[name] = None
from facetrack.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not (PACKAGE / "weights" / "aohr-68.json").is_file(), reason="packaged weights absent")
def test_inference_runs_on_the_slim_core(tmp_path):
    """detect --render, track --render and models with the extras' packages made unimportable."""
    import cv2
    import numpy as np

    blocked = ["lightning", "matplotlib", "skimage", "h5py", "pandas", "PIL", "imageio_ffmpeg"]
    script = tmp_path / "slim.py"
    script.write_text(SLIM_SCRIPT.format(blocked=blocked))
    still = cv2.imread(str(PACKAGE / "assets" / "astronaut.png"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(frames / f"{i:03d}.png"), np.roll(still, 4 * i, axis=1))

    def run(*argv):
        done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run("detect", str(frames / "000.png"), "--out", "pred.json", "--render", "drawn", "--runtime", "torch")
    assert (tmp_path / "drawn" / "000.jpg").is_file() and (tmp_path / "pred.json").is_file()
    run("track", str(frames), "--out", "tracked", "--render", "--runtime", "torch", "--no-progress")
    assert (tmp_path / "tracked" / "overlay.mp4").is_file()
    assert '"overlay_codec": "mp4v"' in (tmp_path / "tracked" / "summary.json").read_text()
    assert "aohr-68" in run("models").stdout
