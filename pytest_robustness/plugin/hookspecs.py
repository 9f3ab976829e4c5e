"""Hooks pytest-robustness adds to pytest (declared with ``pytest_addhooks``, as pytest-xdist does)."""

from __future__ import annotations


def pytest_robustness_register(registry) -> None:
    """Register attacks, defenses, architectures and datasets with this session's ``registry``
    (a :class:`pytest_robustness.registry.Registry`).

    Called once per pytest session, at configure time, before settings are read and
    before collection, in every ``conftest.py`` loaded by then (the rootdir's and those
    of the paths on the command line) and every plugin. Installed packages can instead
    declare an entry point in the ``pytest_robustness`` group. The registrations belong
    to this session only.
    """
