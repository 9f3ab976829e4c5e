"""The README runner itself: it finds every block, refuses a README it has no plan for, and a README
example broken on purpose fails the check that ``tests/test_readme.py`` applies to it."""

from __future__ import annotations

import re

import pytest
from readme_runner import Block, Outcome, Shell, check, claims, commands, extract, run_python
from test_readme import GATED, IN_PROCESS, SMALL, block

MARKDOWN = '''\
# Title

```bash
pytest robustness_suites -m "not slow" \\
    --promote champion   # a comment
pip install -e ".[cpu]" && pytest robustness_suites
```

- a list item:

  ```yaml
  steps:
    - run: pytest
  ```

```
output, not a command
```
'''


def test_extract_finds_every_fenced_block_with_its_line_and_language(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(MARKDOWN)
    found = extract(path, tmp_path)
    assert [(b.where, b.lang) for b in found] == [("README.md:3", "bash"), ("README.md:11", "yaml"), ("README.md:16", "")]
    assert found[1].text == "steps:\n  - run: pytest\n"  # the list item's indentation removed
    assert commands(found[0].text) == [["pytest", "robustness_suites", "-m", "not slow", "--promote", "champion"],
                                       ["pip", "install", "-e", ".[cpu]"], ["pytest", "robustness_suites"]]
    path.write_text("```python\nprint(1)\n")
    with pytest.raises(AssertionError, match=r"README.md:1: a code block that is never closed"):
        extract(path, tmp_path)


def test_a_block_without_a_plan_or_a_plan_without_its_block_fails(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(MARKDOWN)
    found = extract(path, tmp_path)
    assert claims(found, ["--promote champion", "run: pytest", "output, not"])["run: pytest"] is found[1]
    with pytest.raises(AssertionError, match=r"README.md:16 \(output: 'output, not a command'\) is claimed by no plan"):
        claims(found, ["--promote champion", "run: pytest"])
    with pytest.raises(AssertionError, match=r"plan 'pytest' matches 2 blocks \(README.md:3, README.md:11\)"):
        claims(found, ["pytest", "output, not"])


def test_a_command_the_runner_does_not_know_fails_and_installs_are_skipped_with_the_reason(tmp_path):
    ran = []
    shell = Shell(tmp_path, lambda args, cwd: (ran.append(args) or 0, []), lambda k, v: None, append=("-k", "x"))
    doc = Block("README.md", 1, "bash", 'pip install -e ".[cpu]" && pytest robustness_suites\n')
    [outcome] = shell.run(doc)
    assert ran == [["robustness_suites", "-k", "x"]] and outcome.ret == 0
    assert shell.skipped == [("pip install -e .[cpu]", "installs the package and its dependencies: the environment "
                                                       "running this test has them installed")]
    with pytest.raises(AssertionError, match=r"README.md:1: the README runner cannot run 'make gate'"):
        shell.run(doc, "make gate")


def test_a_python_script_runs_in_process_from_the_blocks_folder_with_its_arguments(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "count.py").write_text(
        "import pathlib, sys\nprint(len(sys.argv[1:]), pathlib.Path.cwd().name)\n"
        "sys.exit(3 if 'fail' in sys.argv else 0)\n")
    shell = Shell(tmp_path, lambda args, cwd: (0, []), lambda k, v: None)
    doc = Block("docs/x.md", 1, "bash", "python tools/count.py a b\n")
    [outcome] = shell.run(doc)
    assert (outcome.ret, outcome.lines) == (0, [f"2 {tmp_path.name}"])
    [_, failed] = shell.run(doc, "python tools/count.py fail")
    assert failed.ret == 3
    with pytest.raises(AssertionError, match=r"python tools/missing.py: no such script"):
        shell.run(doc, "python tools/missing.py")


def test_a_broken_python_snippet_fails(tmp_path):
    snippet = Block("README.md", 7, "python", "import math\nprint(math.sqrt(16))\n")
    assert run_python(snippet) == "4.0\n"
    with pytest.raises(NameError):
        run_python(Block("README.md", 7, "python", "print(sqrt(16))\n"))
    with pytest.raises(AssertionError, match=r"README.md:7: the placeholder 'RUN_ID' is no longer in the snippet"):
        run_python(snippet, placeholders={"RUN_ID": "'abc'"})


def test_the_readmes_gate_command_broken_on_purpose_fails_its_check(pytester, monkeypatch):
    """The README's own CI gate, with a typo a user could make: the check test_readme applies fails (exit 4)."""
    gate = block("--model-uri cnn=models:/mnist_cnn/latest")
    broken = gate.text.replace("--dataset mnist", "--dataset mnsit")
    assert broken != gate.text
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{pytester.path / 'mlflow.db'}")

    def run_pytest(args, cwd):
        result = pytester.runpytest_inprocess(*args, *IN_PROCESS)
        return int(result.ret), [*result.outlines, *result.errlines]

    [outcome] = Shell(pytester.path, run_pytest, monkeypatch.setenv, append=("-k", GATED, *SMALL)).run(gate, broken)
    with pytest.raises(AssertionError, match=r"README.md:\d+: `pytest robustness_suites .*` exited 4, expected 0"):
        check(gate, outcome, 0, "promoted models:/mnist_cnn/1 -> @champion")
    assert any(re.search(r"--dataset mnsit", line) for line in outcome.lines)
    assert not (pytester.path / "mlflow.db").exists()  # refused before any store was created


def test_a_readme_suite_snippet_broken_on_purpose_fails_its_check(pytester):
    """'Writing a suite' without its import: collection fails, and so does the check."""
    snippet = block("# runs once per architecture, logged to MLflow")
    broken = snippet.text.replace("from pytest_robustness import attack_cases\n", "")
    assert broken != snippet.text
    pytester.makepyfile(test_suite=broken)
    result = pytester.runpytest_inprocess("--architecture", "le_net", *SMALL, *IN_PROCESS)
    with pytest.raises(AssertionError, match=r"exited 2, expected 0"):
        check(snippet, Outcome(["pytest", "test_suite.py"], int(result.ret), result.outlines), 0, re.compile(r"2 passed"))
    assert any("NameError: name 'attack_cases' is not defined" in line for line in result.outlines)
