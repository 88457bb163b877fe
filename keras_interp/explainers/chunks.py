"""The chunk loop the perturbation methods share, and the kernels that build their copies.

Perturbation methods (occlusion, Score-CAM, SmoothGrad, Integrated Gradients, the deletion and
insertion curves) stream their perturbed copies through the model in chunks of a bounded size,
inside one compiled function: `plan_chunks` sizes a chunk, `over_chunks` loops over them one in
flight, `fused` builds a chunk's copies in one XLA kernel.
"""

import threading

import numpy as np
import tensorflow as tf

__all__ = ["batch_of", "spatial_axes", "broadcast_baseline", "plan_chunks", "over_chunks", "merge_leading",
           "fused", "replaced_copies", "ACTIVE"]

# The thread's compiled call in progress: the explainer tracing (`explainer`), whether XLA
# compiles it (`xla`), the pass size plan_chunks chose for it (`planned`).
ACTIVE = threading.local()
_ACTIVE = ACTIVE


def batch_of(x):
    """The batch size of one input array or a tuple of them."""
    return len(x[0]) if isinstance(x, tuple) else len(x)


def spatial_axes(t):
    """The spatial axes of a (B, *spatial, C) tensor: 1 .. rank - 2."""
    return list(range(1, len(t.shape) - 1))


def broadcast_baseline(baseline, x, name="baseline", names=None):
    """A baseline (scalar, (H, W, C), (B, H, W, C) or anything broadcastable) at x's shape.

    For several inputs (x a tuple) the baseline is one value for all, or a list (in input
    order) or dict (by input name) with one per input."""
    if isinstance(x, tuple):
        if isinstance(baseline, dict):
            if names is not None and set(baseline) != set(names):
                raise ValueError(f"{name} is a dict with keys {list(baseline)}; the model's inputs are {names}.")
            values = [baseline[k] for k in names] if names else list(baseline.values())
        elif isinstance(baseline, (list, tuple)):
            values = list(baseline)
        else:
            values = [baseline] * len(x)
        if len(values) != len(x):
            raise ValueError(f"{name} gives {len(values)} values for {len(x)} inputs; give one per input.")
        return tuple(broadcast_baseline(b, xi, name) for b, xi in zip(values, x))
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
    """Perturbations per forward pass for `count` perturbations of a batch of `batch` examples:
    as many as fit in max(batch, batch_size) images, at most `count`.

    The pass size (per * batch) is noted for this thread's next Explainer._call: with
    jit_compile="auto" it is the batch its XLA-or-not probe times."""
    per = min(count, max(1, batch_size // batch))  # batch <= batch_size: Explainer._batched splits larger ones
    _ACTIVE.planned = per * batch
    return per


def over_chunks(body, state, count, per, xla):
    """The state after `body(state, index, ids) -> state` has seen `count` perturbations, `per`
    at a time (`index`: the chunk's number; `ids`: its perturbation indices, int32, whose length
    the body reads with tf.shape).

    The last chunk holds the remainder (count % per): no pass computes padding (SmoothGrad's 25
    samples in chunks of 4 would otherwise compute 28). The body is traced once, with the
    chunk's length unknown; under XLA, which needs static shapes, the remainder is traced as a
    second chunk after the loop. The loop keeps one chunk in flight (`parallel_iterations=1`): a chunk's
    forward pass does not depend on the previous chunk's result (only the sum does), so
    TensorFlow's default of 10 iterations in flight could keep up to 10 chunks' activations
    alive at once, how many depending on thread timing, so the peak memory of identical runs
    varied severalfold (docs/explainers.md, Memory, has the figures).
    """
    full, tail = divmod(count, per)

    def loop(chunks, s, last=None):
        def step(i, s):
            # Chunks of `per`, or up to `last` (exclusive) when the final one is shorter.
            ids = i * per + tf.range(per) if last is None else tf.range(i * per, tf.minimum(i * per + per, last))
            new = body(s, i, ids)
            return i + 1, tf.nest.map_structure(lambda t, old: tf.ensure_shape(t, old.shape), new, s)

        return tf.while_loop(lambda i, _: i < chunks, step, (tf.constant(0), s), parallel_iterations=1)[1]

    if not tail:
        return loop(full, state)
    if not xla:
        # One loop whose last chunk is shorter: the chunk is traced once, its length unknown.
        return loop(full + 1, state, last=count)
    # XLA needs static shapes: the remainder is traced as a chunk of its own.
    if full:
        state = loop(full, state)
    return body(state, tf.constant(full), full * per + tf.range(tail))


def merge_leading(t):
    """(k, B, ...) -> (k * B, ...): one chunk of perturbed copies as a single model batch."""
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


_XLA = {}


def _xla_available():
    """Whether this TensorFlow build compiles with XLA, probed once (eagerly, also when asked
    while a graph is being traced)."""
    if "ok" not in _XLA:
        with tf.init_scope():
            try:
                tf.function(lambda t: t + 1.0, jit_compile=True)(tf.zeros([1]))
                _XLA["ok"] = True
            except Exception:  # noqa: BLE001 - a build without XLA raises its own error types
                _XLA["ok"] = False
    return _XLA["ok"]


def fused(fn):
    """`fn`, compiled by XLA into one kernel: for the elementwise work that builds a chunk of
    perturbed copies around the model's pass.

    TensorFlow runs each op of an expression such as where(mask[:, None], baseline[None],
    x[None]) as its own pass over memory, through a general-broadcast path that is slow on CPU;
    one fused XLA loop does it in a fraction of that (docs/performance.md). The model's passes stay as the explainer's jit_compile
    says. Where the TensorFlow build has no XLA, fn runs as written (same values).
    """
    compiled = tf.function(fn, jit_compile=True)

    def call(*args):
        return compiled(*args) if _xla_available() else fn(*args)

    return call


@fused
def replaced_copies(x, replacement, mask):
    """(k * B, ..., C), k-major: k copies of the (B, ..., C) examples x with the pixels where
    `mask` ((k, B or 1, ...) bool) is true taken from `replacement` (same shape as x)."""
    return merge_leading(tf.where(mask[..., None], replacement[None], x[None]))
