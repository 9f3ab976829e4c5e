"""Custom Keras layers our models use; importing this module registers them for loading."""

from __future__ import annotations

import keras

# ImageNet channel means (BGR) used by keras.applications' "caffe" preprocessing.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="pytest_robustness")
class CaffePreprocess(keras.layers.Layer):
    """[0, 1] RGB -> caffe-style BGR minus the ImageNet mean, as ResNet50/VGG16 weights expect."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs * 255.0, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=inputs.dtype)
