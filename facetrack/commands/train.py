"""``facetrack train CONFIG.yaml [key.sub=value ...] [--resume]``: train a model from a YAML recipe.

Outputs go to ``trainer.out`` (default ``runs/<recipe name>``): ``last``/``best`` safetensors with model
cards, the optimizer state for resuming, ``metrics.csv``, ``curve.png``, ``split.json`` and ``recipe.yaml``.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a landmark model from a YAML recipe",
        description="Train a model from a recipe: a YAML file, or the name of a packaged recipe (the repository's "
        "configs/*.yaml, shipped in the package), e.g. facetrack train aohr68_default data.root=/data/300w. Any "
        "recipe key can be overridden as section.key=value, e.g. optim.lr=3e-4 trainer.max_epochs=2. Training "
        "needs the train extra: pip install \"facetrack[train]\".",
    )
    p.add_argument("config", metavar="RECIPE", help="recipe file (CONFIG.yaml) or packaged recipe name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of recipe keys")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in trainer.out from last.safetensors (model, optimizer, epoch, best)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from facetrack.packaged import find_recipe
    from facetrack.train.config import load_config
    from facetrack.train.run import train

    logger = logging.getLogger("facetrack")
    if not logger.handlers:  # not the root logger: Lightning has its own handler there
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config = load_config(find_recipe(args.config), args.overrides)
    summary = train(config, resume=True if args.resume else None)
    best = summary["best_val_nme"]
    print(f"facetrack train: {summary['epochs']} epochs in {summary['out']}; best validation NME "
          f"{100 * best:.3f}% (inter-ocular) at epoch {summary['best_epoch']}")
    return 0
