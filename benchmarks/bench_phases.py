"""Where the main job's time goes, phase by phase, compiled kernels against ART's reference classes.

    python benchmarks/bench_phases.py [--marker EXPR] [--backends compiled,art] [--json PATH]

Runs the suites cold (empty store and cache) once per attack backend, each in its own
``pytest`` process, and reads the phases back from the MLflow store: every test's nested run
carries ``robustness.seconds.<phase>`` tags (``craft``: generating the attack, ``craft_adaptive``:
attacks against a defended model, ``score``: predictions and metrics, ``probe``: the gradient-masking
checks, ``transform``: property cells' transforms and corruptions, ``log``: MLflow records and
evidence, ``train``: model training the cell triggered, TensorFlow's start-up included) and every training run its own duration
(plain training apart from each recipe, e.g. PGD adversarial training). A new cell that is slow
shows up here in its phase the day it lands, and the slowest cells of each phase are named.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_suite import run_suite  # noqa: E402

PHASES = ("craft", "craft_adaptive", "transform", "score", "probe", "log")
SLOWEST = 3


def phases_from_store(db: Path) -> dict:
    """Seconds per phase, the slowest cells of each, and training time per recipe, from one session's store."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    totals: dict[str, float] = defaultdict(float)
    cells: dict[str, list[tuple[float, str]]] = defaultdict(list)
    training: dict[str, float] = defaultdict(float)
    robustness: dict[str, float] = {}  # PGD-trained models: adaptive FGM accuracy, the strength beside the time
    for experiment in client.search_experiments():
        token = None
        while True:
            page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                                      page_token=token)
            for run in page:
                tags = run.data.tags
                if tags.get("robustness.kind") == "training" and run.info.end_time:
                    training[tags.get("mlflow.runName", "?")] += (run.info.end_time - run.info.start_time) / 1000
                params = run.data.params
                if params.get("defense") == "pgd" and params.get("threat_model") == "adaptive" \
                        and "defended_accuracy" in run.data.metrics:
                    robustness[tags.get("mlflow.runName", "?")] = run.data.metrics["defended_accuracy"]
                for key, value in tags.items():
                    if key.startswith("robustness.seconds."):
                        phase = key[len("robustness.seconds."):]
                        totals[phase] += float(value)
                        cells[phase].append((float(value), tags.get("mlflow.runName", "?")))
            token = page.token
            if not token:
                break
    return {"phases": dict(totals), "training": dict(training), "pgd_robustness": robustness,
            "slowest": {phase: sorted(found, reverse=True)[:SLOWEST] for phase, found in cells.items()}}


def bench_phases(marker: str, backends: list[str]) -> dict:
    results = {}
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"robustness-phases-{backend}-") as tmp:
            workdir = Path(tmp)
            run = run_suite(workdir, marker, [f"--attack-backend={backend}"])
            results[backend] = {"run": run, **phases_from_store(workdir / "mlflow.db")}
    return results


def _ratio(art: float | None, ours: float | None) -> str:
    return f"{art / ours:.2f}x" if art and ours else ""


def print_phases(results: dict) -> None:
    backends = list(results)
    header = f"{'phase':<28}" + "".join(f"{b:>12}" for b in backends) + ("   ART / compiled" if len(backends) > 1 else "")
    print(header)
    rows: list[tuple[str, dict]] = []
    for phase in (*PHASES, "train"):
        rows.append((phase, {b: results[b]["phases"].get(phase) for b in backends}))
    names = sorted({name for b in backends for name in results[b]["training"]})
    for name in names:
        rows.append((f"  {name}", {b: results[b]["training"].get(name) for b in backends}))
    rows.append(("whole session (wall)", {b: results[b]["run"]["seconds"] for b in backends}))
    for label, values in rows:
        cells = "".join(f"{values[b]:>11.1f}s" if values[b] is not None else f"{'-':>12}" for b in backends)
        ratio = _ratio(values.get("art"), values.get("compiled")) if len(backends) > 1 else ""
        print(f"{label:<28}{cells}   {ratio}")
    for b in backends:
        run = results[b]["run"]
        print(f"{b}: {run['summary']}; peak RSS {run['peak_rss_mib']:.0f} MiB")
        for name, accuracy in sorted(results[b]["pgd_robustness"].items()):
            print(f"  PGD-trained, adaptive: {name} defended_accuracy {accuracy:.3f}")
        for phase, slowest in sorted(results[b]["slowest"].items()):
            named = ", ".join(f"{name} {seconds:.1f} s" for seconds, name in slowest)
            print(f"  slowest {phase}: {named}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marker", default="not slow or slow", help="-m expression (default: every cell)")
    parser.add_argument("--backends", default="compiled,art")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = bench_phases(args.marker, args.backends.split(","))
    print_phases(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if all(r["run"]["exit"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
