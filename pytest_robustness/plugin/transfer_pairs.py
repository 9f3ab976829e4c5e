"""Transfer pairs: a test that takes ``source_architecture`` and ``architecture`` runs once per
ordered pair of the session's models, a model with itself included, with ids such as
``test_fgm_transfer[shallow_net-to-le_net-linf-eps0.3]``.
"""

from __future__ import annotations

import pytest

from ..models.architectures import get_architecture

SOURCE_ARGNAME = "source_architecture"


def transfer_pairs(names) -> list:
    """Every ordered (source, target) pair, each marked with both architectures (and ``slow``)."""
    params = []
    for source in names:
        for target in names:
            marks = [getattr(pytest.mark, name) for name in dict.fromkeys((source, target))]
            if get_architecture(source).slow or get_architecture(target).slow:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(source, target, id=f"{source}-to-{target}", marks=marks))
    return params


def is_transfer_test(fixturenames) -> bool:
    """A test of (source, target) pairs: ``RobustnessPlugin.pytest_generate_tests`` parametrises it with
    ``transfer_pairs``, before the suite's own ``parametrize``, so the pair leads the id."""
    return SOURCE_ARGNAME in fixturenames and "architecture" in fixturenames
