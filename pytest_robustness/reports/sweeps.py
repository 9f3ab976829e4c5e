"""At the end of a session: FGM accuracy against eps, per architecture and norm, one line per defense.

Cells run in any process (xdist workers each see a part), so the controller
builds the plots from what every cell logged to MLflow under the session run,
and logs them to the session run as ``fgm_accuracy_vs_eps/<architecture>_l<norm>.png``.
Lines: ``none`` (undefended ``adversarial_accuracy``) and ``<defense> (<threat model>)``
(``defended_accuracy``); minimal-perturbation FGM is a different attack and left out.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from ..cells.artifacts import EVIDENCE_VERSION
from ..cells.pictures import accuracy_vs_eps_png
from ..data.cache import ArrayCache
from ..tracking.search import equals, search_runs

PLOT_DIR = "fgm_accuracy_vs_eps"


def sweep_series(runs) -> dict[tuple[str, str], dict[str, list[tuple[float, float]]]]:
    """(architecture, norm) -> line label -> [(eps, accuracy)], from the session's FGM cell runs."""
    points: dict[tuple[str, str], dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        if params.get("attack") != "fgm" or params.get("fgm.minimal", "false") not in ("false", "False"):
            continue
        if "source_architecture" in params:  # transfer and infer cells: examples crafted on another model
            continue
        cell = (params.get("architecture", "?"), params.get("fgm.norm", "inf"))
        eps = float(params["fgm.eps"])
        if "adversarial_accuracy" in metrics:
            points[cell]["none"][eps] = metrics["adversarial_accuracy"]
        if "defense" in params and "defended_accuracy" in metrics:
            points[cell][f"{params['defense']} ({params.get('threat_model', '?')})"][eps] = metrics["defended_accuracy"]
    return {cell: {label: sorted(by_eps.items()) for label, by_eps in lines.items()} for cell, lines in points.items()}


def write_sweep_plots(client, session_run: str, cache=None) -> list[str]:
    """Plot every (architecture, norm) with at least two eps values; return the artifact paths.

    With ``cache`` (an ``ArrayCache``) a plot of the very same points is drawn once and reused.
    """
    cache = cache or ArrayCache(Path(tempfile.gettempdir()), "off")
    experiment_id = client.get_run(session_run).info.experiment_id
    runs = search_runs(client, [experiment_id], equals("tags", "mlflow.parentRunId", session_run))
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / PLOT_DIR
        folder.mkdir()
        for (architecture, norm), lines in sorted(sweep_series(runs).items()):
            if max(len(points) for points in lines.values()) < 2:
                continue
            title = f"FGM (L{norm}) on {architecture}"
            name = f"{architecture}_l{norm}.png"
            key = cache.key("accuracy_vs_eps.png", EVIDENCE_VERSION, title, sorted(lines.items()))
            with cache.file(key, name, lambda path: path.write_bytes(accuracy_vs_eps_png(lines, title))) as png:
                shutil.copyfile(png, folder / name)
            written.append(f"{PLOT_DIR}/{name}")
        if written:
            client.log_artifacts(session_run, str(folder), PLOT_DIR)
    return written
