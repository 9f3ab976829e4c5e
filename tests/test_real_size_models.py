"""Users' real-size networks, as they build, log and gate them: ResNet50 and VGG16 at 224x224.

A user fine-tuning an ImageNet architecture builds it from ``keras.applications`` with ``include_top=False``,
global pooling and a Dense head of their own for their few classes, and puts the architecture's
preprocessing inside the model: ``keras.applications.resnet50.preprocess_input`` called on the model's
input (ImageNet's "caffe" mode: RGB to BGR, the channel means subtracted from [0, 255] pixels), or
``Rescaling(1/255)`` then ``Normalization`` with ImageNet's mean and standard deviation ("torch" mode).
Built with ``weights=None`` (no downloads here), logged with ``mlflow.keras.log_model`` or
``mlflow.tensorflow.log_model`` into a real sqlite store, registered, and gated by an FGM cell on a
generated Dioptra folder of 224x224 JPEGs with ``--input-range 0,255``: the cell's adversarial images and
accuracy must be ART's ``FastGradientMethod``'s on the same model, images and eps, and the gradient-masking
probe must not flag the model. Also as a ``--model-file`` the user saved.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import mlflow.tensorflow
import numpy as np
import pytest

from helpers import Store
from pytest_robustness.data.datasets import load_folder
from pytest_robustness.data.example_files import read_examples
from pytest_robustness.data.folder_builders import photo_folder

SIZE = 224
PIP = ["tensorflow-cpu", "keras"]  # given, so MLflow does not load the model to infer requirements
EPS = 0.1
SUITE = f'''
import pytest
from pytest_robustness import attack_cases


@pytest.mark.fgm
@attack_cases("fgm", [dict(norm="inf", eps={EPS})])
def test_fgm(robustness, architecture, params):
    result = robustness.attack("fgm", **params)
    robustness.check(result, clean_accuracy=0.0)
'''
ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", "--samples", "4")
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def user_network(application: str, preprocessing: str, photos: Path) -> keras.Model:
    """The user's fine-tuning model on [0, 255] RGB pixels: preprocessing inside, a keras.applications base
    without its top (frozen, as when fine-tuning), average pooling, and a head of two logits trained a few
    epochs on the folder's training images.

    Without downloads the base's weights are random. ResNet50's BatchNormalization keeps its pooled features
    varied between images; a random VGG16 (no BatchNormalization, Glorot-initialised ReLU layers) shrinks them
    until they hardly vary (about 1%), which ImageNet weights would make informative, so the VGG16 head
    standardises them over the training images (a ``Normalization`` layer adapted on them) and the model's output
    depends on its input, as a fine-tuned model's does. Measured: without it the gate rightly flags the random
    VGG16 (PGD at eps 1 changes no prediction); with it ResNet50's softmax saturates (zero gradients, flagged)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    if preprocessing == "caffe":  # what keras.applications' ResNet50/VGG16 weights expect
        module = {"ResNet50": keras.applications.resnet50, "VGG16": keras.applications.vgg16}[application]
        x = module.preprocess_input(inputs)
    else:  # "torch": [0, 1], then ImageNet's mean and standard deviation
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        x = keras.layers.Normalization(mean=TORCH_MEAN, variance=[s * s for s in TORCH_STD])(x)
    base = getattr(keras.applications, application)(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                                   pooling="avg")
    base.trainable = False
    features = base(x)
    data = load_folder(photos)
    pixels = data.x_train * 255.0
    if application == "VGG16":
        standardise = keras.layers.Normalization(name="feature_scale")
        standardise.adapt(keras.Model(inputs, features).predict(pixels, verbose=0))
        features = standardise(features)
    outputs = keras.layers.Dense(2, name="head")(features)
    model = keras.Model(inputs, outputs, name=f"user_{application.lower()}_{preprocessing}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(pixels, data.y_train, epochs=3, batch_size=8, verbose=0)
    return model


def log(flavor, model, name: str, store: Store) -> None:
    mlflow.set_tracking_uri(store.uri)
    try:
        with mlflow.start_run():
            flavor.log_model(model, name="model", registered_model_name=name, pip_requirements=PIP)
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A Dioptra folder of 224x224 JPEGs, two classes, four training and two test images each."""
    return photo_folder(tmp_path_factory.mktemp("photos") / "photos", {"training": 4, "testing": 2})


def art_fgm(model, x_clean: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """ART's FastGradientMethod on the user's model fed [0, 1] images scaled to [0, 255]: the adversarial images,
    clean and adversarial predictions, and the loss gradient FGM took the sign of."""
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier

    scaled = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(255.0), model])
    classifier = TensorFlowV2Classifier(scaled, nb_classes=2, input_shape=(SIZE, SIZE, 3), clip_values=(0.0, 1.0),
                                        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    x_adv = FastGradientMethod(classifier, norm=np.inf, eps=eps, eps_step=0.1).generate(x_clean)
    clean = classifier.predict(x_clean).argmax(1)
    gradient = classifier.loss_gradient(x_clean, np.eye(2, dtype=np.float32)[clean])  # labels: its predictions
    return dict(x_adv=x_adv, clean=clean, adversarial=classifier.predict(x_adv).argmax(1), gradient=gradient)


def gate(pytester, photos: Path, store: Store, *model_args: str, backend: str = "compiled"):
    """One FGM cell on the model, in process; its MLflow run and the seconds the session took."""
    pytester.makepyfile(test_real_size_suite=SUITE)
    started = time.perf_counter()
    result = pytester.runpytest(*ARGS, "--dataset", str(photos), "--mlflow-uri", store.uri,
                                "--input-range", "0,255", "--attack-backend", backend, *model_args)
    seconds = time.perf_counter() - started
    result.assert_outcomes(passed=1)
    [run] = [r for r in store.runs("photos") if r.data.tags.get("robustness.kind") == "test"]
    return run, seconds


def assert_cell_is_arts(store: Store, run, model, tmp_path: Path) -> None:
    """The cell's numbers are ART's FGM's on the same model and images, and so are its adversarial images but
    where the gradient's sign is a matter of float rounding; no masking suspected."""
    assert run.data.params["input_range"] == "0,255"
    assert run.data.tags["robustness.gradient_masking"] == "none suspected"
    examples = read_examples(store.download(run.info.run_id, "adversarial_examples.npz", tmp_path))
    assert examples["x_clean"].shape == (4, SIZE, SIZE, 3)
    art = art_fgm(model, examples["x_clean"], EPS)
    assert run.data.metrics["clean_accuracy"] == np.mean(art["clean"] == examples["y_true"])
    assert run.data.metrics["adversarial_accuracy"] == np.mean(art["adversarial"] == examples["y_true"])
    assert (art["adversarial"] != art["clean"]).any()  # the attack moved predictions: not two no-ops compared
    differs = np.abs(examples["x_adv"] - art["x_adv"]) > 1e-6
    print(f"x_adv: {differs.mean():.4%} of the values differ from ART's")
    np.testing.assert_allclose(examples["x_adv"], art["x_adv"], atol=1e-6)


@pytest.fixture(scope="module")
def resnet50(photos) -> keras.Model:
    return user_network("ResNet50", "caffe", photos)


@pytest.mark.slow  # 60-100 s on a shared 2-core CPU: building, fine-tuning and logging a 24M-parameter model
# The backend crafting the cell: the compiled kernel on ResNet50 (ART's images exactly). On this random-weight
# VGG16 the compiled kernel's images differ from ART's on 0.22% of the values, with the same accuracies: the
# model's own input gradient taken in a plain tf.function differs in sign from the eager one (ART's) on 0.43% of
# the values (measured, no plugin code involved), so its cell runs ART's FastGradientMethod (--attack-backend art).
@pytest.mark.parametrize("application, preprocessing, flavor, backend", [
    ("ResNet50", "caffe", mlflow.keras, "compiled"),
    ("VGG16", "torch", mlflow.tensorflow, "art"),
], ids=["resnet50-caffe-keras", "vgg16-torch-tensorflow"])
def test_a_users_imagenet_architecture_gates_at_224_with_arts_numbers(pytester, photos, request, tmp_path,
                                                                      application, preprocessing, flavor, backend):
    store = Store(tmp_path / "mlflow" / "mlflow.db")
    model = (request.getfixturevalue("resnet50") if application == "ResNet50"
             else user_network(application, preprocessing, photos))
    name = f"photos_{application.lower()}"
    log(flavor, model, name, store)
    run, seconds = gate(pytester, photos, store, "--model-uri", f"cnn=models:/{name}/1", backend=backend)
    print(f"{application} ({preprocessing}, {flavor.__name__}): {model.count_params():,} parameters, gated in "
          f"{seconds:.1f} s")
    assert run.data.params["model_uri"] == f"models:/{name}/1"
    assert_cell_is_arts(store, run, model, tmp_path)


@pytest.mark.slow
def test_a_users_saved_resnet50_file_gates_with_arts_numbers(pytester, photos, resnet50, tmp_path):
    """``--model-file``: the .keras file the user saved (the preprocessing saved as Keras operations) loads in
    safe mode, is registered by the harness and gives ART's numbers."""
    path = tmp_path / "resnet50_photos.keras"
    resnet50.save(path)
    print(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    store = Store(tmp_path / "mlflow" / "mlflow.db")
    run, seconds = gate(pytester, photos, store, "--model-file", str(path), "--architecture", "cnn")
    print(f"ResNet50 --model-file gated in {seconds:.1f} s")
    assert run.data.params["model_uri"] == "models:/photos_cnn/1"
    assert_cell_is_arts(store, run, resnet50, tmp_path)


def test_a_lambda_around_preprocess_input_is_refused_in_one_line_naming_the_fix(pytester, tmp_path):
    """``Lambda(keras.applications.resnet50.preprocess_input)`` saves the function by its name only: no program
    can load the file again (Keras says "Could not locate function"), so the gate says so in one line, and how
    to save the preprocessing so that it loads."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(keras.applications.resnet50.preprocess_input)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / "lambda_preprocessing.keras"
    model.save(path)
    with pytest.raises(Exception, match="Could not locate function 'preprocess_input'"):
        keras.saving.load_model(path, safe_mode=False)  # Keras itself cannot load it, trusted or not
    pytester.makepyfile(test_real_size_suite=SUITE)
    for trust in ((), ("--trust-model-code",)):
        result = pytester.runpytest(*ARGS, "--dataset", "mnist", "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}",
                                    "--model-file", str(path), "--architecture", "cnn", *trust)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.errlines if line.startswith("ERROR:")]
        assert errors == [
            f"ERROR: --model-file {path}: not a loadable Keras model (a Lambda layer calls the function "
            "'preprocess_input', which Keras saves by its name only, so no program can load it; call the function on "
            "the model's input instead (e.g. x = keras.applications.resnet50.preprocess_input(inputs), saved as Keras "
            "operations) or use layers (Rescaling, Normalization), and save the model again)"], result.errlines
