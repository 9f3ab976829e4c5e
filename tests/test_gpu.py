"""``--gpu``: gpu-marked robustness tests are skipped without it; without a GPU it fails at start-up."""

from __future__ import annotations

import pytest
import tensorflow as tf

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))

GPU_SUITE = '''
import pytest

pytestmark = pytest.mark.robustness  # a robustness suite: other projects' gpu marks are theirs

@pytest.mark.gpu
def test_on_gpu():
    pass

def test_anywhere():
    pass
'''


def test_gpu_marked_tests_are_skipped_without_gpu_option(pytester):
    pytester.makepyfile(GPU_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * needs --gpu"])


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("suite", ["robustness", "plain"])
def test_gpu_option_without_a_gpu_fails_at_start_up(pytester, suite):
    """Also when no test would need a TensorFlow session: the user asked for a GPU run."""
    if suite == "robustness":
        pytester.makepyfile('''
            def test_cell(robustness):
                robustness.attack("fgm")
        ''')
    else:
        pytester.makepyfile(GPU_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == ["ERROR: --gpu: TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty); "
                      "install pytest-robustness[gpu] on a machine with CUDA, or drop --gpu"]
    assert not (pytester.path / "mlflow.db").exists()


@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
def test_gpu_option_with_a_gpu_runs_gpu_tests(pytester):
    pytester.makepyfile(GPU_SUITE)
    pytester.runpytest("-p", "no:cacheprovider", "--gpu").assert_outcomes(passed=2)
