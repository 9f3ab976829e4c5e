"""A cell's adversarial_examples.npz: compact (8-bit clean images, the perturbation deflated) yet read
back bit for bit, and bounded by ``--keep-examples`` (a seeded sample, stated in the run)."""

from __future__ import annotations

import numpy as np

from helpers import FGM_SUITE, MODEL_NAME, run_robustness, session_run_id
from pytest_robustness.data import example_files as ef
from pytest_robustness.data.adversarial_sets import read_examples, read_examples_npz
from pytest_robustness.data.datasets import load_builtin_mnist


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _photos(n=6, size=32, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    x = pixels.astype(np.float32)
    x /= 255.0  # as every uint8 source is read (datasets._to_unit_float)
    return pixels, x


def test_uint8_sources_are_stored_as_uint8_and_fgm_examples_read_back_bit_for_bit(tmp_path):
    pixels, x = _photos()
    sign = np.sign(np.random.default_rng(1).normal(size=x.shape)).astype(np.float32)
    x_adv = np.clip(x + np.float32(8 / 255) * sign, 0, 1)
    ef.write_examples(tmp_path / "a.npz", x, x_adv, np.arange(6))
    with np.load(tmp_path / "a.npz") as raw:
        assert raw["x_clean_uint8"].dtype == np.uint8 and np.array_equal(raw["x_clean_uint8"], pixels)
        assert "x_adv" not in raw.files  # an old reader fails loudly instead of misreading
    back = read_examples(tmp_path / "a.npz")
    assert np.array_equal(_bits(back["x_clean"]), _bits(x)) and np.array_equal(_bits(back["x_adv"]), _bits(x_adv))
    assert back["x_adv"].dtype == back["x_clean"].dtype == np.float32


def test_float_sources_stay_float32_and_inexact_deltas_are_fixed_up(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((70, 4, 4, 1), dtype=np.float32)  # two blocks of BLOCK_IMAGES
    x_adv = rng.random((70, 4, 4, 1), dtype=np.float32) * np.float32(1e-3)  # x + (x_adv - x) rounds off x_adv
    assert ef.as_uint8(x) is None
    ef.write_examples(tmp_path / "f.npz", x, x_adv, np.zeros(70, int))
    with np.load(tmp_path / "f.npz") as raw:
        assert raw["x_clean"].dtype == np.float32 and raw["x_adv_fix_index"].max() >= ef.BLOCK_IMAGES * 16
    back = read_examples(tmp_path / "f.npz")
    assert np.array_equal(_bits(back["x_clean"]), _bits(x)) and np.array_equal(_bits(back["x_adv"]), _bits(x_adv))


def test_a_deployed_patch_keeps_its_pairing_and_a_sample_keeps_whole_pairs(tmp_path):
    _, x = _photos(n=10)
    source = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 7])  # augment: the originals, then patched copies
    modified = np.arange(12) >= 10
    x_adv = x[source].copy()
    x_adv[10:, :8, :8] = 0.5
    y = np.arange(10) % 3
    ef.write_examples(tmp_path / "full.npz", x, x_adv, y, source_index=source, modified=modified)
    with np.load(tmp_path / "full.npz") as raw:  # only the patch differs from its source
        assert 0 < np.count_nonzero(raw["x_adv_delta"]) <= 2 * 8 * 8 * 3
    assert np.array_equal(read_examples(tmp_path / "full.npz")["x_adv"], x_adv)
    kept = np.array([1, 3, 8])
    part = ef.subset(kept, x, x_adv, y, source, modified)
    ef.write_examples(tmp_path / "p.npz", **part)
    found = read_examples_npz(tmp_path / "p.npz")
    assert np.array_equal(found.x_clean, x[kept]) and np.array_equal(found.source_index, [0, 1, 2, 1])
    assert np.array_equal(found.x_adv, x_adv[[1, 3, 8, 10]]) and np.array_equal(found.modified, [0, 0, 0, 1])
    assert np.array_equal(found.y_adversarial, y[[1, 3, 8, 3]])


def test_files_of_the_previous_layout_read_the_same(tmp_path):
    _, x = _photos(n=3)
    np.savez(tmp_path / "old.npz", x_clean=x, x_adv=x[::-1], y_true=np.arange(3))
    back = read_examples(tmp_path / "old.npz")
    assert np.array_equal(back["x_clean"], x) and np.array_equal(back["x_adv"], x[::-1])


def test_the_default_keeps_small_sets_whole_and_samples_large_ones():
    assert ef.examples_to_keep(10_000, 28 * 28 * 4, None) == 10_000  # MNIST: 31 MB, all kept
    assert ef.examples_to_keep(1_000, 224 * 224 * 3 * 4, None) == ef.AUTO_KEEP_BYTES // (224 * 224 * 3 * 4) == 111
    assert ef.examples_to_keep(1_000, 224 * 224 * 3 * 4, 0) == 1_000 and ef.examples_to_keep(50, 4, 80) == 50
    a, b = ef.keep_sample(100, 30, seed=0), ef.keep_sample(100, 30, seed=0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 30 and ef.keep_sample(100, 100, 0) is None


def test_keep_examples_bounds_each_cells_file_and_says_so(pytester, trained_store, tmp_path):
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--keep-examples", "30", store=trained_store)
    result.assert_outcomes(passed=2)
    runs = trained_store.children(session_run_id(result))
    assert len(runs) == 2
    test_images = load_builtin_mnist(0).x_test[:100]
    for run in runs:
        assert run.data.params["kept_examples"] == "30" and run.data.params["samples"] == "100"
        examples = read_examples(trained_store.download(run.info.run_id, "adversarial_examples.npz",
                                                        tmp_path / run.info.run_id))
        kept = examples["kept_index"]
        assert len(kept) == 30 and np.array_equal(kept, np.sort(kept)) and kept.max() < 100
        # exactly the evaluation images the cell scored (the built-in MNIST is 8-bit: stored as uint8)
        assert np.array_equal(examples["x_clean"], test_images[kept]) and examples["x_adv"].shape == (30, 28, 28, 1)
    assert MODEL_NAME in runs[0].data.params["model_uri"]
