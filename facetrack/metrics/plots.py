"""CED plots for result reports. matplotlib is imported inside the function (Agg, no display needed)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facetrack.io.results import readable_by_all
from facetrack.metrics.auc import auc_fr, ced


def plot_ced(
    curves: dict[str, Any],
    path: str | Path,
    threshold: float,
    title: str | None = None,
    step: float = 1e-4,
    integrator: str = "trapz",
    inclusive: bool = True,
) -> Path:
    """Write a PNG of one CED curve per method (errors as fractions, axis in %), AUC@threshold in the legend.

    The AUC printed is computed with the same settings as :func:`facetrack.metrics.auc.auc_fr` so the
    figure and the result file agree. The file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("no curves to plot")
    path = Path(path)
    xs = np.linspace(0.0, threshold, int(round(threshold / step)) + 1)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    try:
        for name, errors in curves.items():
            res = auc_fr(errors, threshold, step=step, integrator=integrator, inclusive=inclusive)
            ax.plot(
                xs * 100,
                ced(errors, xs, inclusive) * 100,
                label=f"{name}: AUC@{threshold * 100:g}% = {res['auc'] * 100:.2f}, FR = {res['fr'] * 100:.2f}%",
            )
        ax.set_xlim(0, threshold * 100)
        ax.set_ylim(0, 100)
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("faces (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
        os.close(fd)
        readable_by_all(tmp)
        try:
            fig.savefig(tmp, format="png")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return path
