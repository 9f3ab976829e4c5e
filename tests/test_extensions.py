"""The public registration API: a project's conftest.py and an installed package extend the harness.

The worked example of the README (``examples/custom_attack``: a conftest registering an attack, a
defense and an architecture, a suite and a thresholds file) runs here beside a shipped suite, with
real training, MLflow runs, JUnit properties and thresholds. The registry belongs to each session.
"""

from __future__ import annotations

import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import session_run_id
from pytest_robustness import registry_scope
from pytest_robustness.errors import RobustnessUsageError
from pytest_robustness.registry import Registry, registry_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_attack"
QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def project(pytester: pytest.Pytester) -> Path:
    """The example project in pytester's folder, with the shipped FGM suite beside its own suite."""
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    shutil.copy(REPO / "robustness_suites" / "test_fgm.py", pytester.path / "robustness_suites")
    (pytester.path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")  # the project's rootdir
    return pytester.path


def run(pytester, store, *args):
    return pytester.runpytest("--architecture", "tiny_mlp", "--train", "epochs=5", "--train", "samples=600", "--samples", "100",
                              "--attack-backend", "art", "--mlflow-uri", store.uri, *QUIET, *args)


def junit(path: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(path).getroot()
    return {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")} for case in root.iter("testcase")}


def test_a_projects_attack_defense_and_architecture_run_like_built_ins(pytester, store):
    project(pytester)
    result = run(pytester, store, "--thresholds", "robustness.toml", "--junitxml", "report.xml",
                 "robustness_suites", "-k", "random_sign or (linf and not minimal)")
    result.assert_outcomes(passed=8)
    # The registered architecture was trained and registered like a built-in one.
    assert [v.version for v in store.versions("mnist_tiny_mlp")] == [1]
    runs = {r.info.run_name: r for r in store.children(session_run_id(result))}
    cell = runs["test_random_sign[tiny_mlp-eps0.3]"]
    assert cell.info.status == "FINISHED"
    assert cell.data.params["attack"] == "random_sign" and cell.data.params["random_sign.eps"] == "0.3"
    assert cell.data.params["model_uri"] == "models:/mnist_tiny_mlp/1"
    assert cell.data.metrics["l_inf_norm_max"] == pytest.approx(0.3, abs=1e-6)
    artifacts = {a.path for a in store.client.list_artifacts(cell.info.run_id)}
    assert {"adversarial_examples.npz", "distance_metrics.csv", "samples.png"} <= artifacts
    assert runs["test_random_sign_defended[tiny_mlp-eps0.3-feature_squeezing-adaptive]"].info.status == "FINISHED"
    squeezed = runs["test_random_sign_defended[tiny_mlp-eps0.3-feature_squeezing-oblivious]"]
    assert squeezed.data.params["defense"] == "feature_squeezing"
    assert squeezed.data.params["feature_squeezing.bit_depth"] == "4"
    assert "defended_accuracy" in squeezed.data.metrics
    assert "test_fgm[tiny_mlp-linf-eps0.3]" in runs  # the shipped suite on the project's architecture
    cases = junit(pytester.path / "report.xml")
    props = cases["test_random_sign[tiny_mlp-eps0.1]"]
    assert props["attack"] == "random_sign" and props["random_sign.eps"] == "0.1"
    assert 0.0 <= float(props["adversarial_accuracy"]) <= 1.0
    assert "random_sign eps0.3" in result.stdout.str()  # its row in the summary table

    # The thresholds file gates it by name: a floor it cannot reach fails the cell, naming the entry.
    (pytester.path / "strict.toml").write_text(textwrap.dedent('''
        [[thresholds]]
        attack = "random_sign"
        params = { eps = 0.3 }
        adversarial_accuracy = 0.999
    '''))
    strict = run(pytester, store, "--thresholds", "strict.toml", "robustness_suites", "-k", "test_random_sign and not defended")
    strict.assert_outcomes(passed=1, failed=1)
    assert "test_random_sign[tiny_mlp-eps0.3]: adversarial_accuracy" in strict.stdout.str()
    assert "< 0.9990 (strict.toml entry 1)" in strict.stdout.str()
    assert [v.version for v in store.versions("mnist_tiny_mlp")] == [1]  # reused, not retrained


def test_registered_names_are_validated_at_start_up_and_collection(pytester):
    project(pytester)
    (pytester.path / "typo.toml").write_text('[[thresholds]]\nattack = "random_sing"\nadversarial_accuracy = 0.1\n')
    result = pytester.runpytest("--thresholds", "typo.toml", *QUIET, "robustness_suites")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*attack = 'random_sing' is unknown; allowed: fgm, patch, pgd, cw_l2, deepfool, square, apgd, autoattack, random_sign, invariant, spatial_grid, corruption_errors"])
    (pytester.path / "robustness_suites" / "test_bad.py").write_text(
        "from pytest_robustness import attack_cases\n\n"
        "@attack_cases('random_sign', [dict(eps=2.0)])\ndef test_bad(robustness, params):\n    pass\n")
    result = pytester.runpytest("--collect-only", *QUIET, "robustness_suites/test_bad.py")
    result.stdout.fnmatch_lines(["*attack random_sign: eps=2.0 is invalid; expected a number in (0, 1]*"])


def test_each_session_has_its_own_registry(pytester, request):
    project(pytester)
    first = pytester.runpytest("--collect-only", "-q", *QUIET, "robustness_suites/test_custom.py")
    first.stdout.fnmatch_lines(["robustness_suites/test_custom.py::test_random_sign[[]le_net-eps0.1[]]"])
    # A second in-process session without the conftest knows only the built-ins.
    other = pytester.mkdir("other")
    (other / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    shutil.copy(EXAMPLE / "robustness_suites" / "test_custom.py", other / "test_custom.py")
    second = pytester.runpytest("--collect-only", *QUIET, "--rootdir", str(other), str(other / "test_custom.py"))
    second.stdout.fnmatch_lines(["*attack 'random_sign': unknown; choose from fgm, patch, pgd, cw_l2, deepfool, square, apgd, autoattack"])
    third = pytester.runpytest("--collect-only", *QUIET, "--rootdir", str(other), "--architecture", "tiny_mlp",
                               str(other / "test_custom.py"))
    assert third.ret == pytest.ExitCode.USAGE_ERROR
    third.stderr.fnmatch_lines(["*--architecture tiny_mlp: unknown architecture; choose from le_net, *"])
    # After the inner sessions (the failed one too), this outer session's registry is in force again.
    assert registry_scope.active() is registry_of(request.config)


def test_a_name_clash_fails_at_start_up_naming_both_registrations(pytester):
    pytester.makeconftest("""
        from pytest_robustness.params import numeric

        def pytest_robustness_register(registry):
            registry.add_attack("fgm", params={}, generate=lambda classifier, model, x, params: x)
    """)
    result = pytester.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*attack 'fgm' is registered twice: by pytest-robustness (built-in) and by "
                                 f"{pytester.path / 'conftest.py'}:4*"])
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text(textwrap.dedent("""
        def pytest_robustness_register(registry):
            registry.add_defense("blur", params={}, preprocessor=lambda params: None)
    """))
    pytester.makeconftest("""
        def pytest_robustness_register(registry):
            registry.add_defense("blur", params={}, preprocessor=lambda params: None)
    """)
    result = pytester.runpytest(*QUIET, "sub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = next(line for line in result.stderr.lines if "registered twice" in line)
    assert "defense 'blur' is registered twice" in line
    assert str(pytester.path / "conftest.py") in line and str(sub / "conftest.py") in line


def test_an_installed_package_registers_through_its_entry_point(pytester):
    site = pytester.mkdir("site")
    (site / "robust_extras.py").write_text(textwrap.dedent("""
        from pytest_robustness.attacks import art_attack
        from pytest_robustness.params import numeric

        def register(registry):
            registry.add_attack("deepfool_quick", generate=art_attack(
                "art.attacks.evasion.DeepFool", params={"max_iter": numeric(5, 1, integer=True, id_prefix="iter")},
                verbose=False))
    """))
    dist = site / "robust_extras-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: robust-extras\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pytest_robustness]\nextras = robust_extras:register\n")
    pytester.syspathinsert(site)
    pytester.makepyfile(test_extra="""
        from pytest_robustness import attack_cases

        @attack_cases("deepfool_quick", [dict(max_iter=3)])
        def test_extra(robustness, architecture, params):
            pass
    """)
    result = pytester.runpytest("--collect-only", "-q", *QUIET, "--architecture", "shallow_net")
    result.stdout.fnmatch_lines(["test_extra.py::test_extra[shallow_net-iter3]"])
    # Its origin is named in a clash: the entry point and its distribution.
    pytester.makeconftest("""
        def pytest_robustness_register(registry):
            registry.add_attack("deepfool_quick", params={}, generate=lambda classifier, model, x, params: x)
    """)
    result = pytester.runpytest("--collect-only", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*attack 'deepfool_quick' is registered twice: by *conftest.py:2 and by "
                                 "*robust_extras.py:6 (entry point extras = robust_extras:register of robust-extras 0.1)*"])


def test_a_registered_dataset_is_selected_by_name(pytester):
    pytester.makeconftest("""
        import numpy as np
        from pytest_robustness.params import numeric

        def stripes(seed, n):
            rng = np.random.default_rng(seed)
            y = rng.integers(0, 2, size=n)
            x = np.zeros((n, 8, 8, 1), np.uint8)
            x[y == 1, ::2] = 255
            return {"x_train": x[: n // 2], "y_train": y[: n // 2], "x_test": x[n // 2:], "y_test": y[n // 2:],
                    "class_names": ["plain", "striped"]}

        def pytest_robustness_register(registry):
            registry.add_dataset("stripes", stripes, params={"n": numeric(40, 2, integer=True)})
    """)
    pytester.makepyfile(test_data="""
        def test_data(robustness_dataset):
            assert robustness_dataset.x_train.shape == (20, 8, 8, 1)
            assert robustness_dataset.x_train.max() == 1.0 and robustness_dataset.class_names == ("plain", "striped")
    """)
    result = pytester.runpytest("--dataset", "stripes", *QUIET)
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("--dataset", "stripez", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dataset stripez: not a built-in dataset (mnist, stripes)*"])


def test_a_defense_gives_its_tensorflow_form_for_compiled_adaptive_cells():
    registry = Registry()
    form = lambda params: (lambda: (lambda x: x))  # noqa: E731
    defense = registry.add_defense("identity", params={}, preprocessor=lambda params: None, compiled=form)
    assert defense.compiled is form and "apply_predict" in defense.params
    with pytest.raises(RobustnessUsageError, match="compiled= is the TensorFlow form of a preprocessor"):
        registry.add_defense("trained", params={}, train=lambda *a, **k: None, compiled=form)
