"""Transfer: adversarial examples crafted on one model and judged on another (Dioptra's first demo).

- Parametrisation: a test that takes ``source_architecture`` and ``architecture`` runs once per
  ordered pair of the selected architectures, a model with itself included, with ids such as
  ``test_fgm_transfer[shallow_net-to-le_net-linf-eps0.3]``.
- The matrix: at the end of the session the controller reads every transfer cell the session
  logged to MLflow (xdist workers each ran a part) and logs, per attack setting, a heatmap
  (rows source, columns target, cells adversarial accuracy) and a CSV to the session run,
  as ``transfer_matrix/<setting>.png`` and ``.csv``; the terminal summary shows the same tables.
  (``RobustnessPlugin.finish`` calls ``write_transfer_matrix`` after the sweep plots.)
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from .architectures import known_architectures
from .cache import ArrayCache
from .cell_labels import label_marks
from .mlflow_search import equals, search_runs
from .transfer_cells import SETTING_TAG, SOURCE_TAG

SOURCE_ARGNAME = "source_architecture"
MATRIX_DIR = "transfer_matrix"


# -- parametrisation -----------------------------------------------------------------------------
def transfer_pairs(names) -> list:
    """Every ordered (source, target) pair of model labels (built-in architectures or the names of given
    models), each marked with both labels (and ``slow``)."""
    return [pytest.param(source, target, id=f"{source}-to-{target}", marks=label_marks(source, target))
            for source in names for target in names]


def is_transfer_test(fixturenames) -> bool:
    """A test of (source, target) pairs: ``RobustnessPlugin.pytest_generate_tests`` parametrises it with
    ``transfer_pairs``, before the suite's own ``parametrize``, so the pair leads the id."""
    return SOURCE_ARGNAME in fixturenames and "architecture" in fixturenames


# -- the matrix ----------------------------------------------------------------------------------
def matrix_cells(runs) -> dict[str, dict[tuple[str, str], float]]:
    """setting -> (source, target) -> adversarial accuracy, from the session's transfer cell runs."""
    cells: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if SETTING_TAG not in tags or "adversarial_accuracy" not in metrics:
            continue
        target = run.data.params.get("architecture", "?")
        cells[tags[SETTING_TAG]][(tags.get(SOURCE_TAG, "?"), target)] = metrics["adversarial_accuracy"]
    return dict(cells)


def _axes(grid: dict[tuple[str, str], float]) -> tuple[list[str], list[str]]:
    order = list(known_architectures())
    rank = lambda name: (order.index(name) if name in order else len(order), name)  # noqa: E731
    return sorted({s for s, _ in grid}, key=rank), sorted({t for _, t in grid}, key=rank)


def matrix_lines(setting: str, grid: dict[tuple[str, str], float]) -> list[str]:
    sources, targets = _axes(grid)
    header = ["source \\ target", *targets]
    body = [[s, *(f"{grid[(s, t)]:.3f}" if (s, t) in grid else "" for t in targets)] for s in sources]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [f"transfer {setting}: adversarial accuracy of the target (column) on examples crafted on the source (row)"]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return lines


def matrix_csv(grid: dict[tuple[str, str], float]) -> str:
    sources, targets = _axes(grid)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", *targets])
    for s in sources:
        writer.writerow([s, *(f"{grid[(s, t)]:.6f}" if (s, t) in grid else "" for t in targets)])
    return buffer.getvalue()


def heatmap_png(setting: str, grid: dict[tuple[str, str], float]) -> bytes:
    """Rows source, columns target, each cell coloured and labelled with its adversarial accuracy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    sources, targets = _axes(grid)
    values = np.array([[grid.get((s, t), np.nan) for t in targets] for s in sources])
    figure = Figure(figsize=(1.6 + 1.4 * len(targets), 1.3 + 0.9 * len(sources)), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(len(sources)):
        for j in range(len(targets)):
            if not np.isnan(values[i, j]):
                axes.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center",
                          color="black" if values[i, j] > 0.6 else "white")
    axes.set_xticks(range(len(targets)), targets)
    axes.set_yticks(range(len(sources)), sources)
    axes.set_xlabel("target (judged model)")
    axes.set_ylabel("source (crafted on)")
    axes.set_title(f"transfer {setting}\nadversarial accuracy", fontsize="medium")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def setting_filename(setting: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in setting)


def write_transfer_matrix(client, session_run: str, cache=None) -> list[str]:
    """Log the heatmap and CSV of every attack setting to the session run; return the terminal lines.

    With ``cache`` (an ``ArrayCache``) a heatmap of the very same numbers is drawn once and reused.
    """
    cache = cache or ArrayCache(Path(tempfile.gettempdir()), "off")
    experiment_id = client.get_run(session_run).info.experiment_id
    runs = search_runs(client, [experiment_id], equals("tags", "mlflow.parentRunId", session_run))
    cells = matrix_cells(runs)
    lines: list[str] = []
    if not cells:
        return lines
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / MATRIX_DIR
        folder.mkdir()
        for setting, grid in sorted(cells.items()):
            name = setting_filename(setting)
            key = cache.key("transfer_matrix.png", 1, setting, sorted(grid.items()))
            with cache.file(key, f"{name}.png", lambda path: path.write_bytes(heatmap_png(setting, grid))) as png:
                shutil.copyfile(png, folder / f"{name}.png")
            (folder / f"{name}.csv").write_text(matrix_csv(grid))
            lines += matrix_lines(setting, grid)
        client.log_artifacts(session_run, str(folder), MATRIX_DIR)
    return lines
