"""Fast robustness cells run before the slow ones; other tests keep their places."""

from __future__ import annotations

import pytest

from helpers import TINY

SUITE = '''
import pytest


@pytest.mark.slow
def test_a_trains_its_own_model(robustness):
    pass


def test_b_foreign():
    pass


def test_c_fast_cell(robustness):
    pass


def test_d_foreign_slow_marked():
    pass
'''


def test_slow_cells_move_behind_fast_ones(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*TINY, "--collect-only", "-q")
    names = [line.split("::")[1] for line in result.stdout.lines if "::" in line]
    assert names == ["test_c_fast_cell[shallow_net]", "test_b_foreign", "test_a_trains_its_own_model[shallow_net]",
                     "test_d_foreign_slow_marked"]
