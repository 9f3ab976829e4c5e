"""Registry of model architectures, each as NIST's Dioptra defines it.

Every model takes the dataset's own images (e.g. 28x28x1 in [0, 1]) and adapts
them *inside* the network (resize to the size its recipe trains at, grey to RGB,
ImageNet's caffe preprocessing), so attacks, patches and defenses all work in the
data's pixel space and gradients flow through the adaptation.

The size a recipe trains at is one rule, ``recipe_image_size``: the data's own size,
resized up to the smallest the architecture accepts (``min_size``); on CPU an
architecture with a ``cpu_side`` (``resnet50``, ``vgg16``: 32) is resized to that
square instead, up or down, so a 100x100 Fruits360 or 224x224 ImageNet folder trains in
minutes, not hours; with ``--gpu`` it trains at the data's own size, as Dioptra does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import registry_scope
from ..errors import RobustnessUsageError

if TYPE_CHECKING:  # Keras is imported only when a model is built: plain `pytest` stays fast.
    import keras


@dataclass(frozen=True)
class Architecture:
    name: str
    build_head: Callable[[Any, int, str | None], Any]
    min_size: int = 1
    cpu_side: int | None = None  # on CPU, train at cpu_side x cpu_side whatever the data's size (recipe_image_size)
    rgb: bool = False
    caffe: bool = False
    slow: bool = False
    doc: str = ""
    # CPU-friendly budgets for the big networks: fewer training images and epochs,
    # fewer attacked samples. Explicit --train / --samples values win.
    training_overrides: tuple[tuple[str, object], ...] = ()
    max_eval_samples: int | None = None

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise RobustnessUsageError(
                f"architecture {self.name}: input shape {shape} is not (height, width, 1 or 3 channels)"
            )

    def build(self, input_shape: tuple[int, int, int], n_classes: int, weights_file: str | None = None,
              on_gpu: bool = False) -> "keras.Model":
        """The network on the data's images, resized inside to ``recipe_image_size`` (``on_gpu``: ``--gpu``)."""
        import keras

        from .keras_layers import CaffePreprocess

        self.check_input_shape(input_shape)
        inputs = keras.Input(shape=input_shape, name="image")
        x = inputs
        height, width, channels = input_shape
        target = recipe_image_size(self, input_shape, on_gpu)
        if target != (height, width):
            grows = target[0] >= height and target[1] >= width
            x = keras.layers.Resizing(*target, name="resize_up" if grows else "resize_down")(x)
        if self.rgb and channels == 1:
            x = keras.layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
        if self.caffe:
            x = CaffePreprocess(name="caffe_preprocess")(x)
        outputs = self.build_head(x, n_classes, weights_file)
        return keras.Model(inputs, outputs, name=self.name)


def recipe_image_size(architecture: Architecture, input_shape: tuple[int, ...], on_gpu: bool) -> tuple[int, int]:
    """(height, width) the architecture's recipe trains and is attacked at, inside the model: the one rule.

    On CPU an architecture with a ``cpu_side`` works at that square (resnet50 and vgg16: 32x32, up or down);
    otherwise (``--gpu``, or any other architecture) at the data's own size, resized up to ``min_size``."""
    height, width = int(input_shape[0]), int(input_shape[1])
    if architecture.cpu_side is not None and not on_gpu:
        return architecture.cpu_side, architecture.cpu_side
    return max(height, architecture.min_size), max(width, architecture.min_size)


def _shallow_net(x, n_classes, _weights):
    import keras

    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="sigmoid")(x)
    return keras.layers.Dense(n_classes, activation="softmax")(x)


def _le_net(x, n_classes, _weights):
    import keras

    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.layers.Dense(n_classes, activation="softmax")(x)


def _alex_net(x, n_classes, _weights):
    import keras

    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(256, 5, activation="relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(256, 3, activation="relu")(x)
    x = keras.layers.Conv2D(384, 3, activation="relu")(x)
    x = keras.layers.Conv2D(384, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4096, activation="tanh")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(4096, activation="tanh")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.layers.Dense(n_classes, activation="softmax")(x)


def _applications_head(application_name: str):
    """keras.applications base (no top) -> GAP -> Dense(1024, relu) -> softmax, as Dioptra builds it.

    Dioptra freezes the ImageNet base; without a weights file (no downloads here)
    the base starts random and must train, so it is frozen only when weights load.
    """

    def head(x, n_classes, weights_file):
        import keras

        application = getattr(keras.applications, application_name)
        base = application(include_top=False, weights=weights_file, input_shape=tuple(x.shape[1:]))
        base.trainable = weights_file is None
        y = base(x)
        y = keras.layers.GlobalAveragePooling2D()(y)
        y = keras.layers.Dense(1024, activation="relu")(y)
        return keras.layers.Dense(n_classes, activation="softmax")(y)

    return head


SLOW_TRAINING = (("epochs", 1.0), ("samples", 512))
SLOW_EVAL_SAMPLES = 128

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("le_net", _le_net, min_size=6, doc="Keras' MNIST CNN (Dioptra calls it le_net)"),
        Architecture("shallow_net", _shallow_net, doc="one sigmoid hidden layer"),
        # 195 px is the smallest input the valid-padded AlexNet stack reduces to >= 1x1.
        Architecture("alex_net", _alex_net, min_size=195, rgb=True, slow=True, doc="AlexNet, valid padding",
                     training_overrides=SLOW_TRAINING, max_eval_samples=SLOW_EVAL_SAMPLES),
        Architecture("resnet50", _applications_head("ResNet50"), min_size=32, cpu_side=32, rgb=True, caffe=True,
                     slow=True, doc="keras.applications ResNet50 base",
                     training_overrides=SLOW_TRAINING, max_eval_samples=SLOW_EVAL_SAMPLES),
        Architecture("vgg16", _applications_head("VGG16"), min_size=32, cpu_side=32, rgb=True, caffe=True,
                     slow=True, doc="keras.applications VGG16 base",
                     training_overrides=SLOW_TRAINING, max_eval_samples=SLOW_EVAL_SAMPLES),
    )
}

DEFAULT_ARCHITECTURES = ("le_net", "shallow_net")


def known_architectures() -> dict[str, Architecture]:
    """The architectures of the running session's registry (outside a session: the built-ins)."""
    return registry_scope.table("architecture", ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    known = known_architectures()
    try:
        return known[name]
    except KeyError:
        raise RobustnessUsageError(
            f"--architecture {name}: unknown architecture; choose from {', '.join(known)}"
        ) from None
