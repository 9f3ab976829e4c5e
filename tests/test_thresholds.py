"""The thresholds file: validation at start-up, precedence of bounds, checks through MLflow's validator."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.options.thresholds import Bound, Cell, check_bounds, load_table


def table(tmp_path: Path, text: str, max_regression: float = 0.02):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return load_table(path, tmp_path, max_regression)


CONFIG = """
[[thresholds]]
attack = "fgm"
adversarial_accuracy = 0.05

[[thresholds]]
attack = "fgm"
params = { eps = 0.1 }
adversarial_accuracy = 0.6

[[thresholds]]
attack = "fgm"
params = { eps = 0.1 }
architecture = "le_net"
adversarial_accuracy = 0.7
max_regression = 0.01

[[thresholds]]
attack = "patch"
defense = "jpeg_compression"
defended_accuracy = { relative_to = "clean_accuracy", ratio = 0.8 }
attack_success_rate = { max = 0.5 }
"""


def floors(bounds):
    return {(b.metric, b.op): (b.value, b.source) for b in bounds}


def test_most_specific_entry_wins_per_metric_and_suite_defaults_fill_the_rest(tmp_path):
    t = table(tmp_path, CONFIG)
    values = {"clean_accuracy": 0.9}
    le_net = floors(t.bounds_for(Cell("fgm", {"eps": 0.1, "norm": "inf"}, "le_net"), values, {"clean_accuracy": 0.8}))
    assert le_net[("adversarial_accuracy", ">=")] == (0.7, "thresholds.toml entry 3")
    assert le_net[("clean_accuracy", ">=")] == (0.8, "suite default")
    shallow = floors(t.bounds_for(Cell("fgm", {"eps": 0.1}, "shallow_net"), values, {}))
    assert shallow[("adversarial_accuracy", ">=")][0] == 0.6
    other_eps = floors(t.bounds_for(Cell("fgm", {"eps": 0.3}, "le_net"), values, {"adversarial_accuracy": 0.5}))
    assert other_eps[("adversarial_accuracy", ">=")] == (0.05, "thresholds.toml entry 1")  # config beats suite
    assert t.max_regression_for(Cell("fgm", {"eps": 0.1}, "le_net")) == (0.01, "thresholds.toml entry 3")
    assert t.max_regression_for(Cell("fgm", {"eps": 0.3}, "le_net")) == (0.02, "--max-regression")


def test_relative_and_ceiling_bounds(tmp_path):
    t = table(tmp_path, CONFIG)
    cell = Cell("patch", {}, "le_net", "jpeg_compression", "adaptive")
    values = {"clean_accuracy": 0.9, "defended_accuracy": 0.7, "attack_success_rate": 0.6}
    bounds = t.bounds_for(cell, values, {})
    failures = check_bounds(values, bounds)
    assert any(f.startswith("defended_accuracy 0.7000 < 0.7200 (thresholds.toml entry 4: 0.8 x clean_accuracy")
               for f in failures)
    assert "attack_success_rate 0.6000 > 0.5000 (thresholds.toml entry 4)" in failures
    assert t.bounds_for(Cell("patch", {}, "le_net"), values, {}) == []  # undefended: entry 4 does not apply


def test_check_bounds_reports_every_violation_and_missing_or_nan_metrics():
    bounds = [Bound("a", ">=", 0.5, "suite default"), Bound("b", ">=", 0.5, "x"), Bound("c", ">=", 0.1, "y"),
              Bound("d", "<=", 0.2, "z")]
    failures = check_bounds({"a": 0.4, "b": math.nan, "d": 0.1}, bounds)
    assert failures == ["a 0.4000 < 0.5000 (suite default)", "b nan, needs >= 0.5000 (x)",
                        "c missing, needs >= 0.1000 (y)"]
    assert check_bounds({"a": 0.5}, [Bound("a", ">=", 0.5, "s")]) == []  # bounds are inclusive


@pytest.mark.parametrize("text, message", [
    ('[[thresholds]]\nattack = "fgsm"\n', "thresholds entry 1: attack = 'fgsm' is unknown; allowed: fgm"),
    ('[[thresholds]]\nattack = "fgm"\nadv_acc = 0.5\n', "thresholds entry 1: unknown key 'adv_acc'"),
    ('[[thresholds]]\nattack = "fgm"\nparams = { epsilon = 0.1 }\n', "unknown fgm parameter(s) epsilon; allowed: "),
    ('[[thresholds]]\nparams = { eps = 0.1 }\n', "params need an attack"),
    ('[[thresholds]]\narchitecture = "lenet5"\n', "architecture = 'lenet5' is unknown; allowed: le_net"),
    ('[[thresholds]]\ndefense = "jpeg"\n', "defense = 'jpeg' is unknown; allowed: none, "),
    ('[[thresholds]]\nclean_accuracy = "high"\n', "clean_accuracy = 'high'; expected a number (floor)"),
    ('[[thresholds]]\nmax_regression = -1\n', "max_regression = -1; expected a number >= 0"),
    ('[[thresholds]]\nadversarial_accuracy = 1.5\n',
     "thresholds entry 1: adversarial_accuracy = 1.5; expected a value [0, 1], the range of adversarial_accuracy"),
    ('[[thresholds]]\nclean_auc = { max = -0.1 }\n', "clean_auc = { max = -0.1 }; expected a value [0, 1]"),
    ('[[thresholds]]\naccuracy_gain = -1.5\n', "accuracy_gain = -1.5; expected a value [-1, 1]"),
    ('[[thresholds]]\naccuracy_below_control = -1.5\n', "accuracy_below_control = -1.5; expected a value [-1, 1]"),
    ('[[thresholds]]\ncosine_similarity_min = { min = -2 }\n', "cosine_similarity_min = { min = -2 }; expected a value [-1, 1]"),
    ('[[thresholds]]\nl_inf_norm_max = { max = -0.01 }\n', "l_inf_norm_max = { max = -0.01 }; expected a value >= 0"),
    ('[[thresholds]]\nadversarial_accuracy = nan\n', "adversarial_accuracy = nan; expected a value [0, 1]"),
    ('[[thresholds]]\nmax_regression = true\n', "max_regression = True; expected a number >= 0"),
    ('thresholds = 3\n', "'thresholds' must be an array of tables"),
    ('[[thresholds]\n', "not valid TOML"),
])
def test_bad_files_fail_naming_file_entry_and_allowed_names(tmp_path, text, message):
    with pytest.raises(RobustnessUsageError) as excinfo:
        table(tmp_path, text)
    assert str(tmp_path / "thresholds.toml") in str(excinfo.value)
    assert message in str(excinfo.value)


def test_a_patch_may_be_allowed_to_do_a_little_worse_than_its_noise_control(tmp_path):
    """The control differences are differences of accuracies: a floor below 0 tolerates a patch no better than
    noise on a model where it is (the README's cnn at scale 0.3)."""
    t = table(tmp_path, '[[thresholds]]\nattack = "patch"\naccuracy_below_control = -0.05\n'
                        'targeted_success_over_control = { min = -0.02 }\n')
    bounds = floors(t.bounds_for(Cell("patch", {}, "cnn"), {}, {}))
    assert bounds[("accuracy_below_control", ">=")][0] == -0.05
    assert bounds[("targeted_success_over_control", ">=")][0] == -0.02


def test_pyproject_tool_robustness_is_the_default(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[[tool.robustness.thresholds]]\nattack = "fgm"\nclean_accuracy = 0.9\n')
    t = load_table(None, tmp_path, 0.05)
    assert floors(t.bounds_for(Cell("fgm", {}, "le_net"), {}, {}))[("clean_accuracy", ">=")][0] == 0.9
    assert t.default_max_regression == 0.05
    assert load_table(None, tmp_path / "nowhere", 0.02).entries == []


def test_bad_thresholds_file_stops_pytest_at_start_up(pytester: pytest.Pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    (pytester.path / "t.toml").write_text('[[thresholds]]\nattack = "fgm"\nadversarial_acc = 0.5\n')
    result = pytester.runpytest("--thresholds", "t.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *t.toml: thresholds entry 1: unknown key 'adversarial_acc'*"])
    missing = pytester.runpytest("--thresholds", "nope.toml")
    missing.stderr.fnmatch_lines(["ERROR: --thresholds *nope.toml: no such file"])
