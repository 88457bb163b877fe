"""What every explainer shares: the model's scorer, input checks and chunk planning."""

import math
import threading
import types
import weakref

import numpy as np
import tensorflow as tf

from keras_interp.targets import Scorer, resolve_target

__all__ = ["Explainer", "check_images", "plan_chunks", "chunk_indices", "merge_leading", "broadcast_baseline"]


def check_images(inputs, input_shape=None):
    """Validate a batch of images and return it as a float32 numpy array (B, H, W, C)."""
    if isinstance(inputs, tf.Tensor):
        inputs = inputs.numpy()
    try:
        x = np.asarray(inputs, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Expected images as a numpy array or tensor of shape (batch, height, width, "
            f"channels); received {type(inputs).__name__} that cannot be read as float32 ({exc})."
        ) from None
    expected = "(batch, height, width, channels)"
    if input_shape is not None:
        expected += f"; the model takes {tuple(input_shape)}"
    if x.ndim != 4:
        hint = " For a single image pass image[None]." if x.ndim == 3 else ""
        raise ValueError(f"Expected a batch of images of shape {expected}; received shape {x.shape}.{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"Received an empty batch (shape {x.shape}); pass at least one image.")
    if input_shape is not None and len(input_shape) == 4:
        for axis, name in ((1, "height"), (2, "width"), (3, "channels")):
            want = input_shape[axis]
            if want is not None and x.shape[axis] != want:
                raise ValueError(
                    f"Image {name} is {x.shape[axis]} but the model expects {want}: received "
                    f"shape {x.shape}, expected {expected}. Resize or preprocess the images first."
                )
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"The images contain {int(bad.sum())} NaN or infinite values (first at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}); explanations need finite inputs."
        )
    return x


def broadcast_baseline(baseline, x, name="baseline"):
    """A baseline (scalar, (H, W, C), (B, H, W, C) or anything broadcastable) at x's shape."""
    try:
        b = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {np.shape(baseline)} cannot be broadcast to the inputs' shape "
            f"{x.shape}; give a scalar, an (H, W, C) image or one per example."
        ) from None
    if not np.isfinite(b).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return np.ascontiguousarray(b)


def plan_chunks(count, batch, batch_size):
    """Split `count` perturbations of a batch of `batch` images into equal chunks.

    Returns (per_chunk, num_chunks): each forward pass sees per_chunk * batch images, at most
    max(batch, batch_size). Chunks are evened out so the padded tail wastes at most
    num_chunks - 1 perturbations.
    """
    per = max(1, batch_size // batch)  # batch <= batch_size: Explainer._batched splits larger ones
    num_chunks = math.ceil(count / per)
    return math.ceil(count / num_chunks), num_chunks


def chunk_indices(chunk, per, count):
    """Perturbation indices of one chunk and their 0/1 validity.

    The last chunk is padded by repeating index count - 1; its padded entries get validity 0,
    so every chunk has the same static size and the compiled loop is traced once.
    """
    ids = chunk * per + tf.range(per)
    return tf.minimum(ids, count - 1), tf.cast(ids < count, tf.float32)


def merge_leading(t):
    """(k, B, ...) -> (k * B, ...): one chunk of perturbed copies as a single model batch."""
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


def _to_numpy(out):
    if isinstance(out, (tuple, list)):
        return tuple(np.asarray(o) for o in out)
    return np.asarray(out)


# model -> {(class, method, settings): tf.function}. Keyed weakly, and the functions hold no
# reference to the model or an explainer (only the variables their graphs capture), so building
# `ki.Saliency(model)` again, e.g. in a loop, reuses the traces, and a dropped model is freed.
_SHARED = weakref.WeakKeyDictionary()
_ACTIVE = threading.local()


def _bound_to_active(method):
    """method(explainer, *args) with the explainer that is calling, read when tracing."""

    def run(*args):
        return method(_ACTIVE.explainer, *args)

    run.__name__ = method.__name__
    return run


class Explainer:
    """Base class: holds the model, its pre-softmax scorer and the chunk size.

    Args:
        model: a single-input Keras model taking NHWC float images.
        batch_size: most images one forward pass feeds the model: larger batches are split,
            and perturbation methods stream their perturbed copies in chunks of this size.
    """

    def __init__(self, model, batch_size=128):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
        self.model = model
        self.scorer = Scorer(model)
        self.batch_size = batch_size
        self._functions = {}
        self._callables = {}

    def _trace_key(self):
        """Settings read inside the compiled functions (beyond the model and the arguments).

        Explainers of one class on one model with equal keys share their compiled functions.
        """
        return ()

    def _compiled(self, name):
        """The tf.function running method `name`, shared across instances (see _SHARED)."""
        fn = self._functions.get(name)
        if fn is None:
            key = (type(self), name, self._trace_key())
            try:
                per_model = _SHARED.setdefault(self.model, {})
            except TypeError:  # a model that cannot be weakly referenced: no sharing
                per_model = {}
            fn = per_model.get(key)
            if fn is None:
                fn = per_model[key] = tf.function(_bound_to_active(getattr(type(self), name)))
            self._functions[name] = fn
        return fn

    def _call(self, name, *args):
        """Run compiled method `name` with this instance as `self` while it traces."""
        fn = self._compiled(name)
        previous = getattr(_ACTIVE, "explainer", None)
        _ACTIVE.explainer = self
        try:
            return fn(*args)
        finally:
            _ACTIVE.explainer = previous

    @property
    def trace_count(self):
        """How many times the compiled functions this explainer uses have been traced."""
        return sum(f.experimental_get_tracing_count() for f in self._functions.values())

    def _canonical(self, score_fn):
        """An earlier callable target that computes the same thing, so it is not traced again.

        Two plain functions are the same target when they share code, closure values (by
        identity), defaults and globals: `lambda y: y[:, 3]` written in a loop is traced once,
        `lambda y: y[:, k]` once per k.
        """
        if not isinstance(score_fn, types.FunctionType):
            return score_fn
        cells = tuple(c.cell_contents for c in (score_fn.__closure__ or ()))
        key = (score_fn.__code__, tuple(map(id, cells)), id(score_fn.__globals__), id(score_fn.__defaults__),
               id(score_fn.__kwdefaults__))
        return self._callables.setdefault(key, score_fn)

    def _prepare(self, inputs, target):
        x = check_images(inputs, self.scorer.input_shape)
        classes, score_fn = resolve_target(target, x.shape[0], self.scorer.num_classes, self.scorer.output_shape)
        self.scorer.check_outputs(x[: min(8, self.batch_size)])
        return x, classes, None if score_fn is None else self._canonical(score_fn)

    def _batched(self, fn, *aligned):
        """fn over slices of at most `batch_size` examples of the `aligned` arrays; numpy out.

        Every forward pass then sees at most `batch_size` images, however large the batch. The
        last slice is padded by repeating its last example, so all slices share one shape and
        one trace; examples are independent, so the result equals one call on the whole batch.
        """
        n = len(aligned[0])
        if n <= self.batch_size:
            return _to_numpy(fn(*aligned))
        size, parts = self.batch_size, []
        for start in range(0, n, size):
            stop = min(start + size, n)
            piece = []
            for a in aligned:
                s = a[start:stop]
                if stop - start < size:
                    s = np.concatenate([s, np.repeat(s[-1:], size - (stop - start), axis=0)])
                piece.append(s)
            out = _to_numpy(fn(*piece))
            parts.append(tuple(o[:stop - start] for o in out) if isinstance(out, tuple) else out[:stop - start])
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(p) for p in zip(*parts))
        return np.concatenate(parts)

    def explain(self, inputs, target=None):
        """Importance maps (B, H, W) float32; higher means more important."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(model={self.model.name!r})"
