"""Release gating at session level: verdicts, promotion, the summary table.

Per-test checks live in ``Robustness.check``; the run's plugin object feeds the
``Gate`` every report on the xdist controller, and at the end of the session
asks it what the registry should say about each candidate model version.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field

import pytest

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
    """The session's cells and failures, fed every report on the controller (``observe``)."""

    cells: list[CellOutcome] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # node ids of failed or erroring tests
    decision: str = ""

    def observe(self, report: pytest.TestReport) -> None:
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

    def conclude(self, client, promote: str | None, session_run_id: str | None, exitstatus: int) -> None:
        """Verdict tags on the candidate versions, the promotion, the summary artifacts of the session run."""
        if not self.cells:
            return
        candidates = sorted({c.candidate for c in self.cells})
        failed_by_model = {uri: [c.nodeid for c in self.cells if c.candidate == uri and not c.passed]
                           for uri in candidates}
        for uri in candidates:
            name, version = _split(uri)
            client.set_model_version_tag(name, version, "robustness.verdict",
                                         "failed" if failed_by_model[uri] else "passed")
            if session_run_id:
                client.set_model_version_tag(name, version, "robustness.verdict_session_run", session_run_id)
        self.decision = _promote(client, promote, candidates, self, exitstatus)
        if session_run_id:
            if self.decision:
                client.set_tag(session_run_id, "robustness.promotion", self.decision)
            client.log_text(session_run_id, summary_csv(self.cells), "robustness_summary.csv")
            client.log_text(session_run_id, summary_html(self.cells), "robustness_summary.html")

    def terminal_lines(self) -> list[str]:
        if not self.cells:
            return []
        return [*summary_lines(self.cells), *([self.decision] if self.decision else [])]


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
def summary_tables(cells: list[CellOutcome]) -> dict[str, tuple[list[str], list[str], dict]]:
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


def cell_text(cell: CellOutcome | None) -> str:
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
    for architecture, (rows, columns, grid) in summary_tables(cells).items():
        header = ["attack", *columns]
        body = [[row, *(cell_text(grid.get((row, col))) for col in columns)] for row in rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        value = ("adversarial accuracy (autoattack: robust accuracy)" if any(r.startswith("autoattack") for r in rows)
                 else "adversarial accuracy")
        lines.append(f"{architecture}: {value} [95% interval] (delta vs baseline); FAIL marks failing cells")
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
    for architecture, (rows, columns, grid) in summary_tables(cells).items():
        parts.append(f"<h2>{html.escape(architecture)}</h2><table><tr><th>attack</th>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
        for row in rows:
            tds = []
            for col in columns:
                cell = grid.get((row, col))
                cls = " class='fail'" if cell is not None and not cell.passed else ""
                tds.append(f"<td{cls}>{html.escape(cell_text(cell))}</td>")
            parts.append(f"<tr><th>{html.escape(row)}</th>{''.join(tds)}</tr>")
        parts.append("</table>")
    return "\n".join(parts)
