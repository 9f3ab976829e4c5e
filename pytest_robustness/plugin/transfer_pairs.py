"""Transfer pairs: a test that takes ``source_architecture`` and ``architecture`` runs once per
ordered pair of the session's model labels, a model with itself included, with ids such as
``test_fgm_transfer[shallow_net-to-le_net-linf-eps0.3]``.
"""

from __future__ import annotations

import pytest

from .cell_labels import label_marks

SOURCE_ARGNAME = "source_architecture"


def transfer_pairs(names) -> list:
    """Every ordered (source, target) pair of model labels (built-in architectures or the names of given
    models), each marked with both labels (and ``slow``)."""
    return [pytest.param(source, target, id=f"{source}-to-{target}", marks=label_marks(source, target))
            for source in names for target in names]


def is_transfer_test(fixturenames) -> bool:
    """A test of (source, target) pairs: ``RobustnessPlugin.pytest_generate_tests`` parametrises it with
    ``transfer_pairs``, before the suite's own ``parametrize``, so the pair leads the id."""
    return SOURCE_ARGNAME in fixturenames and "architecture" in fixturenames
