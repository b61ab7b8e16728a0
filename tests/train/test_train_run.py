"""``facetrack train`` end to end on a tiny model: outputs, no pickle, resume; plus the checkpoint format."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from facetrack.cli import main
from facetrack.models.hub import load_model, read_card
from facetrack.train.checkpoint import flatten_state, read_metrics, truncate_metrics, unflatten_state, append_metrics
from facetrack.train.config import OptimSection
from facetrack.train.module import lr_factor


def run_dir(recipe: Path) -> Path:
    return recipe.parent / "run"


def metrics(recipe: Path) -> list[dict[str, float]]:
    return read_metrics(run_dir(recipe) / "metrics.csv")


def state(recipe: Path) -> dict:
    return json.loads((run_dir(recipe) / "last.state.json").read_text())


def test_train_writes_safetensors_checkpoints_metrics_and_curve(tiny_recipe: Path) -> None:
    assert main(["train", str(tiny_recipe)]) == 0
    out = run_dir(tiny_recipe)
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json", "last.optim.safetensors",
                 "last.state.json", "metrics.csv", "curve.png", "split.json", "recipe.yaml"):
        assert (out / name).is_file(), name
    # Never a pickle: no .ckpt, and no file starts with a pickle protocol header.
    for file in out.rglob("*"):
        assert file.suffix != ".ckpt"
        if file.is_file():
            assert not file.read_bytes()[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), file
    rows = metrics(tiny_recipe)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(math.isfinite(r["train_loss"]) and 0 < r["val_nme"] < 10 and r["lr"] == 1e-3 for r in rows)
    with open(out / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == ["epoch", "train_loss", "val_nme", "lr", "seconds"]
    best = load_model(out / "best.safetensors")
    card = read_card(out / "best.json")
    best_row = min(rows, key=lambda r: r["val_nme"])
    assert card["training"]["epoch"] == best_row["epoch"]
    assert card["training"]["val_nme"] == pytest.approx(best_row["val_nme"], rel=1e-5)
    assert card["training"]["recipe"]["optim"]["lr"] == 1e-3 and card["training"]["recipe_path"] == str(tiny_recipe)
    assert card["training"]["data"]["terms"].startswith("300-W") and card["crop"]["scale"] == 1.25
    assert "git_commit" in card["training"]
    assert best.arch == "aohr" and best.input_size == 64
    last_card = read_card(out / "last.json")
    assert last_card["training"]["epoch"] == 1
    st = state(tiny_recipe)
    assert st["epoch"] == 1 and st["global_step"] == 4  # 2 epochs x limit_train_batches=2
    assert st["callbacks"]["RunRecorder"]["best_epoch"] == best_row["epoch"]


def test_refuses_to_overwrite_a_run_and_resumes_from_the_saved_epoch(tiny_recipe: Path, capsys) -> None:
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=1"]) == 0
    first = load_model(run_dir(tiny_recipe) / "last.safetensors").state_dict()
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=2"]) == 1
    assert "already holds a training run" in capsys.readouterr().err
    # Explicit --resume: one more epoch, numbered 1, steps and Adam moments continue.
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=2", "--resume"]) == 0
    assert [r["epoch"] for r in metrics(tiny_recipe)] == [0, 1]
    st = state(tiny_recipe)
    assert st["epoch"] == 1 and st["global_step"] == 4
    adam_steps = {v["step"]["__scalar__"] for _, v in st["optimizer_states"][0]["state"]["__dict__"]}
    assert adam_steps == {4.0}  # 2 steps before the resume + 2 after: the optimizer state was restored
    second = load_model(run_dir(tiny_recipe) / "last.safetensors").state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)
    # trainer.resume=auto continues without the flag; best score and epoch survive the resumes.
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=3", "trainer.resume=auto"]) == 0
    rows = metrics(tiny_recipe)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    best_row = min(rows, key=lambda r: r["val_nme"])
    assert state(tiny_recipe)["callbacks"]["RunRecorder"]["best_epoch"] == best_row["epoch"]
    assert read_card(run_dir(tiny_recipe) / "best.json")["training"]["epoch"] == best_row["epoch"]


def test_resume_without_a_checkpoint_is_an_error(tiny_recipe: Path, capsys) -> None:
    assert main(["train", str(tiny_recipe), "--resume"]) == 1
    assert "cannot resume: no checkpoint here" in capsys.readouterr().err


def test_bad_override_is_reported_by_the_command(tiny_recipe: Path, capsys) -> None:
    assert main(["train", str(tiny_recipe), "optim.lrr=1"]) == 1
    err = capsys.readouterr().err
    assert str(tiny_recipe) in err and "unknown key 'optim.lrr'" in err


def test_state_round_trip_keeps_types() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    original = {"optimizer_states": [optimizer.state_dict()], "best": math.inf, "epoch": 3, "none": None,
                "array": [1, 2.5, "x"]}
    data, tensors = flatten_state(original)
    data = json.loads(json.dumps(data, allow_nan=False))  # strict JSON
    restored = unflatten_state(data, tensors)
    assert restored["best"] == math.inf and restored["epoch"] == 3 and restored["none"] is None
    opt_state = restored["optimizer_states"][0]
    assert set(opt_state["state"]) == {0, 1}  # integer parameter ids survive JSON
    assert opt_state["param_groups"][0]["betas"] == (0.9, 0.99)
    step = opt_state["state"][0]["step"]
    assert step.dtype == optimizer.state_dict()["state"][0]["step"].dtype and float(step) == 1.0
    assert torch.equal(opt_state["state"][1]["exp_avg"], optimizer.state_dict()["state"][1]["exp_avg"])
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    fresh.load_state_dict(opt_state)  # what Lightning does on resume
    with pytest.raises(TypeError, match="without pickle"):
        flatten_state({"bad": object()})


def test_metrics_truncation_drops_epochs_that_will_run_again(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    for epoch in range(4):
        append_metrics(path, {"epoch": epoch, "train_loss": 1.0, "val_nme": 0.1, "lr": 1e-4, "seconds": 1.0})
    truncate_metrics(path, 2)
    assert [r["epoch"] for r in read_metrics(path)] == [0, 1]


def test_learning_rate_schedules() -> None:
    none = OptimSection(schedule="none")
    assert [lr_factor(e, none, 10) for e in range(3)] == [1.0, 1.0, 1.0]
    warm = OptimSection(schedule="cosine", warmup_epochs=2, min_lr_ratio=0.0)
    factors = [lr_factor(e, warm, 12) for e in range(12)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert factors[-1] == pytest.approx(0.0) and all(a >= b for a, b in zip(factors[2:], factors[3:]))
    step = OptimSection(schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(e, step, 10) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_resume_refuses_a_different_model(tiny_recipe: Path, capsys) -> None:
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=1"]) == 0
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=2", "model.config.head_channels=32",
                 "--resume"]) == 1
    err = capsys.readouterr().err
    assert "last.json" in err and "the run was trained as aohr" in err


def test_init_weights_starts_from_a_trained_model_of_the_same_architecture(tiny_recipe: Path, capsys) -> None:
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=1"]) == 0
    first = run_dir(tiny_recipe) / "last.safetensors"
    second = tiny_recipe.parent / "finetune"
    # lr 0: the fine-tuned weights stay the starting ones (BatchNorm statistics aside)
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=1", f"model.init_weights={first}", "optim.lr=0",
                 f"trainer.out={second}"]) == 0
    start, tuned = load_model(first).state_dict(), load_model(second / "last.safetensors").state_dict()
    weights = [k for k in start if k.endswith("weight") and start[k].ndim > 1]
    assert weights and all(torch.equal(start[k], tuned[k]) for k in weights)
    assert main(["train", str(tiny_recipe), "trainer.max_epochs=1", f"model.init_weights={first}",
                 "model.config.head_channels=32", f"trainer.out={tiny_recipe.parent / 'other'}"]) == 1
    assert "the run was trained as aohr" in capsys.readouterr().err
