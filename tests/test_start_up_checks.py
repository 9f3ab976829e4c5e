"""Every bad input fails at start-up: one ``ERROR:`` line naming the file, option or entry, exit code 4,
and no MLflow store, artifact folder or cache created (issue 11's list and the inputs handled before)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from helpers import FGM_SUITE

Case = Callable[[Path], tuple[list[str], str]]  # writes its input under the folder: (args, expected line)
CASES: dict[str, Case] = {}


def case(name: str):
    def register(build: Case) -> Case:
        CASES[name] = build
        return build
    return register


def folder(root: Path, sizes=((8, 8),), classes=("a", "b"), test_classes=None, suffix=".png") -> Path:
    """A small valid Dioptra folder of real images: the sizes cycle over each class's files."""
    rng = np.random.default_rng(0)
    for split, names in (("training", classes), ("testing", test_classes or classes)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                height, width = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(
                    root / split / name / f"{i:03d}{suffix}")
    return root


def npz(path: Path, **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.random((8, 6, 6)).astype(np.float32), y_train=np.arange(8) % 4,
                  x_test=rng.random((4, 6, 6)).astype(np.float32), y_test=np.arange(4) % 4)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def thresholds(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


# -- issue 11's list -----------------------------------------------------------------------------
@case("folder-unreadable-png")
def _(tmp: Path):
    root = folder(tmp / "digits")
    (root / "training" / "a" / "broken.png").write_bytes(b"not a png at all")
    return ["--dataset", "digits"], "--dataset: digits/training/a/broken.png is not a readable image (cannot identify"


@case("folder-truncated-png")
def _(tmp: Path):
    root = folder(tmp / "digits", sizes=((32, 32),))
    target = root / "testing" / "b" / "001.png"
    target.write_bytes(target.read_bytes()[:60])
    return ["--dataset", "digits"], "--dataset: digits/testing/b/001.png is not a readable image"


@case("folder-testing-class-unknown")
def _(tmp: Path):
    folder(tmp / "digits", classes=("a",), test_classes=("a", "b"))
    return ["--dataset", "digits"], ("--dataset digits: testing labels ['b'] do not exist under training/ "
                                     "(training classes: a)")


@case("folder-two-sizes")
def _(tmp: Path):
    folder(tmp / "digits", sizes=((8, 8), (10, 12)))
    return ["--dataset", "digits"], ("--dataset digits: images of different sizes: digits/training/a/000.png is 8x8 "
                                     "and digits/training/a/001.png is 10x12 (height x width); "
                                     "give --image-size H,W,C to resize them")


@case("npz-nan-pixel")
def _(tmp: Path):
    x = np.random.default_rng(1).random((4, 6, 6)).astype(np.float32)
    x[2, 3, 3] = np.nan
    npz(tmp / "d.npz", x_test=x)
    return ["--dataset", "d.npz"], ("--dataset d.npz: x_test has NaN or infinite pixels (first in image 2); "
                                    "expected uint8, or floats in [0, 1] or [0, 255]")


@case("npz-negative-pixels")
def _(tmp: Path):
    x = np.random.default_rng(1).random((8, 6, 6)).astype(np.float32) - 0.5
    npz(tmp / "d.npz", x_train=x)
    return ["--dataset", "d.npz"], "--dataset d.npz: x_train has negative pixels (min -0."


@case("npz-test-label-unknown")
def _(tmp: Path):
    npz(tmp / "d.npz", y_test=np.array([0, 1, 7, 2]))
    return ["--dataset", "d.npz"], ("--dataset d.npz: y_test has label 7 (image 2), which y_train does not have "
                                    "(training labels: 0, 1, 2, 3)")


@case("threshold-out-of-range")
def _(tmp: Path):
    thresholds(tmp / "gate.toml", '[[thresholds]]\nattack = "fgm"\nadversarial_accuracy = 1.5\n')
    return ["--thresholds", "gate.toml"], (f"{tmp / 'gate.toml'}: thresholds entry 1: adversarial_accuracy = 1.5; "
                                           "expected a value [0, 1], the range of adversarial_accuracy")


# -- more data checks ----------------------------------------------------------------------------
@case("npz-non-integer-labels")
def _(tmp: Path):
    npz(tmp / "d.npz", y_train=np.array([0, 1, 2, 3, 0.5, 1, 2, 3]))
    return ["--dataset", "d.npz"], ("--dataset d.npz: y_train has a non-integer label 0.5 (image 4); "
                                    "expected integer class indices")


@case("npz-int64-pixels")
def _(tmp: Path):
    npz(tmp / "d.npz", x_train=np.zeros((8, 6, 6), dtype=np.int64))
    return ["--dataset", "d.npz"], "--dataset d.npz: x_train has dtype int64; expected uint8, or floats in [0, 1] or [0, 255]"


@case("npz-pixels-above-255")
def _(tmp: Path):
    npz(tmp / "d.npz", x_test=np.full((4, 6, 6), 300.0, dtype=np.float32))
    return ["--dataset", "d.npz"], "--dataset d.npz: x_test has pixels above 255 (max 300, first in image 0)"


@case("npz-image-shapes-differ")
def _(tmp: Path):
    npz(tmp / "d.npz", x_test=np.zeros((4, 7, 7), dtype=np.float32))
    return ["--dataset", "d.npz"], ("--dataset d.npz: x_train images are (6, 6, 1) but x_test images are (7, 7, 1) "
                                    "(height, width, channels); expected one image shape")


@case("npz-from-ini")
def _(tmp: Path):
    npz(tmp / "d.npz", y_test=np.array([0, 1, 9, 2]))
    (tmp / "pytest.ini").write_text("[pytest]\nrobustness_dataset = d.npz\n")
    return [], "robustness_dataset d.npz: y_test has label 9 (image 2), which y_train does not have"


@case("threshold-ceiling-out-of-range")
def _(tmp: Path):
    thresholds(tmp / "gate.toml", '[[thresholds]]\nattack = "fgm"\nl_2_norm = { max = -0.5 }\n')
    return ["--thresholds", "gate.toml"], (f"{tmp / 'gate.toml'}: thresholds entry 1: l_2_norm = {{ max = -0.5 }}; "
                                           "expected a value >= 0, the range of l_2_norm")


# -- options and ini values ------------------------------------------------------------------------
IMAGE_SIZE = "expected H,W,C: height and width > 0, C one of 1, 3, 4 (e.g. 28,28,1)"
OPTION_CASES = {
    "image-size-two-numbers": (["--image-size", "28,28"], f"--image-size '28,28': {IMAGE_SIZE}"),
    "image-size-two-channels": (["--image-size", "28,28,2"], f"--image-size '28,28,2': {IMAGE_SIZE}"),
    "image-size-builtin": (["--image-size", "32,32,3"],
                           "--image-size 32,32,3: the built-in mnist images are 28,28,1; "
                           "--image-size resizes Dioptra folders only"),
    "attack-backend-choice": (["--attack-backend", "torch"], "--attack-backend 'torch': expected one of compiled, art"),
    "cache-choice": (["--robustness-cache", "sometimes"],
                     "--robustness-cache 'sometimes': expected one of readwrite, read, write, off"),
    "max-regression-text": (["--max-regression", "lots"], "--max-regression 'lots': expected a number >= 0"),
    "max-regression-negative": (["--max-regression", "-0.1"], "--max-regression '-0.1': expected a number >= 0"),
    "max-regression-nan": (["--max-regression", "nan"], "--max-regression 'nan': expected a number >= 0"),
    "seed-negative": (["--robustness-seed", "-1"], "--robustness-seed -1: expected an integer in [0, 2**32 - 1]"),
    "train-infinite-epochs": (["--train", "epochs=inf"], "--train epochs=inf: expected a number > 0"),
    # handled before this issue
    "architecture": (["--architecture", "lenet5"], "--architecture lenet5: unknown architecture; choose from "),
    "dataset-missing": (["--dataset", "no/such/dir"], "--dataset no/such/dir: not a built-in dataset (mnist)"),
    "npz-missing": (["--dataset", "missing.npz"], "--dataset missing.npz: no such .npz file"),
    "train-not-a-number": (["--train", "epochs=abc"], "--train 'epochs=abc': epochs must be a float"),
    "train-unknown-key": (["--train", "lr=0.1"], "--train 'lr=0.1': expected KEY=VALUE with KEY one of "),
    "samples-negative": (["--samples", "-3"], "--samples -3: expected 0 (all) or a positive count"),
    "samples-text": (["--samples", "many"], "--samples 'many': expected an integer"),
    "seed-text": (["--robustness-seed", "x"], "--robustness-seed 'x': expected an integer"),
    "model-uri-form": (["--model-uri", "runs:/abc/model"], "--model-uri runs:/abc/model: expected models:/NAME/VERSION"),
    "promote-alias": (["--promote", "a b"], "--promote 'a b': an alias is letters, digits, '-' and '_'"),
}
for _name, (_args, _line) in OPTION_CASES.items():
    CASES[_name] = lambda tmp, args=_args, line=_line: (list(args), line)


@case("cache-dir-is-a-file")
def _(tmp: Path):
    (tmp / "cache").write_text("")
    return ["--robustness-cache-dir", "cache"], f"--robustness-cache-dir {tmp / 'cache'}: exists and is not a folder"


@case("ini-max-regression")
def _(tmp: Path):
    (tmp / "pytest.ini").write_text("[pytest]\nrobustness_max_regression = a lot\n")
    return [], "robustness_max_regression 'a lot': expected a number >= 0"


@case("ini-image-size")
def _(tmp: Path):
    (tmp / "pytest.ini").write_text("[pytest]\nrobustness_image_size = big\n")
    return [], f"robustness_image_size 'big': {IMAGE_SIZE}"


@case("ini-attack-backend")
def _(tmp: Path):
    (tmp / "pytest.ini").write_text("[pytest]\nrobustness_attack_backend = fast\n")
    return [], "robustness_attack_backend 'fast': expected one of compiled, art"


@case("npz-not-a-zip")
def _(tmp: Path):
    (tmp / "d.npz").write_bytes(b"not a zip file")
    return ["--dataset", "d.npz"], "--dataset d.npz: not a readable .npz file"


@case("npz-missing-arrays")
def _(tmp: Path):
    np.savez(tmp / "d.npz", x_train=np.zeros((3, 8, 8)), y_train=np.zeros(3))
    return ["--dataset", "d.npz"], "--dataset d.npz: missing arrays ['x_test', 'y_test']"


@case("folder-without-testing")
def _(tmp: Path):
    (tmp / "digits" / "training" / "0").mkdir(parents=True)
    return ["--dataset", "digits"], "--dataset digits: missing folder digits/testing"


@case("folder-without-images")
def _(tmp: Path):
    root = folder(tmp / "digits")
    for path in (root / "testing").rglob("*.png"):
        path.rename(path.with_suffix(".txt"))
    return ["--dataset", "digits"], "--dataset digits: no image files under digits/testing"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_at_start_up_with_one_line(pytester, name):
    args, expected = CASES[name](pytester.path)
    pytester.makepyfile(test_suite=FGM_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    errors = [line for line in result.errlines + result.outlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {expected}"), (errors, expected)
    assert "usage:" not in output and "Traceback" not in output
    for created in ("mlflow.db", "mlruns", "mlartifacts", ".robustness_cache"):
        assert not (pytester.path / created).exists(), created
