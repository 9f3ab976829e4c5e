"""Every file we read from the user, or from our own cache, is checked like image folders and .npz files.

A truncated model file, a binary thresholds file or a truncated Dioptra tarball is one line naming it; a
truncated cache entry (a full disk, a killed copy) is never trusted: it is recomputed, and a warning line
says so.
"""

from __future__ import annotations

import shutil
import tarfile

import keras
import numpy as np
import pytest

from helpers import FGM_SUITE, run_robustness
from pytest_robustness.data.adversarial_sets import extract_tarball, write_dioptra_tarball
from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.models.loading import hdf5_problem


def start_up_error(pytester, *args: str) -> str:
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    for created in ("mlflow.db", "mlartifacts", ".robustness_cache"):
        assert not (pytester.path / created).exists(), created
    return errors[0]


def test_a_truncated_model_file(pytester):
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    path = pytester.path / "model.keras"
    model.save(path)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])  # a copy cut short
    line = start_up_error(pytester, "--model-file", str(path), "--architecture", "cnn")
    assert line.startswith(f"ERROR: --model-file {path}: not a loadable Keras model ("), line


def test_a_binary_thresholds_file(pytester):
    path = pytester.path / "gate.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    line = start_up_error(pytester, "--thresholds", str(path))
    assert line == f"ERROR: {path}: not a UTF-8 text file, so not TOML (invalid start byte at byte 0)", line


def test_a_truncated_dioptra_tarball(tmp_path):
    images = np.random.default_rng(0).random((40, 28, 28, 1)).astype(np.float32)
    whole = write_dioptra_tarball(tmp_path / "made", tmp_path / "whole.tar.gz", images, np.arange(40) % 10,
                                  [str(i) for i in range(10)])
    cut = tmp_path / "testing_adversarial_fgm.tar.gz"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) * 2 // 3])
    with pytest.raises(RobustnessUsageError) as refused:
        extract_tarball(cut, tmp_path / "extracted")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("infer: testing_adversarial_fgm.tar.gz could not be read to its end, truncated or "
                              "corrupt ("), message
    with tarfile.open(whole) as intact:  # the same bytes, whole, are read
        assert len(intact.getmembers()) > 40


def test_a_truncated_cache_entry_is_recomputed_and_said_in_one_line(pytester, trained_store):
    pytester.makepyfile(test_suite=FGM_SUITE)
    first = run_robustness(pytester, store=trained_store)
    first.assert_outcomes(passed=2)
    entries = sorted((pytester.path / ".robustness_cache" / "arrays").rglob("*.npz"))
    assert entries
    for entry in entries:  # a full disk, a killed copy: every entry cut short
        entry.write_bytes(entry.read_bytes()[:100])
    second = run_robustness(pytester, "-W", "always::pytest_robustness.data.cache.CacheEntryWarning", store=trained_store)
    second.assert_outcomes(passed=2, warnings=len(entries))
    output = second.stdout.str()
    assert "Traceback" not in output
    said = [line for line in second.outlines if "is unreadable" in line]
    assert len(said) == len(entries), output
    assert all("CacheEntryWarning: pytest-robustness: cache entry " in line and line.endswith("; recomputing it")
               for line in said), said
    assert "attack examples: 2 computed, 0 reused" in output  # recomputed, not trusted
    for entry in entries:  # and written again, whole
        with np.load(entry) as npz:
            assert npz.files
    shutil.rmtree(pytester.path / ".robustness_cache")


def test_truncated_base_weights(pytester):
    inputs = keras.Input((8, 8, 1))
    base = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    path = pytester.path / "base.weights.h5"
    base.save_weights(path)
    assert hdf5_problem(path) is None  # whole, it is read
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])  # a download cut short
    line = start_up_error(pytester, "--base-weights", str(path))
    assert line.startswith(f"ERROR: --base-weights {path}: not a readable HDF5 file, truncated or corrupt ("), line
    path.write_bytes(b"<html>404 Not Found</html>")  # what a failed download leaves
    line = start_up_error(pytester, "--base-weights", str(path))
    assert line == (f"ERROR: --base-weights {path}: not an HDF5 file (no HDF5 signature); expected Keras weights "
                    "saved as .h5"), line
