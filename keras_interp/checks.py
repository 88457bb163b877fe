"""Input checks shared by every public entry point: one batch or several inputs, each checked
against what the model takes, with errors that say what was received and what was expected.

Low in the layering (it imports only numpy, TensorFlow and keras_interp.graph), so explainers,
layers, metrics, search and visualizations all check their inputs the same way.
"""

import numpy as np
import tensorflow as tf

from keras_interp.graph import FORMS

__all__ = ["check_images", "check_inputs", "pack", "check_image_model_input"]


# Per rank: (one example, several, the names of the axes after the batch), for error messages.
_WORDS = {
    2: ("example", "feature vectors", ("features",)),
    3: ("signal", "signals", ("length", "channels")),
    4: ("image", "images", ("height", "width", "channels")),
    5: ("volume", "volumes", ("depth", "height", "width", "channels")),
}


def check_images(inputs, input_shape=None, name="images"):
    """Validate one input batch and return it as a float32 numpy array.

    The rank is the model's (`input_shape`, batch included): (B, L, C) signals, (B, H, W, C)
    images, (B, D, H, W, C) volumes, (B, F) feature vectors. With no shape known, signals,
    images and volumes are accepted.
    """
    if isinstance(inputs, tf.Tensor):
        inputs = inputs.numpy()
    rank = None if input_shape is None else len(input_shape)
    expected = FORMS.get(rank, "(batch, ..., channels)") if rank else "(batch, height, width, channels)"
    try:
        x = np.asarray(inputs, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Expected {name} as a numpy array or tensor of shape {expected}; received "
            f"{type(inputs).__name__} that cannot be read as float32 ({exc})."
        ) from None
    if input_shape is not None:
        expected += f"; the model takes {tuple(input_shape)}"
    generic = ("image", "images", tuple(f"axis {i}" for i in range(1, (rank or 4) - 1)) + ("channels",))
    one, plural, labels = _WORDS.get(rank or 4, generic)
    noun = one if name == "images" else name
    plural = plural if name == "images" else name
    one = one if name == "images" else "example"
    if (x.ndim != rank) if rank else (x.ndim not in (3, 4, 5)):
        hint = f" For a single {one} pass {one}[None]." if x.ndim == (rank or 4) - 1 else ""
        raise ValueError(f"Expected a batch of {plural} of shape {expected}; received shape {x.shape}.{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"Received an empty batch (shape {x.shape}); pass at least one example.")
    if rank:
        for axis, label in enumerate(labels, start=1):
            want = input_shape[axis]
            if want is not None and x.shape[axis] != want:
                raise ValueError(
                    f"{noun[0].upper() + noun[1:]} {label} is {x.shape[axis]} but the model expects {want}: "
                    f"received shape {x.shape}, expected {expected}. Resize or preprocess them first."
                )
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"The {plural} contain {int(bad.sum())} NaN or infinite values (first at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}); explanations need finite inputs."
        )
    return x


def check_inputs(inputs, input_shapes, input_names):
    """Validate the inputs of a model with one or several inputs.

    Returns (x, form): for a single-input model x is one array and form None; otherwise x is a
    tuple of arrays in `model.inputs` order and form is "list" or "dict", how they were given
    (results are returned the same way, see `pack`). Every input must have the same batch size.
    """
    if input_shapes is None or len(input_shapes) == 1:
        return check_images(inputs, None if input_shapes is None else input_shapes[0]), None
    count = len(input_shapes)
    if isinstance(inputs, dict):
        missing = [k for k in input_names if k not in inputs]
        unknown = [k for k in inputs if k not in input_names]
        if missing or unknown:
            raise ValueError(
                f"The model's inputs are {input_names}; the dict of inputs "
                f"{'lacks ' + str(missing) if missing else ''}{' and ' if missing and unknown else ''}"
                f"{'has unknown keys ' + str(unknown) if unknown else ''}."
            )
        arrays, form = [inputs[k] for k in input_names], "dict"
    elif isinstance(inputs, (list, tuple)) and len(inputs) == count:
        arrays, form = list(inputs), "list"
    else:
        got = f"a {type(inputs).__name__} of {len(inputs)}" if isinstance(inputs, (list, tuple)) else (
            f"one array of shape {np.shape(inputs)}")
        raise ValueError(
            f"The model has {count} inputs {input_names}; pass a list of {count} arrays in that order "
            f"or a dict keyed by those names; received {got}."
        )
    x = tuple(check_images(a, shape, name=f"input {name!r}") for a, shape, name in zip(arrays, input_shapes, input_names))
    sizes = {len(a) for a in x}
    if len(sizes) > 1:
        raise ValueError(
            f"Every input needs the same batch size; received {dict(zip(input_names, (len(a) for a in x)))}."
        )
    return x, form


def pack(values, form, names):
    """Per-input results (a tuple in model order) as the inputs were given: a list, a dict, or
    the single array of a single-input model."""
    if form is None:
        return values
    return dict(zip(names, values)) if form == "dict" else list(values)


def check_image_model_input(inputs, model_shape, what="images", any_size=True):
    """One image (H, W, C) or a batch (N, H, W, C) for a model taking `model_shape` (batch
    included): (batch float32, whether a single image was given). With `any_size`, only the
    channels must match (the spatial sizes may differ, as for Deep Dream on a photo)."""
    x = np.asarray(inputs) if not isinstance(inputs, tf.Tensor) else inputs.numpy()
    single = getattr(x, "ndim", 0) == 3
    if model_shape is None or len(model_shape) != 4:
        return check_images(x[None] if single else x, name=what), single
    channels = model_shape[-1]
    if x.ndim not in (3, 4):
        raise ValueError(f"Expected {what} as an (H, W, C) image or an (N, H, W, C) batch (the model takes "
                         f"{tuple(model_shape)}); received shape {x.shape}.")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(
            f"Expected {what} with the model's {channels} channel{'s' if channels != 1 else ''} (the model takes "
            f"{tuple(model_shape)}); received shape {x.shape}. Convert them first"
            f"{' (grey: image.mean(axis=-1, keepdims=True))' if channels == 1 else ''}."
        )
    expected = (None, None, None, channels) if any_size else tuple(model_shape)
    return check_images(x[None] if single else x, expected, name="images"), single
