"""Parameter validation of the patch attack and the defenses: one line naming the parameter and range."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_robustness.attacks import get_attack
from pytest_robustness.defenses.catalog import get_defense
from pytest_robustness.errors import RobustnessUsageError

PATCH = get_attack("patch")
JPEG = get_defense("jpeg_compression")


def rejects(resolve, values, *words):
    with pytest.raises(RobustnessUsageError) as info:
        resolve(values)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@given(st.floats(0, 1, exclude_min=True))
def test_patch_scale_in_range_accepted(scale):
    assert PATCH.resolve({"patch_scale": scale})["patch_scale"] == scale


@given(st.one_of(st.floats(1, 1e6, exclude_min=True), st.floats(-1e6, 0)))
def test_patch_scale_out_of_range_rejected(scale):
    rejects(PATCH.resolve, {"patch_scale": scale}, "patch_scale", "(0, 1]")


@given(st.one_of(st.floats(180, 1e6, exclude_min=True), st.floats(-1e6, 0, exclude_max=True)))
def test_rotation_max_outside_0_180_rejected(rotation):
    rejects(PATCH.resolve, {"rotation_max": rotation}, "rotation_max", "[0, 180]")


@given(st.one_of(st.floats(1, 1e6, exclude_min=True), st.floats(-1e6, 0, exclude_max=True)))
def test_application_rate_outside_unit_interval_rejected(rate):
    rejects(PATCH.resolve, {"patch_application_rate": rate}, "patch_application_rate", "[0, 1]")


@given(st.floats(0.01, 0.99), st.floats(0, 0.98))
def test_scale_min_must_be_below_scale_max(scale_max, gap):
    scale_min = min(0.999, scale_max + gap)  # scale_min >= scale_max
    rejects(PATCH.resolve, {"scale_min": scale_min, "scale_max": scale_max}, "scale_min", "scale_max")


@given(st.integers(1, 100))
def test_jpeg_quality_in_range_accepted(quality):
    assert JPEG.resolve({"quality": quality})["quality"] == quality


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=101)))
def test_jpeg_quality_out_of_range_rejected(quality):
    rejects(JPEG.resolve, {"quality": quality}, "quality", "[1, 100]")


def test_unknown_defense_and_parameter_and_threat_model():
    rejects(get_defense, "median_filter", "median_filter", "jpeg_compression")
    rejects(JPEG.resolve, {"qualty": 5}, "qualty", "quality")
    from pytest_robustness.defenses.catalog import check_threat_model

    rejects(check_threat_model, "whitebox", "whitebox", "oblivious", "adaptive")


def test_gaussian_augmentation_only_augments_on_fit():
    rejects(get_defense("gaussian_augmentation").resolve, {"augmentation": True}, "augmentation", "apply_predict")


def test_patch_target_outside_classes_rejected_when_drawn():
    from pytest_robustness.attacks.patch import patch_target

    assert patch_target({"patch_target": -1}, 0, 10) == patch_target({"patch_target": -1}, 0, 10)
    assert {patch_target({"patch_target": -1}, s, 10) for s in range(40)} == set(range(10))
    rejects(lambda v: patch_target(v, 0, 10), {"patch_target": 10}, "patch_target", "[0, 9]")


@pytest.mark.parametrize("suite, words", [
    ('attack_cases("patch", [dict(patch_scale=1.5)])', ["patch_scale=1.5", "(0, 1]"]),
    ('attack_cases("patch", [dict(scale_min=0.5, scale_max=0.5)])', ["scale_min=0.5", "scale_max=0.5"]),
    ('attack_cases("patch", [dict(rotation_max=200)])', ["rotation_max=200", "[0, 180]"]),
    ('attack_cases("patch", [dict(patch_application_rate=-0.1)])', ["patch_application_rate=-0.1", "[0, 1]"]),
    ('defense_cases([("jpeg_compression", dict(quality=0))])', ["quality=0", "[1, 100]"]),
    ('defense_cases(["median_filter"])', ["median_filter", "unknown"]),
])
def test_invalid_cells_fail_at_collection(pytester, suite, words):
    pytester.makepyfile(test_suite=f"""
        from pytest_robustness import attack_cases, defense_cases

        @{suite}
        def test_cell(params=None, defense=None):
            pass
    """)
    result = pytester.runpytest_subprocess("--collect-only", "-q")  # no TF/numpy re-imports in-process
    assert result.ret != 0
    output = result.stdout.str()
    assert "RobustnessUsageError" in output or "ERROR" in output
    for word in words:
        assert word in output
    assert not re.search(r"\d+ tests? collected", output)
