"""The verdict where CI shows it: GitHub Actions' job summary, pytest-html's report, MLflow's classic view.

(The README's CI gate writes ``$GITHUB_STEP_SUMMARY`` end to end in ``tests/test_readme.py``; the runs of
``tests/test_journeys.py``, with pytest-html installed but no ``--html``, check that no report carries extras.)
"""

from __future__ import annotations

import base64
import re

import pytest

from helpers import FGM_SUITE, run_robustness, session_run_id
from pytest_robustness.reports.ci_reports import append_step_summary, picture_extras, summary_markdown
from pytest_robustness.reports.gating import CellOutcome, summary_lines


def _cells():
    return [
        CellOutcome("cnn", "fgm linf-eps0.1", "none", 0.81, "models:/m/2", 0.8, True, "t::a", (0.72, 0.88)),
        CellOutcome("cnn", "fgm linf-eps0.1", "jpeg_compression (adaptive)", 0.5, "models:/m/2", 0.6, False, "t::b"),
        CellOutcome("cnn", "patch scale0.3|x", "none", 0.9, "models:/m/2", None, True, "t::c", note="needs 400 images"),
    ]


def test_the_summary_table_as_markdown_says_what_the_terminal_says(tmp_path):
    cells = _cells()
    markdown = summary_markdown(cells, "nothing promoted to @champion: 1 test(s) failed")
    lines = markdown.splitlines()
    assert lines[:6] == ["## Robustness summary", "", "### cnn: 2 passed, 1 failed", "",
                         "adversarial accuracy [95% interval] (delta vs baseline); **FAIL** marks failing cells", ""]
    assert lines[6:10] == [
        "| attack | none | jpeg_compression (adaptive) |",
        "| --- | --- | --- |",
        "| fgm linf-eps0.1 | 0.810 [0.72, 0.88] (+0.010) | 0.500 (-0.100) **FAIL** |",
        "| patch scale0.3\\|x | 0.900 |  |",
    ]
    assert "- too few images: `t::c`: needs 400 images" in lines
    assert markdown.rstrip().splitlines()[-1] == "**nothing promoted to @champion: 1 test(s) failed**"
    for terminal in summary_lines(cells)[2:4]:  # the terminal's cells, the same texts
        for text in re.split(r"\s{2,}", terminal.strip())[1:]:
            assert text.replace(" FAIL", " **FAIL**") in markdown
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    assert append_step_summary(cells, "", {"GITHUB_STEP_SUMMARY": str(target)}) == target
    assert target.read_text().startswith("earlier step\n## Robustness summary\n")  # appended, as Actions wants
    assert append_step_summary(cells, "", {}) is None and append_step_summary([], "", {"GITHUB_STEP_SUMMARY": str(target)}) is None


def test_picture_extras_are_pytest_htmls_image_extras(tmp_path):
    (tmp_path / "defended").mkdir()
    (tmp_path / "samples.png").write_bytes(b"\x89PNG one")
    (tmp_path / "defended" / "defended_samples.png").write_bytes(b"\x89PNG two")
    (tmp_path / "adversarial_examples.npz").write_bytes(b"not a picture")
    extras = picture_extras(tmp_path)
    assert [e["name"] for e in extras] == ["defended/defended_samples.png", "samples.png"]
    assert extras[1] == {"name": "samples.png", "format_type": "image", "mime_type": "image/png", "extension": "png",
                         "content": base64.b64encode(b"\x89PNG one").decode()}
    assert picture_extras(None) == [] and picture_extras(tmp_path / "missing") == []


def test_pytest_html_shows_each_cells_pictures_and_the_experiment_opens_mlflows_classic_view(pytester, trained_store):
    pytest.importorskip("pytest_html")
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--html", "report.html", "--self-contained-html", store=trained_store)
    result.assert_outcomes(passed=2)
    calls = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert [[e["name"] for e in r.extras] for r in calls] == [["samples.png"], ["samples.png"]]
    html = (pytester.path / "report.html").read_text()
    pictures = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pictures) == 2 and all(base64.b64decode(p).startswith(b"\x89PNG") for p in pictures)
    client = trained_store.client
    cell = next(r for r in trained_store.children(session_run_id(result)) if r.info.run_name.endswith("linf-eps0.1]"))
    logged = client.download_artifacts(cell.info.run_id, "samples.png", str(pytester.path))
    assert base64.b64encode(open(logged, "rb").read()).decode() in pictures  # the very picture MLflow holds
    experiment = client.get_experiment_by_name("mnist")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
