"""No test holds more than two copies of its dataset.

One inner session on the built-in MNIST (its 1,000 test images attacked, cache off so
every cell computes): a first round of cells compiles and warms everything up, then
each measured cell runs under ``tracemalloc`` (numpy registers its array memory with
it), from a baseline with the dataset and model already loaded. The measured peak is
everything the cell allocated on the Python side: adversarial examples, deployed sets,
predictions, distance tables, the examples file it writes, ART's copies.
"""

from __future__ import annotations

import json

from helpers import TINY, run_robustness

SUITE = '''
import json
import tracemalloc

import pytest

CASES = {  # case -> (warm-up parameter, measured parameter): different, so nothing is shared
    "fgm": (0.11, 0.21), "jpeg_oblivious": (0.12, 0.22), "noise_adaptive": (0.13, 0.23), "patch_augment": (0.31, 0.41),
}


def cell(robustness, case, value):
    if case == "patch_augment":
        return robustness.attack("patch", max_iter=2, patch_scale=value, patch_deployment_method="augment")
    result = robustness.attack("fgm", eps=value)
    if case == "jpeg_oblivious":
        return robustness.defend(result, "jpeg_compression", "oblivious")
    if case == "noise_adaptive":
        return robustness.defend(result, "gaussian_augmentation", "adaptive")
    return result


@pytest.mark.parametrize("case", CASES)
def test_warm_up(robustness, case):
    cell(robustness, case, CASES[case][0])


@pytest.mark.parametrize("case", CASES)
def test_measure(robustness, case):
    data = robustness.dataset
    x, _ = robustness.eval_set()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = cell(robustness, case, CASES[case][1])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    with open(f"memory-{case}.json", "w") as handle:
        json.dump({"peak": peak, "dataset": data.x_train.nbytes + data.x_test.nbytes, "eval_set": x.nbytes,
                   "adversarial_set": result.x_adv.nbytes}, handle)
'''


def test_no_cell_holds_more_than_two_copies_of_its_dataset(pytester, trained_store):
    pytester.makepyfile(test_memory_suite=SUITE)
    result = run_robustness(pytester, "--samples", "1000", "--attack-backend", "compiled", "--robustness-cache", "off",
                            store=trained_store)
    result.assert_outcomes(passed=8)
    assert "--samples" in TINY  # overridden above: megabyte-sized arrays, not Python objects, dominate the peak
    measured = {case: json.loads((pytester.path / f"memory-{case}.json").read_text())
                for case in ("fgm", "jpeg_oblivious", "noise_adaptive", "patch_augment")}
    for case, m in measured.items():
        assert m["eval_set"] == 1000 * 28 * 28 * 4 and m["dataset"] == 5000 * 28 * 28 * 4
        # The bound: the dataset the test runs on (train and test images), two copies at most.
        assert m["peak"] <= 2 * m["dataset"], (case, m)
    # Where the arithmetic is ours (no ART attack or defense), tighter: besides the adversarial set the
    # cell produces (for augment: the clean images and the patched ones), at most one more copy of the
    # attacked images at any moment.
    for case in ("fgm", "patch_augment"):
        m = measured[case]
        assert m["peak"] <= m["adversarial_set"] + m["eval_set"], (case, m)
    assert measured["patch_augment"]["adversarial_set"] == 2 * measured["patch_augment"]["eval_set"]
