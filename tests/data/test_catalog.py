"""The dataset catalogue: one registered spec per dataset, read by evaluation, training and the CLI."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from facetrack.data import catalog
from facetrack.data.sample import FaceSample
from facetrack.io.pts import write_pts


@pytest.fixture
def isolated_catalog(monkeypatch):
    """Registrations made by a test vanish after it."""
    catalog._load_builtins()
    monkeypatch.setattr(catalog, "_SPECS", dict(catalog._SPECS))
    return catalog


def test_builtin_datasets_are_registered():
    names = catalog.list_datasets("image")
    for name in ("300w", "shared300w", "wflw", "cofw", "aflw", "ideask21", "mtfl5", "ytf68"):
        assert name in names
    assert catalog.get_dataset("COFW").normalisers == ("pupil", "ocular")
    assert catalog.get_dataset("wflw").threshold == 0.10
    with pytest.raises(KeyError, match="known: 300w"):
        catalog.get_dataset("nope")


def test_a_toy_dataset_is_one_module(isolated_catalog, tmp_path, monkeypatch):
    """Adding a dataset touches one file: a module that registers its spec."""
    root = tmp_path / "toy_data"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        write_pts(root / f"face{i:02d}.pts", rng.uniform(10, 50, (68, 2)))
    module = tmp_path / "toy_dataset_module.py"
    module.write_text(textwrap.dedent('''
        from pathlib import Path
        from facetrack.data.catalog import DatasetSpec, HeldOut, register_dataset
        from facetrack.data.sample import FaceSample
        from facetrack.io.pts import read_pts

        def load_toy(root, split="all"):
            files = sorted(Path(root).glob("*.pts"))
            return [FaceSample(p.with_suffix(".jpg"), read_pts(p), "ibug68", subject=f"person{i // 2}")
                    for i, p in enumerate(files)]

        register_dataset(DatasetSpec(name="toy", kind="image", scheme="ibug68", description="a test dataset",
                                     read=load_toy, splits=("train", "val", "all"), default_split="val",
                                     normalisers=("bbox",), threshold=0.05, held_out=HeldOut(pool="all", val_fraction=0.25),
                                     terms="toy terms"))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("toy_dataset_module")
    try:
        assert "toy" in catalog.list_datasets("image", trainable=True)
        train, val = catalog.train_val("toy", root)
        assert [s.image_path for s in val] == [s.image_path for s in catalog.load("toy", root, "val")]
        assert [s.image_path for s in train] == [s.image_path for s in catalog.load("toy", root, "train")]
        assert {s.subject for s in train}.isdisjoint({s.subject for s in val})
        assert len(train) + len(val) == 12 and len(val) >= 3
        assert len(catalog.load("toy", root, "all")) == 12
        record = tmp_path / "split.json"  # a training run's held-out subjects select the same faces
        record.write_text('{"split": "train", "val_subjects": %s}' % sorted({s.subject for s in val}).__repr__()
                          .replace("'", '"'))
        assert [s.image_path for s in catalog.load("toy", root, str(record))] == [s.image_path for s in val]
        from facetrack.evaluation import default_settings

        settings = default_settings("toy")
        assert settings.norms == ("bbox",) and settings.threshold == 0.05 and settings.split == "val"
        from facetrack.metrics.nme import NMEMetric

        assert NMEMetric("ibug68", dataset="toy").norms == ("bbox",)
        assert catalog.terms("toy") == "toy terms"
    finally:
        sys.modules.pop("toy_dataset_module", None)


def test_held_out_sides_follow_the_recipe_fraction(isolated_catalog, tmp_path):
    faces = [FaceSample(tmp_path / f"{i}.jpg", np.zeros((68, 2)), "ibug68", subject=f"s{i % 10}") for i in range(40)]
    spec = catalog.DatasetSpec(name="toy2", kind="image", scheme="ibug68", description="", read=lambda r, s: faces,
                               splits=("train", "val", "all"), default_split="val", held_out=catalog.HeldOut("all"))
    catalog.register_dataset(spec)
    train, val = catalog.train_val("toy2", tmp_path, val_fraction=0.3, seed=1)
    assert len(val) >= 12 and {s.subject for s in train}.isdisjoint({s.subject for s in val})
    assert catalog.train_val("toy2", tmp_path, val_fraction=0.3, seed=1) == (train, val)
    with pytest.raises(ValueError, match="registered twice"):
        catalog.register_dataset(catalog.DatasetSpec(name="toy2", kind="image", scheme="ibug68", description="x",
                                                     read=lambda r, s: []))
