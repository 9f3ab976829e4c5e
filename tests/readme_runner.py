"""The README's commands and snippets, extracted and run as written (``tests/test_readme.py``).

- ``extract``: every fenced block of a Markdown file (its language, its text, the line of its fence;
  fences indented under a list item included), and the inline code spans that match a pattern (a
  command written in a sentence, e.g. ``cd examples/custom_attack && pytest ...``).
- ``unclaimed``/``overclaimed``: every block must be claimed by exactly one plan (a substring of its text),
  so a block added to the README without a way to run it (or a reason to skip it) fails the test.
- ``Shell``: a small interpreter of the README's shell lines: ``\\`` continuations, ``#`` comments,
  ``&&``, ``cd``, ``export``; ``pytest``/``python -m pytest`` run in process (the harness's runner) with
  the harness's selection and size options appended; ``python SCRIPT.py ARGS`` runs the script as written
  in process (``run_script``: ``__main__``, its ``sys.argv``, from the block's folder); ``pip`` and
  ``mlflow`` (servers) are skipped with the reason; any other program fails, naming it.
- ``run_python``: a snippet executed as written in a fresh namespace (placeholders the README marks as
  such, e.g. ``RUN_ID``, bound by the harness), its stdout returned.
- ``check``: exit code and a line of the output, or an AssertionError naming the block and the output's tail.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)\s*$")
INLINE = re.compile(r"`([^`\n]+)`")
PYTEST_PROGRAMS = (("pytest",), ("python", "-m", "pytest"))
SKIPPED_PROGRAMS = {
    "pip": "installs the package and its dependencies: the environment running this test has them installed",
    "mlflow": "starts an MLflow server or UI that runs until it is stopped",
}


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # the opening fence's line (1-based), or the line of an inline span
    lang: str  # "bash", "python", "toml", "yaml", "" (output shown by the README), "inline"
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def extract(path: Path, root: Path | None = None, inline: re.Pattern | None = None) -> list[Block]:
    """The fenced blocks of a Markdown file (and inline spans matching ``inline``), in document order."""
    name = str(path.relative_to(root)) if root is not None else path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            if inline is not None:
                found += [Block(name, i + 1, "inline", span) for span in INLINE.findall(lines[i]) if inline.search(span)]
            i += 1
            continue
        indent, start, body = len(fence["indent"]), i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{name}:{start + 1}: a code block that is never closed")
        found.append(Block(name, start + 1, fence["lang"], "\n".join(body) + "\n"))
        i += 1
    return found


def claims(blocks: Sequence[Block], keys: Iterable[str]) -> dict[str, Block]:
    """key -> the one block containing it. Every block claimed once, every key claiming exactly one block."""
    keys = list(keys)
    owners = {key: [b for b in blocks if key in b.text] for key in keys}
    problems = [f"plan {key!r} matches {len(found)} blocks ({', '.join(b.where for b in found) or 'none'})"
                for key, found in owners.items() if len(found) != 1]
    claimed_by = {b: [k for k in keys if k in b.text] for b in blocks}
    problems += [f"{b.where} ({b.lang or 'output'}: {b.text.splitlines()[0] if b.text.strip() else ''!r}) is "
                 f"{'claimed by no plan' if not ks else 'claimed by several plans ' + repr(ks)}: say how "
                 "tests/test_readme.py runs it, or why it is skipped"
                 for b, ks in claimed_by.items() if len(ks) != 1]
    if problems:
        raise AssertionError("README plans do not cover the README:\n  " + "\n  ".join(problems))
    return {key: found[0] for key, found in owners.items()}


# -- shell ----------------------------------------------------------------------------------------
def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell block, in order: continuations joined, comments dropped, split on &&."""
    steps: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        current: list[str] = []
        for word in shlex.split(line, comments=True):
            if word == "&&":
                steps.append(current)
                current = []
            else:
                current.append(word)
        if current:
            steps.append(current)
    return steps


@dataclass
class Outcome:
    argv: list[str]
    ret: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Shell:
    """Runs a block's commands from ``cwd``. ``pytest(args, cwd)`` runs pytest in process and returns
    ``(exit code, output lines)``; ``append`` goes after each pytest command's own arguments;
    ``skip_steps`` maps a command's start (``"python -m pytest tests"``) to why it is not run."""

    cwd: Path
    pytest: Callable[[list[str], Path], tuple[int, list[str]]]
    setenv: Callable[[str, str], None]
    append: Sequence[str] = ()
    skip_steps: Mapping[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def run(self, block: Block, text: str | None = None) -> list[Outcome]:
        for argv in commands(block.text if text is None else text):
            command = " ".join(argv)
            reason = next((r for start, r in self.skip_steps.items() if command.startswith(start)), None)
            reason = reason or SKIPPED_PROGRAMS.get(argv[0])
            if reason is not None:
                self.skipped.append((command, reason))
            elif argv[0] == "cd" and len(argv) == 2:
                self.cwd = (self.cwd / argv[1]).resolve()
                assert self.cwd.is_dir(), f"{block.where}: cd {argv[1]}: no such folder"
            elif argv[0] == "export" and len(argv) == 2 and "=" in argv[1]:
                self.setenv(*argv[1].split("=", 1))
            elif (program := next((p for p in PYTEST_PROGRAMS if tuple(argv[:len(p)]) == p), None)) is not None:
                ret, lines = self.pytest([*argv[len(program):], *self.append], self.cwd)
                self.outcomes.append(Outcome(argv, ret, lines))
            elif argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
                ret, lines = run_script(argv[1:], self.cwd)
                self.outcomes.append(Outcome(argv, ret, lines))
            else:
                raise AssertionError(f"{block.where}: the README runner cannot run {command!r}: teach "
                                     "tests/readme_runner.py to, or skip the block in tests/test_readme.py with the reason")
        return self.outcomes


# -- python -------------------------------------------------------------------------------------
def run_script(argv: list[str], cwd: Path) -> tuple[int, list[str]]:
    """``python SCRIPT ARGS`` in process, as ``__main__`` from ``cwd``: (exit code, stdout lines)."""
    script = (cwd / argv[0]).resolve()
    assert script.is_file(), f"python {argv[0]}: no such script in {cwd}"
    out, ret, saved = io.StringIO(), 0, (sys.argv, os.getcwd())
    try:
        sys.argv = [str(script), *argv[1:]]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        ret = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
    return ret, out.getvalue().splitlines()



def run_python(block: Block, bind: Mapping[str, object] = (), placeholders: Mapping[str, str] = ()) -> str:
    """Execute a snippet as written in a fresh ``__main__`` namespace; its stdout. ``bind`` gives the names the
    README leaves for the reader to fill (``RUN_ID``), ``placeholders`` replaces text it marks as elided
    (``"0f3c..."``), each of which must be in the snippet."""
    code = block.text
    for old, new in dict(placeholders).items():
        assert old in code, f"{block.where}: the placeholder {old!r} is no longer in the snippet"
        code = code.replace(old, new)
    namespace = {"__name__": "__main__", **dict(bind)}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, block.where, "exec"), namespace)  # noqa: S102 - the README's own snippet
    return out.getvalue()


# -- checks -------------------------------------------------------------------------------------
def check(block: Block, outcome: Outcome, exit_code: int = 0, line: str | re.Pattern | None = None) -> re.Match | None:
    """The command exited with ``exit_code`` and printed a line matching ``line`` (a regex or the exact line)."""
    tail = "\n".join(outcome.lines[-40:])
    assert outcome.ret == exit_code, (f"{block.where}: `{' '.join(outcome.argv)}` exited {outcome.ret}, "
                                      f"expected {exit_code}; its output ended:\n{tail}")
    if line is None:
        return None
    pattern = line if isinstance(line, re.Pattern) else re.compile(re.escape(line.strip()))
    found = next((m for m in map(pattern.search, outcome.lines) if m), None)
    assert found is not None, (f"{block.where}: `{' '.join(outcome.argv)}` printed no line matching "
                               f"{pattern.pattern!r}; its output ended:\n{tail}")
    return found
