"""Options, ini keys and markers: shown in help, honoured from ``[tool.pytest.ini_options]``."""

from __future__ import annotations

import json

import numpy as np
import pytest

# A test that writes the settings the plugin resolved, for the outer test to read.
DUMP_SETTINGS = '''
import dataclasses, json

def test_dump(robustness_settings):
    s = robustness_settings
    out = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    out["training"] = s.training.as_dict()
    out["training_explicit"] = sorted(s.training_explicit)
    out["cache_dir"] = str(s.cache_dir)
    with open("settings.json", "w") as handle:
        json.dump(out, handle, default=str)
'''


def resolved_settings(pytester: pytest.Pytester, *args: str) -> dict:
    pytester.makepyfile(test_dump=DUMP_SETTINGS)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    return json.loads((pytester.path / "settings.json").read_text())


def test_help_lists_every_option_and_ini_key(pytester):
    result = pytester.runpytest("--help")
    assert result.ret == 0
    out = result.stdout.str()
    assert "adversarial robustness (pytest-robustness):" in out
    for option in ("--gpu", "--dataset=DATASET", "--architecture=NAME", "--model-uri=[ARCH=]URI", "--experiment=",
                   "--model-output=KIND", "--input-range=LOW,HIGH", "--model-file=PATH", "--trust-model-code",
                   "--mlflow-uri=URI", "--robustness-seed=SEED", "--train=KEY=VALUE", "--samples=N",
                   "--attack-backend={compiled,art}", "--robustness-cache={readwrite,read,write,off}",
                   "--image-size=H,W,C", "--max-regression=DELTA"):
        assert option in out, option
    for key in ("robustness_dataset", "robustness_architectures", "robustness_experiment", "robustness_seed",
                "robustness_train", "robustness_samples", "robustness_attack_backend", "robustness_cache",
                "robustness_model_output", "robustness_input_range", "robustness_trust_model_code",
                "robustness_image_size", "robustness_max_regression"):
        assert f"  {key} (" in out, key


def test_markers_are_registered(pytester):
    result = pytester.runpytest("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "@pytest.mark.robustness: a robustness suite*",
        "@pytest.mark.fgm: Fast Gradient Method evasion attack cells",
        "@pytest.mark.spatial: rotations and translations*",
        "@pytest.mark.corruption: Hendrycks & Dietterich's common corruptions*",
        "@pytest.mark.gpu: needs a GPU: skipped unless --gpu",
        "@pytest.mark.slow: slow on CPU*",
        *[f"@pytest.mark.{arch}: cells on the {arch} architecture"
          for arch in ("le_net", "shallow_net", "alex_net", "resnet50", "vgg16")],
    ], consecutive=False)


def test_defaults(pytester):
    s = resolved_settings(pytester)
    assert s["dataset"] == "mnist" and s["experiment"] == "mnist"
    assert s["architectures"] == ["le_net", "shallow_net"]
    assert s["seed"] == 0 and s["samples"] == 0 and s["gpu"] is False
    assert s["attack_backend"] == "compiled" and s["cache_mode"] == "readwrite"
    assert s["training"] == {"epochs": 3.0, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam",
                             "validation_split": 0.2, "samples": 0}
    assert s["mlflow_uri"] == f"sqlite:///{pytester.path / 'mlflow.db'}"
    assert s["cache_dir"] == str(pytester.path / ".robustness_cache")


@pytest.fixture
def tiny_npz(pytester):
    rng = np.random.default_rng(0)
    np.savez(pytester.path / "blobs.npz", x_train=rng.random((8, 6, 6)), y_train=np.arange(8) % 2,
             x_test=rng.random((4, 6, 6)), y_test=np.arange(4) % 2)
    return pytester.path / "blobs.npz"


def test_ini_values_are_honoured(pytester, tiny_npz):
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_dataset = "blobs.npz"
        robustness_architectures = "shallow_net le_net"
        robustness_experiment = "exp-from-ini"
        robustness_seed = "7"
        robustness_train = "epochs=2 batch_size=16 optimizer=sgd learning_rate=0.01 samples=300"
        robustness_samples = "25"
        robustness_attack_backend = "art"
        robustness_cache = "off"
    ''')
    s = resolved_settings(pytester)
    assert s["dataset"] == "blobs.npz" and s["experiment"] == "exp-from-ini"
    assert s["architectures"] == ["shallow_net", "le_net"]
    assert s["seed"] == 7 and s["samples"] == 25
    assert s["attack_backend"] == "art" and s["cache_mode"] == "off"
    assert s["training"] == {"epochs": 2.0, "batch_size": 16, "learning_rate": 0.01, "optimizer": "sgd",
                             "validation_split": 0.2, "samples": 300}
    assert s["training_explicit"] == ["batch_size", "epochs", "learning_rate", "optimizer", "samples"]


def test_command_line_wins_over_ini(pytester, tiny_npz):
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_architectures = "le_net"
        robustness_seed = "7"
        robustness_train = "epochs=2 batch_size=16"
        robustness_samples = "25"
        robustness_attack_backend = "art"
    ''')
    s = resolved_settings(pytester, "--architecture", "shallow_net", "--robustness-seed", "3", "--train", "epochs=5",
                          "--samples", "9", "--attack-backend", "compiled", "--dataset", str(tiny_npz),
                          "--experiment", "cli", "--mlflow-uri", "sqlite:///elsewhere.db")
    assert s["architectures"] == ["shallow_net"] and s["seed"] == 3 and s["samples"] == 9
    assert s["training"]["epochs"] == 5.0 and s["training"]["batch_size"] == 16  # later --train wins per key
    assert s["attack_backend"] == "compiled" and s["experiment"] == "cli"
    assert s["dataset"] == str(tiny_npz) and s["mlflow_uri"] == "sqlite:///elsewhere.db"


def test_experiment_defaults_to_dataset_name(pytester, tiny_npz):
    assert resolved_settings(pytester, "--dataset", str(tiny_npz))["experiment"] == "blobs"


def test_architecture_fixture_parametrises_with_markers(pytester):
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_architectures = "le_net shallow_net resnet50"
    ''')
    pytester.makepyfile('''
        import pytest

        pytestmark = pytest.mark.robustness  # a robustness suite (a test using our fixtures is one too)

        @pytest.mark.parametrize("eps", [0.1, 0.3])
        def test_cell(architecture, eps):
            pass
    ''')
    def collected(*args):
        result = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider", *args)
        return [line.partition("::")[2] for line in result.outlines if "::test_cell[" in line]

    assert collected() == ["test_cell[le_net-0.1]", "test_cell[le_net-0.3]", "test_cell[shallow_net-0.1]",
                           "test_cell[shallow_net-0.3]", "test_cell[resnet50-0.1]", "test_cell[resnet50-0.3]"]
    assert collected("-m", "shallow_net") == ["test_cell[shallow_net-0.1]", "test_cell[shallow_net-0.3]"]
    assert collected("-m", "not slow") == ["test_cell[le_net-0.1]", "test_cell[le_net-0.3]",
                                           "test_cell[shallow_net-0.1]", "test_cell[shallow_net-0.3]"]


def test_repeated_architecture_is_deduplicated(pytester):
    s = resolved_settings(pytester, "--architecture", "le_net", "--architecture", "le_net")
    assert s["architectures"] == ["le_net"]


def test_image_size_from_ini_and_command_line(pytester):
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_image_size = "28, 28, 1"
    ''')
    assert resolved_settings(pytester)["image_size"] == [28, 28, 1]
    assert resolved_settings(pytester, "--image-size", "28,28,1", "--max-regression", "0.05")["max_regression"] == 0.05
