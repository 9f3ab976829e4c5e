"""Cache keys carry what produced an entry: library versions, the attack backend's code version, the backend.

After an ART/TensorFlow/Keras/numpy upgrade or a change to a kernel, a warm cache
must not serve the old examples; a baseline computed with another backend is not
the same cell.
"""

from __future__ import annotations

import dataclasses

from helpers import run_robustness, session_run_id
from pytest_robustness.attacks import ATTACKS
from pytest_robustness.data import versions

SUITE = '''
def test_fgm(robustness):
    result = robustness.attack("fgm", eps=0.2)
    robustness.check(result, clean_accuracy=0.1)
'''


def test_a_changed_version_or_backend_misses(pytester, trained_store, monkeypatch):
    pytester.makepyfile(test_cell=SUITE)
    cache = f"--robustness-cache-dir={pytester.path / 'cache'}"

    def examples(*args: str) -> tuple[str, str]:
        """(how the examples were obtained, the cell key the baseline look-up uses)."""
        result = run_robustness(pytester, cache, *args, store=trained_store)
        result.assert_outcomes(passed=1)
        (run,) = trained_store.children(session_run_id(result))
        return run.data.tags["robustness.examples"], run.data.tags["robustness.cell_key"]

    first, cell_key = examples()
    assert first == "computed"
    assert examples() == ("cache", cell_key)

    real = versions.library_versions()
    assert set(real) == {"art", "tensorflow", "keras", "numpy"} and "absent" not in real.values()
    # monkeypatch.context, not undo: pytester's own patches (its working directory) must stay
    with monkeypatch.context() as patch:
        patch.setattr(versions, "library_versions", lambda: {**real, "numpy": "0.0.upgraded"})
        assert examples()[0] == "computed"

    fgm = ATTACKS["fgm"]
    with monkeypatch.context() as patch:
        patch.setitem(ATTACKS, "fgm", dataclasses.replace(fgm, versions={**fgm.versions, "art": 99}))
        assert examples()[0] == "computed"

    compiled, compiled_key = examples("--attack-backend", "compiled")
    assert compiled == "computed" and compiled_key != cell_key  # baselines are looked up per backend
