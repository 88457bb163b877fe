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


# model -> {"functions": {(class, method, scorer signature, settings): tf.function},
#           "targets": {callable target key: _Target}}. Keyed weakly, and the functions hold no
# reference to the model or an explainer (only the variables their graphs capture), so building
# `ki.Saliency(model)` again, e.g. in a loop, reuses the traces, and a dropped model is freed.
_SHARED = weakref.WeakKeyDictionary()
_ACTIVE = threading.local()


def _value_key(value):
    """A hashable stand-in for a closure or default value, or None when it has none."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, hash(value.tobytes()))
    if isinstance(value, np.generic):
        return ("numpy", value.dtype.str, value.item())
    if isinstance(value, tuple):
        keys = tuple(_value_key(v) for v in value)
        return None if any(k is None for k in keys) else ("tuple", keys)
    if isinstance(value, (tf.Tensor, tf.Variable, types.FunctionType, types.ModuleType, type)) or callable(value):
        return ("id", id(value))  # immutable tensors, live variables, functions: by identity
    return None


def _target_key(fn):
    if isinstance(fn, types.FunctionType):
        values = [c.cell_contents for c in (fn.__closure__ or ())] + list(fn.__defaults__ or ())
        values += sorted((fn.__kwdefaults__ or {}).items())
        keys = tuple(_value_key(v) for v in values)
        if all(k is not None for k in keys):
            return ("function", fn.__code__, id(fn.__globals__), keys)
    return ("object", id(fn))


class _Target:
    """A callable target as passed to compiled functions (held by the model's shared state,
    so the objects its key refers to by identity stay alive)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, logits):
        return self.fn(logits)


def _check_target(fn, logits_shape, batch):
    """Call a new callable target on dummy logits: one score per example, differentiable.

    Skipped when the logits' shape is not fully known (a fully convolutional model)."""
    if logits_shape is None or any(d is None for d in logits_shape[1:]):
        return
    shape = (batch,) + tuple(logits_shape[1:])
    logits = tf.random.stateless_normal(shape, seed=(1, 2))
    try:
        with tf.GradientTape() as tape:
            tape.watch(logits)
            scores = fn(logits)
    except Exception as exc:  # noqa: BLE001 - the user's code; say what it was given
        raise ValueError(
            f"The callable target failed on logits of shape {shape}: {type(exc).__name__}: {exc}"
        ) from exc
    got = tuple(getattr(scores, "shape", ()))
    if got != (batch,):
        raise ValueError(
            f"The callable target must return one score per example, shape ({batch},); it returned "
            f"shape {got} for logits of shape {shape}. Reduce other axes, e.g. "
            "`lambda y: keras.ops.sum(y * mask, axis=(1, 2, 3))`."
        )
    if tape.gradient(scores, logits) is None:
        raise ValueError(
            "The callable target's score does not depend differentiably on the logits (an argmax, a "
            "comparison or a constant?), so there is no gradient to explain. Return a score computed "
            "from the logits, e.g. `lambda y: y[:, k]`."
        )


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

    def _trace_key(self):
        """Settings read inside the compiled functions (beyond the model and the arguments).

        Explainers of one class on one model with equal keys share their compiled functions.
        """
        return ()

    def _shared(self):
        """This model's shared state: {"functions": {...}, "targets": {...}}."""
        try:
            return _SHARED.setdefault(self.model, {"functions": {}, "targets": {}})
        except TypeError:  # a model that cannot be weakly referenced: nothing shared
            return self.__dict__.setdefault("_unshared", {"functions": {}, "targets": {}})

    def _compiled(self, name):
        """The tf.function running method `name`, shared across instances (see _SHARED)."""
        fn = self._functions.get(name)
        if fn is None:
            key = (type(self), name, self.scorer.signature(), self._trace_key())
            functions = self._shared()["functions"]
            fn = functions.get(key)
            if fn is None:
                fn = functions[key] = tf.function(_bound_to_active(getattr(type(self), name)))
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

    def _canonical(self, score_fn, batch):
        """The callable target as the compiled functions see it: one object per distinct target.

        A compiled function is traced once per target object, and what the target reads is
        fixed in the trace. Two plain functions are one target when they share code, globals,
        and closure and default values (NumPy arrays by content, so an array refilled in place
        is a new target); `lambda y: y[:, 3]` written in a loop is traced once, `lambda y:
        y[:, k]` once per k. Other callables are told apart by identity. A new target is
        checked once on dummy logits, so a wrong shape or a score that does not depend on the
        logits gets a clear error before any tracing.
        """
        key = _target_key(score_fn)
        targets = self._shared()["targets"]
        wrapped = targets.get(key)
        if wrapped is None:
            _check_target(score_fn, self.scorer.logits_shape(), batch)
            wrapped = targets[key] = _Target(score_fn)
        return wrapped

    def _prepare(self, inputs, target):
        x = check_images(inputs, self.scorer.input_shape)
        self.scorer.check_outputs(x[: min(8, self.batch_size)])
        classes, score_fn = resolve_target(target, x.shape[0], self.scorer.num_classes, self.scorer.output_shape)
        return x, classes, None if score_fn is None else self._canonical(score_fn, len(x))

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
