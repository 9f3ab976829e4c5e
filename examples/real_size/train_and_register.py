"""The user's training job for a Dioptra folder of real-size images: a small ResNet-style CNN, registered.

    python examples/real_size/train_and_register.py photos --name photos_cnn --epochs 3

Reads ``FOLDER/training`` with Keras' ``image_dataset_from_directory`` (the classes in the order the gate
reads them), trains a small residual CNN on [0, 255] pixels (``Rescaling(1/255)`` inside the model, so gate
it with ``--input-range 0,255``) ending in logits, and logs it with ``mlflow.keras.log_model`` to MLflow's
tracking URI (``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``), registered as ``--name``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def residual_cnn(image_shape: tuple[int, int, int], n_classes: int, width: int = 16):
    """Strided stem, two residual blocks, global pooling, logits."""
    import keras

    inputs = keras.Input(image_shape, name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(width, 5, strides=4, padding="same", activation="relu")(x)
    for filters in (width, 2 * width):
        shortcut = keras.layers.Conv2D(filters, 1, strides=2, padding="same")(x)
        y = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(filters, 3, padding="same")(y)
        x = keras.layers.Activation("relu")(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes)(x), name="residual_cnn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a Dioptra folder (training/<class>/*, testing/<class>/*)")
    parser.add_argument("--name", required=True, help="the registered model's name")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import mlflow
    import mlflow.keras
    from PIL import Image

    training = Path(args.folder) / "training"
    first = next(p for p in sorted(training.rglob("*")) if p.is_file())
    with Image.open(first) as image:
        width, height = image.size
    keras.utils.set_random_seed(args.seed)
    data = keras.utils.image_dataset_from_directory(training, image_size=(height, width), batch_size=16,
                                                    label_mode="int", seed=args.seed)
    model = residual_cnn((height, width, 3), len(data.class_names))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(data, epochs=args.epochs, verbose=2)
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, name="model", registered_model_name=args.name)
    print(f"registered models:/{args.name}/{info.registered_model_version} ({model.count_params():,} parameters, "
          f"{height}x{width} RGB, classes {', '.join(data.class_names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
