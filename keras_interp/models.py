"""The small reference CNN used by the demo, examples, benchmarks and tests; model loading."""

import os
import warnings

import keras
import numpy as np

__all__ = ["reference_cnn", "reference_vit", "load_model", "train_on_shapes", "train_vit_on_shapes"]


def reference_cnn(input_shape=(64, 64, 3), num_classes=4, head="gap", width=16, name=None):
    """A small VGG-style CNN: three stages of (conv-BN-ReLU) x 2 with max pooling, then a head.

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
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{i}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{stage}_{i}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{i}")(x)
        if stage < 3:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"reference_cnn_{head}")


def reference_vit(input_shape=(64, 64, 3), num_classes=4, patch_size=8, dim=64, heads=4, blocks=4,
                  pooling="token", stem="patch", name=None):
    """A small Vision Transformer (Dosovitskiy et al., 2021): patches embedded by a strided
    convolution, a class token and learned positions, pre-norm blocks of multi-head attention
    and an MLP, a final LayerNormalization, then the class token (pooling="token") or the mean
    of all tokens (pooling="mean", no class token) into a Dense head.

    Args:
        input_shape: (height, width, channels), values in [0, 1]; each side a multiple of
            patch_size.
        num_classes: number of output classes.
        patch_size: side of the square patches, in pixels.
        dim, heads, blocks: token width, attention heads and transformer blocks.
        pooling: "token" or "mean".
        stem: "patch" (one strided convolution per patch, ViT's) or "conv" (3x3 convolutions with
            BatchNorm and ReLU, two per halving of the image, down to the patch grid: a hybrid ViT,
            which learns from small data sets such as the built-in shapes, where a plain ViT
            trained from scratch stays at chance; Xiao et al. 2021). patch_size must then be a
            power of 2.
        name: model name; defaults to "reference_vit_<pooling>".

    Returns:
        An uncompiled functional `keras.Model` ending in softmax. Its attention layers are
        named "block<i>_attention", the norms before them "block<i>_norm1".
    """
    from keras_interp.layers.token_embedding import TokenEmbedding

    if pooling not in ("token", "mean"):
        raise ValueError(f"pooling must be 'token' or 'mean'; received {pooling!r}.")
    if input_shape[0] % patch_size or input_shape[1] % patch_size:
        raise ValueError(f"The image sides {tuple(input_shape[:2])} must be multiples of patch_size={patch_size}.")
    if stem not in ("patch", "conv") or (stem == "conv" and patch_size & (patch_size - 1)):
        raise ValueError(f"stem must be 'patch' or 'conv' (with a power-of-2 patch_size); received stem={stem!r}, "
                         f"patch_size={patch_size}.")
    layers = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if stem == "patch":
        x = layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embedding")(inputs)
    else:
        x, steps = inputs, int(np.log2(patch_size))
        for i in range(1, steps + 1):
            for j, stride in ((1, 1), (2, 2)):
                x = layers.Conv2D(max(dim >> (steps - i), 8), 3, strides=stride, padding="same", use_bias=False,
                                  name=f"stem{i}_conv{j}")(x)
                x = layers.ReLU(name=f"stem{i}_relu{j}")(layers.BatchNormalization(name=f"stem{i}_bn{j}")(x))
        x = layers.Conv2D(dim, 1, name="patch_embedding")(x)
    x = layers.Reshape((-1, dim), name="patches")(x)
    x = TokenEmbedding(class_tokens=1 if pooling == "token" else 0, name="tokens")(x)
    for i in range(1, blocks + 1):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        h = layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attention")(h, h)
        x = layers.Add(name=f"block{i}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        h = layers.Dense(2 * dim, activation="gelu", name=f"block{i}_mlp1")(h)
        h = layers.Dense(dim, name=f"block{i}_mlp2")(h)
        x = layers.Add(name=f"block{i}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    if pooling == "token":
        # The class token, by built-in layers: a `x[:, 0]` operation has no legacy HDF5 form.
        patches = x.shape[1] - 1
        x = layers.Flatten(name="class_token")(layers.Cropping1D((0, patches), name="first_token")(x))
    else:
        x = layers.GlobalAveragePooling1D(name="mean_tokens")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"reference_vit_{pooling}")


def load_model(path, safe_mode=True, compile=False):
    """Load a `.keras` (or legacy `.h5`/`.hdf5`) model with keras_interp's layers registered.

    A thin wrapper over `keras.saving.load_model` that makes sure every keras_interp layer is
    registered first, so models built with them load in a fresh process. `safe_mode` stays on
    by default: lambda layers from untrusted files are refused.

    Explaining needs no optimizer, so the model is loaded for inference (`compile=False`) by
    default: a Keras 2 era HDF5 file's saved training configuration often names optimizer
    arguments Keras 3 no longer accepts (`lr`, `decay`). With `compile=True`, such a file is
    loaded without compiling, with a warning that says so.
    """
    import keras_interp.layers  # noqa: F401  (registers the custom layers)

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    # Keras answers anything else with a long paragraph on TFSMLayer; say it in one line.
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder (a TensorFlow SavedModel?), not a Keras model file: load a .keras "
                         "archive or a legacy .h5/.hdf5 file (Keras 3 reads a SavedModel only as "
                         "keras.layers.TFSMLayer, which has no layers to explain).")
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"{path!r} is not a Keras model file ({f'a {suffix} file' if suffix else 'no extension'}): "
                         "expected a .keras archive (model.save) or a legacy .h5/.hdf5 file.")
    if not compile:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=True)
    except (ValueError, TypeError) as exc:
        model = keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
        warnings.warn(
            f"{path}: the saved training configuration cannot be compiled by this Keras "
            f"({str(exc).splitlines()[0][:200]}); loaded without compiling, for inference.",
            stacklevel=2,
        )
        return model


def train_on_shapes(model=None, train_size=3000, epochs=8, image_size=64, seed=0, callbacks=None, verbose=2):
    """Train a model (default: `reference_cnn`) on the built-in shapes; the demo's recipe.

    Args:
        model: an uncompiled or compiled classifier taking (image_size, image_size, 3) images;
            None builds `reference_cnn` for that size.
        train_size: number of training images (`datasets.shapes(train_size, seed=seed)`).
        epochs: training epochs.
        image_size: side of the images.
        seed: seeds the data and Keras's random state (weights, shuffling).
        callbacks: passed to `model.fit`.
        verbose: passed to `model.fit`.

    Returns:
        (model, history). Validation uses `datasets.shapes(train_size // 8, seed=seed + 1)`.
    """
    from keras_interp import datasets

    keras.utils.set_random_seed(seed)
    train = datasets.shapes(train_size, image_size=image_size, seed=seed)
    val = datasets.shapes(max(train_size // 8, 1), image_size=image_size, seed=seed + 1)
    if model is None:
        model = reference_cnn((image_size, image_size, 3), num_classes=len(train.class_names))
    if not model.compiled:
        model.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, epochs * (train_size // 64 + 1))),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    history = model.fit(
        train.images, train.labels, batch_size=64, epochs=epochs, validation_data=(val.images, val.labels),
        callbacks=callbacks, verbose=verbose,
    )
    return model, history


def train_vit_on_shapes(epochs=20, train_size=3000, seed=0, callbacks=None, verbose=2):
    """The hybrid `reference_vit(stem="conv")` trained on the built-in shapes: AdamW (weight
    decay 1e-4), one epoch of linear warm-up to 2e-3, then cosine decay; batches of 64 (ViTs
    want the warm-up; a plain ViT from scratch stays at chance on 3000 shapes). About 0.97
    held-out accuracy after 20 epochs (benchmarks/quality.py --architecture vit).

    Returns:
        (model, history), as `train_on_shapes`.
    """
    keras.utils.set_random_seed(seed)
    model = reference_vit(stem="conv")
    steps = epochs * (train_size // 64 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=2e-3, warmup_steps=steps // epochs)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=1e-4), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return train_on_shapes(model, train_size=train_size, epochs=epochs, seed=seed, callbacks=callbacks,
                           verbose=verbose)
