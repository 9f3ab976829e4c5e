"""Bad input fails at start-up: one ``ERROR: ...`` line, exit code 4, nothing trained or logged."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import FGM_SUITE, MODEL_NAME, run_robustness


def assert_usage_error(result: pytest.RunResult, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == [f"ERROR: {message}"], result.errlines
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def assert_nothing_created(pytester: pytest.Pytester) -> None:
    assert not (pytester.path / "mlflow.db").exists()
    assert not (pytester.path / "mlartifacts").exists()
    assert not (pytester.path / ".robustness_cache").exists()


ARCHITECTURES = "le_net, shallow_net, alex_net, resnet50, vgg16"
TRAIN_KEYS = "epochs, batch_size, learning_rate, optimizer, validation_split, samples"


@pytest.mark.parametrize("args, message", [
    (["--architecture", "lenet5"], f"--architecture lenet5: unknown architecture; choose from {ARCHITECTURES}"),
    (["--dataset", "no/such/dir"],
     "--dataset no/such/dir: not a built-in dataset (mnist), an existing Dioptra folder or an .npz file"),
    (["--dataset", "missing.npz"], "--dataset missing.npz: no such .npz file"),
    (["--train", "epochs=abc"], "--train 'epochs=abc': epochs must be a float"),
    (["--train", "epochs=0"], "--train epochs=0.0: expected a number > 0"),
    (["--train", "optimizer=adamw"], "--train optimizer='adamw': expected one of adam, rmsprop, adagrad, sgd"),
    (["--train", "lr=0.1"], f"--train 'lr=0.1': expected KEY=VALUE with KEY one of {TRAIN_KEYS}"),
    (["--train", "epochs"], f"--train 'epochs': expected KEY=VALUE with KEY one of {TRAIN_KEYS}"),
    (["--samples", "-3"], "--samples -3: expected 0 (all) or a positive count"),
    (["--samples", "many"], "--samples 'many': expected an integer"),
    (["--robustness-seed", "x"], "--robustness-seed 'x': expected an integer"),
    (["--keep-examples", "0"], "--keep-examples '0': expected a positive count of examples, 'all' or 'auto'"),
    (["--keep-examples", "some"], "--keep-examples 'some': expected a positive count of examples, 'all' or 'auto'"),
    (["--model-uri", "models:/onlyname"],
     "--model-uri models:/onlyname: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"),
    (["--model-uri", "runs:/abc/model"],
     "--model-uri runs:/abc/model: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"),
    (["--model-uri", "models:/my_model/1"],
     "--model-uri models:/my_model/1: cannot tell its architecture from the name; add --architecture NAME"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_bad_option_fails_at_start_up(pytester, args, message):
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert_usage_error(result, message)
    assert_nothing_created(pytester)


def test_bad_ini_value_names_the_ini_key(pytester):
    pytester.makepyprojecttoml('''
        [tool.pytest.ini_options]
        robustness_samples = "lots"
    ''')
    pytester.makepyfile(test_suite=FGM_SUITE)
    assert_usage_error(pytester.runpytest("-p", "no:cacheprovider"), "robustness_samples 'lots': expected an integer")


@pytest.mark.parametrize("content, message", [
    (b"not a zip file", "--dataset {path}: not a readable .npz file"),
    ({"x_train": np.zeros((3, 8, 8)), "y_train": np.zeros(3)},
     "--dataset {path}: missing arrays ['x_test', 'y_test']; expected ['x_train', 'y_train', 'x_test', 'y_test']"),
    ({"x_train": np.zeros((3, 8, 8)), "y_train": np.zeros(4), "x_test": np.zeros((2, 8, 8)), "y_test": np.zeros(2)},
     "--dataset {path}: x_train has shape (3, 8, 8) for 4 labels; expected (n, h, w[, c]) with n == len(y_train)"),
    ({"x_train": np.zeros((3, 8)), "y_train": np.zeros(3), "x_test": np.zeros((2, 8, 8)), "y_test": np.zeros(2)},
     "--dataset {path}: x_train has shape (3, 8) for 3 labels; expected (n, h, w[, c]) with n == len(y_train)"),
], ids=["not-zip", "missing-arrays", "length-mismatch", "not-images"])
def test_bad_npz_fails_at_start_up(pytester, content, message):
    path = pytester.path / "data.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, **content)
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--dataset", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith("ERROR: " + message.format(path=path)), errors
    assert_nothing_created(pytester)


def test_dioptra_folder_without_testing_fails_at_start_up(pytester):
    (pytester.path / "digits" / "training" / "0").mkdir(parents=True)
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--dataset", "digits")
    assert_usage_error(result, "--dataset digits: missing folder digits/testing "
                               "(expected training/<label>/*.png and testing/<label>/*.png)")
    assert_nothing_created(pytester)


@pytest.mark.parametrize("uri, reason", [
    (f"models:/{MODEL_NAME}/99", f"{MODEL_NAME} has no version 99 (versions: 1)"),
    (f"models:/{MODEL_NAME}@nope", f"{MODEL_NAME} has no alias @nope (aliases: "),
    ("models:/mnist_unknown_le_net/1", "no registered model named mnist_unknown_le_net"),
], ids=["version", "alias", "model"])
def test_unknown_registered_model_fails_at_start_up(pytester, trained_store, uri, reason):
    runs_before = len(trained_store.runs())
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = run_robustness(pytester, "--model-uri", uri, store=trained_store, tiny=False)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (error,) = [line for line in result.errlines if line.startswith("ERROR:")]
    assert error.startswith(f"ERROR: --model-uri {uri}: not found in the MLflow registry at {trained_store.uri}: {reason}")
    assert len(trained_store.runs()) == runs_before and len(trained_store.versions()) == 1


def test_model_uri_against_a_missing_database_does_not_create_it(pytester, tmp_path):
    db = tmp_path / "none" / "mlflow.db"
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--mlflow-uri", f"sqlite:///{db}",
                                "--model-uri", f"models:/{MODEL_NAME}/1")
    assert_usage_error(result, f"--model-uri models:/{MODEL_NAME}/1: not found in the MLflow registry at "
                               f"sqlite:///{db} (no such database file)")
    assert not db.exists() and not db.parent.exists()
