"""Release gating at session level: thresholds loaded at start-up, verdicts, promotion, summary table.

Per-test checks live in ``Robustness.check``; this module sees the whole
session on the xdist controller (every report passes through it) and decides
what the registry should say about each candidate model version.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field

import pytest

from .registry import registry_of
from .thresholds import ThresholdTable, load_table

TABLE_KEY = pytest.StashKey[ThresholdTable]()
GATE_KEY = pytest.StashKey["Gate"]()
CELL_PROPERTIES = ("robustness.architecture", "robustness.row", "robustness.column", "robustness.value",
                   "robustness.candidate")


@dataclass
class CellOutcome:
    architecture: str
    row: str
    column: str
    value: float
    candidate: str
    baseline: float | None
    passed: bool
    nodeid: str
    ci: tuple[float, float] | None = None  # adversarial accuracy's 95% Wilson interval
    note: str = ""  # e.g. too few images to resolve the baseline tolerance


@dataclass
class Gate:
    """Registered as a plugin object: on the controller every report passes through it."""

    cells: list[CellOutcome] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # node ids of failed or erroring tests
    decision: str = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)
        if report.when != "teardown":
            return
        props = dict(report.user_properties)
        if not all(name in props for name in CELL_PROPERTIES):
            return
        self.cells.append(CellOutcome(
            architecture=str(props["robustness.architecture"]), row=str(props["robustness.row"]),
            column=str(props["robustness.column"]), value=float(props["robustness.value"]),
            candidate=str(props["robustness.candidate"]),
            baseline=float(props["robustness.baseline_value"]) if "robustness.baseline_value" in props else None,
            passed=report.nodeid not in self.failed, nodeid=report.nodeid,
            ci=(float(props["robustness.value_ci_low"]), float(props["robustness.value_ci_high"]))
            if "robustness.value_ci_low" in props else None, note=str(props.get("robustness.resolution", ""))))


def thresholds_of(config: pytest.Config) -> ThresholdTable:
    return config.stash.get(TABLE_KEY, ThresholdTable())


@pytest.hookimpl(trylast=True)  # after plugin.py has read the settings
def pytest_configure(config: pytest.Config) -> None:
    from .plugin import SETTINGS_KEY

    if SETTINGS_KEY not in config.stash:
        return
    settings = config.stash[SETTINGS_KEY]
    config.stash[TABLE_KEY] = load_table(settings.thresholds_file, config.rootpath, settings.max_regression,
                                         registry_of(config), tuple(sorted(settings.model.user_architectures)))
    config.stash[GATE_KEY] = Gate()
    config.pluginmanager.register(config.stash[GATE_KEY], "robustness-gate")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Controller, before the session run closes: verdict tags, promotion, the summary artifacts."""
    from .server_health import TrackingFault

    try:
        _record_verdicts(session, exitstatus)
    except TrackingFault as exc:  # the tracking server went away: say so once, promote nothing
        session.config.stash[GATE_KEY].decision = f"nothing promoted, no verdicts recorded: {exc.msg}"
    except OSError as exc:  # e.g. a full artifact store: the verdicts are recorded, the summary files are not
        gate = session.config.stash[GATE_KEY]
        gate.decision = "; ".join(filter(None, [gate.decision, f"summary table not stored in MLflow: {exc}"]))


def _record_verdicts(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or hasattr(config, "workerinput") or not gate.cells:
        return
    from mlflow.tracking import MlflowClient

    from .plugin import settings_of
    from .reporting import session_run_id

    from .server_health import GuardedClient

    settings = settings_of(config)
    client = GuardedClient(MlflowClient(settings.mlflow_uri), settings.mlflow_timeout)
    run_id = session_run_id(config)
    candidates = sorted({c.candidate for c in gate.cells})
    failed_by_model = {uri: [c.nodeid for c in gate.cells if c.candidate == uri and not c.passed] for uri in candidates}
    for uri in candidates:
        name, version = _split(uri)
        client.set_model_version_tag(name, version, "robustness.verdict", "failed" if failed_by_model[uri] else "passed")
        if run_id:
            client.set_model_version_tag(name, version, "robustness.verdict_session_run", run_id)
    gate.decision = _promote(client, settings.promote, candidates, gate, exitstatus)
    if run_id:
        if gate.decision:
            client.set_tag(run_id, "robustness.promotion", gate.decision)
        client.log_text(run_id, summary_csv(gate.cells), "robustness_summary.csv")
        client.log_text(run_id, summary_html(gate.cells), "robustness_summary.html")


def _split(uri: str) -> tuple[str, str]:
    name, version = uri[len("models:/"):].rsplit("/", 1)
    return name, version


def _promote(client, alias: str | None, candidates: list[str], gate: Gate, exitstatus: int) -> str:
    """Each candidate whose every cell passed gets the alias; a failure outside the cells blocks them all."""
    if not alias:
        return ""
    failing = sorted({c.candidate for c in gate.cells if not c.passed})
    passing = [uri for uri in candidates if uri not in failing]
    stray = [nodeid for nodeid in gate.failed if nodeid not in {c.nodeid for c in gate.cells}]
    if stray or not passing or (exitstatus != 0 and not gate.failed):
        reasons = f"{len(gate.failed)} test(s) failed" if gate.failed else f"pytest exit status {int(exitstatus)}"
        return f"nothing promoted to @{alias}: {reasons}"
    for uri in passing:
        name, version = _split(uri)
        client.set_registered_model_alias(name, alias, version)
    decision = "promoted " + ", ".join(f"{uri} -> @{alias}" for uri in passing)
    return decision + (f"; not promoted (failed cells): {', '.join(failing)}" if failing else "")


# -- the summary table ---------------------------------------------------------------------------
def _tables(cells: list[CellOutcome]) -> dict[str, tuple[list[str], list[str], dict]]:
    """Per architecture: rows (attack x parameters), columns (defenses), cell -> outcome."""
    tables: dict[str, tuple[list[str], list[str], dict]] = {}
    for cell in cells:
        rows, columns, grid = tables.setdefault(cell.architecture, ([], [], {}))
        if cell.row not in rows:
            rows.append(cell.row)
        if cell.column not in columns:
            columns.append(cell.column)
        grid[(cell.row, cell.column)] = cell
    for rows, columns, _ in tables.values():
        columns.sort(key=lambda c: (c != "none", c))
    return tables


def _text(cell: CellOutcome | None) -> str:
    if cell is None:
        return ""
    text = f"{cell.value:.3f}"
    if cell.ci is not None:
        text += f" [{cell.ci[0]:.2f}, {cell.ci[1]:.2f}]"
    if cell.baseline is not None:
        text += f" ({cell.value - cell.baseline:+.3f})"
    return text + ("" if cell.passed else " FAIL")


def summary_lines(cells: list[CellOutcome]) -> list[str]:
    lines = []
    for architecture, (rows, columns, grid) in _tables(cells).items():
        header = ["attack", *columns]
        body = [[row, *(_text(grid.get((row, col))) for col in columns)] for row in rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines.append(f"{architecture}: adversarial accuracy [95% interval] (delta vs baseline); FAIL marks failing cells")
        for r in [header, *body]:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
    lines += [f"too few images: {c.nodeid}: {c.note}" for c in cells if c.note]
    return lines


def summary_csv(cells: list[CellOutcome]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["architecture", "attack", "defense", "adversarial_accuracy", "baseline", "delta", "passed",
                     "candidate", "test"])
    for c in cells:
        delta = "" if c.baseline is None else f"{c.value - c.baseline:.6f}"
        writer.writerow([c.architecture, c.row, c.column, f"{c.value:.6f}",
                         "" if c.baseline is None else f"{c.baseline:.6f}", delta, c.passed, c.candidate, c.nodeid])
    return buffer.getvalue()


def summary_html(cells: list[CellOutcome]) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>robustness summary</title>",
             "<style>td,th{padding:4px 8px;border:1px solid #ccc}.fail{background:#fdd}</style>"]
    for architecture, (rows, columns, grid) in _tables(cells).items():
        parts.append(f"<h2>{html.escape(architecture)}</h2><table><tr><th>attack</th>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
        for row in rows:
            tds = []
            for col in columns:
                cell = grid.get((row, col))
                cls = " class='fail'" if cell is not None and not cell.passed else ""
                tds.append(f"<td{cls}>{html.escape(_text(cell))}</td>")
            parts.append(f"<tr><th>{html.escape(row)}</th>{''.join(tds)}</tr>")
        parts.append("</table>")
    return "\n".join(parts)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or not gate.cells:
        return
    terminalreporter.write_sep("-", "robustness summary")
    for line in summary_lines(gate.cells):
        terminalreporter.write_line(line)
    if gate.decision:
        terminalreporter.write_line(gate.decision)
