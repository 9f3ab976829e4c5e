"""The verdict where CI shows it: GitHub Actions' job summary and pytest-html's report.

- ``$GITHUB_STEP_SUMMARY`` (set by GitHub Actions for each step): the summary table the terminal ends
  with (one table per model, failing cells marked), and the promotion decision, appended as Markdown,
  so the job's page shows the verdict without opening a log.
- pytest-html (when its plugin ``html`` is registered): each robustness cell's evidence pictures
  (``samples.png``, ``patch.png``, as logged to its MLflow run) become image extras of its report.
  The extras are pytest-html's plain dicts (``pytest_html.extras.png``'s format), so nothing of
  pytest-html is imported and a run without it is unchanged.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Mapping

from .gating import CellOutcome, cell_text, summary_tables

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
PICTURES = ("samples.png", "patch.png")  # the evidence pictures a cell logs, prefixed or not


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def summary_markdown(cells: list[CellOutcome], decision: str = "") -> str:
    """The terminal's summary table as GitHub-flavoured Markdown: a table per model, then the decision."""
    parts = ["## Robustness summary", ""]
    for architecture, (rows, columns, grid) in summary_tables(cells).items():
        failing = sum(1 for cell in grid.values() if not cell.passed)
        parts += [f"### {_cell(architecture)}: {len(grid) - failing} passed, {failing} failed", "",
                  "adversarial accuracy [95% interval] (delta vs baseline); **FAIL** marks failing cells", "",
                  "| attack | " + " | ".join(_cell(c) for c in columns) + " |",
                  "| --- |" + " --- |" * len(columns)]
        for row in rows:
            texts = [cell_text(grid.get((row, column))).replace(" FAIL", " **FAIL**") for column in columns]
            parts.append(f"| {_cell(row)} | " + " | ".join(_cell(t) for t in texts) + " |")
        parts.append("")
    parts += [f"- too few images: `{c.nodeid}`: {c.note}" for c in cells if c.note]
    if decision:
        parts += ["", f"**{_cell(decision)}**"]
    return "\n".join(parts).rstrip() + "\n\n"


def append_step_summary(cells: list[CellOutcome], decision: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append the summary to ``$GITHUB_STEP_SUMMARY`` when it is set (and there are cells); the file, or None."""
    target = environ.get(STEP_SUMMARY_ENV)
    if not target or not cells:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as out:
        out.write(summary_markdown(cells, decision))
    return path


def picture_extras(folder: Path | None) -> list[dict]:
    """pytest-html image extras of the evidence pictures staged in ``folder`` (a cell's run), in name order."""
    if folder is None or not folder.is_dir():
        return []
    pictures = sorted(p for p in folder.rglob("*.png") if p.name.endswith(PICTURES))
    return [{"name": p.relative_to(folder).as_posix(), "format_type": "image",
             "content": base64.b64encode(p.read_bytes()).decode("ascii"), "mime_type": "image/png", "extension": "png"}
            for p in pictures]
