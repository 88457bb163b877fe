"""The small reference CNN used by the demo, examples, benchmarks and tests; model loading."""

import os

import keras

__all__ = ["reference_cnn", "load_model"]


def reference_cnn(input_shape=(64, 64, 3), num_classes=4, head="gap", width=16, name=None):
    """A small VGG-style CNN: three conv stages (conv-conv-pool), then a classification head.

    Args:
        input_shape: (height, width, channels) of the images, values in [0, 1].
        num_classes: number of output classes.
        head: "gap" (global average pooling -> Dense, which CAM can read directly) or
            "flatten" (Flatten -> Dense(64, relu) -> Dense, which needs Grad-CAM).
        width: filters of the first stage; later stages double it.
        name: model name; defaults to "reference_cnn_<head>".

    Returns:
        An uncompiled functional `keras.Model` ending in softmax (its logits are what the
        explainers differentiate).
    """
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten'; received {head!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}_1")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}_2")(x)
        if stage < 3:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"reference_cnn_{head}")


def load_model(path, safe_mode=True, compile=True):
    """Load a `.keras` model with keras_interp's layers registered.

    A thin wrapper over `keras.saving.load_model` that makes sure every keras_interp layer is
    registered first, so models built with them load in a fresh process. `safe_mode` stays on
    by default: lambda layers from untrusted files are refused.
    """
    import keras_interp.layers  # noqa: F401  (registers the custom layers)

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    return keras.saving.load_model(path, safe_mode=safe_mode, compile=compile)
