"""Blur Integrated Gradients (Xu et al., 2020): integrated gradients along a path of blurs.

The path runs from the input blurred with a Gaussian of `max_sigma` down to the input itself,
so no baseline image is needed and the path never leaves the space of natural-looking images.
A blur with zero padding is linear and separable: along each spatial axis it is an (n, n)
matrix, built inside the compiled loop for each copy's sigma with its exact derivative in
sigma, so the copies and their path derivatives cost a few small matrix products each.
"""

import math

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import batch_of, merge_leading, over_chunks, plan_chunks
from keras_interp.explainers.gradients import GradientExplainer, path_points, sum_over_channels
from keras_interp.targets import select_scores

__all__ = ["BlurIntegratedGradients", "blur_matrices"]

_SPATIAL = "hwdpq"
# A sigma this small is no blur at all (a one-pixel offset then weighs exp(-5e5)): sigma 0 is
# clamped to it so the matrices and their derivatives stay finite.
_TINY_SIGMA = 1e-3


def blur_matrices(sigmas, n, reach):
    """(B, dB/dsigma), each (k, n, n): the 1-D Gaussian blur with zero padding (scipy's
    gaussian_filter with mode="constant", not truncated) for each of the k sigmas, and its
    derivative. Row i weighs pixel j by exp(-(i - j)^2 / 2 sigma^2) / Z, Z the kernel's sum
    over the offsets -reach..reach (whose tail beyond is negligible)."""
    s = tf.maximum(tf.cast(sigmas, tf.float32), _TINY_SIGMA)[:, None, None]
    offsets = tf.cast(tf.range(-reach, reach + 1), tf.float32)[None, None, :] ** 2
    kernel = tf.exp(-offsets / (2 * s * s))
    z = tf.reduce_sum(kernel, axis=-1, keepdims=True)
    mean_square = tf.reduce_sum(kernel * offsets, axis=-1, keepdims=True) / z  # E[j^2] under the kernel
    positions = tf.range(n)
    d2 = tf.cast(positions[:, None] - positions[None, :], tf.float32)[None] ** 2
    weights = tf.exp(-d2 / (2 * s * s)) / z
    # d/ds of exp(-d^2 / 2 s^2) / Z(s) = w (d^2 - E[j^2]) / s^3
    return weights, weights * (d2 - mean_square) / (s * s * s)


def _along(t, matrix, axis, rank):
    """matrix (k, n, n) applied along spatial `axis` of t (k, B, *spatial, C)."""
    letters = _SPATIAL[:rank]
    before = "kb" + letters + "c"
    after = before.replace(letters[axis], "y")
    return tf.einsum(f"ky{letters[axis]},{before}->{after}", matrix, t)


def blurred_copies(x, matrices, derivative=True):
    """(copies (k, B, *spatial, C), d copies / d sigma or None): x blurred along every spatial axis
    by matrices[a] = (B_a, dB_a) for each of its k sigmas. The derivative is carried along with
    the value, axis by axis (product rule: d(B v) = B dv + dB v), 3n - 1 matrix products for n
    axes; without it, n."""
    rank = len(matrices)
    k = tf.shape(matrices[0][0])[0]
    value = tf.broadcast_to(x[None], tf.concat([[k], tf.shape(x)], 0))
    d_value = None
    for axis, (blur, d_blur) in enumerate(matrices):
        if derivative:
            moved = _along(value, d_blur, axis, rank)
            d_value = moved if d_value is None else _along(d_value, blur, axis, rank) + moved
        value = _along(value, blur, axis, rank)
    return value, d_value


class BlurIntegratedGradients(GradientExplainer):
    """Blur Integrated Gradients (Xu et al., 2020): the integral of the gradient along the path
    of Gaussian blurs of the input, from sigma = `max_sigma` to 0.

    attr = -integral_0^max_sigma d score / d x (b(s)) * d b(s) / d s ds, b(s) the input blurred
    with sigma s (zero padding, as PAIR's code with scipy's mode="constant"; channels and the
    batch are not blurred). Completeness: attr sums to score(x) - score(b(max_sigma)), the gap
    given by `attribute(..., return_delta=True)`. The integral uses `steps` points of `method`
    ("gausslegendre", "riemann_midpoint", "riemann_trapezoid") and the blur's exact derivative
    in sigma; PAIR's code uses a left Riemann sum and a finite difference (same integral).

    `attribute` gives the signed (B, ..., C); `explain` |its sum over channels|, as for
    Integrated Gradients. Images, signals and volumes are blurred along all their spatial axes.

    Args:
        model: Keras model with one signal, image or volume input.
        max_sigma: the blur at the path's start, in pixels (PAIR's default 50 blurs a 224 x 224
            image to almost nothing).
        steps: number of points on the path (forward+backward passes).
        method: quadrature rule, as for IntegratedGradients.
        batch_size: most images per forward pass; path points are streamed in chunks.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> attr, delta = ki.BlurIntegratedGradients(model, max_sigma=50).attribute(x, return_delta=True)
    """

    def __init__(self, model, max_sigma=50.0, steps=100, method="gausslegendre", batch_size=128, output=None,
                 jit_compile=None):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive int; received {steps!r}.")
        if (isinstance(max_sigma, bool) or not isinstance(max_sigma, (int, float, np.number))
                or not math.isfinite(max_sigma) or max_sigma <= 0):
            raise ValueError(f"max_sigma must be a finite number > 0 (pixels); received {max_sigma!r}.")
        alphas, weights = path_points(steps, method)
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        shapes = self.scorer.input_shapes
        if shapes is not None and (len(shapes) > 1 or len(shapes[0]) not in (3, 4, 5)):
            raise ValueError(
                "BlurIntegratedGradients blurs one signal, image or volume input; the model's inputs are "
                f"{self.scorer.input_names} with shapes {[tuple(s) for s in shapes]}.")
        self.max_sigma, self.steps, self.method = float(max_sigma), steps, method
        self._sigmas = (alphas * self.max_sigma).astype(np.float32)
        self._weights = (weights * self.max_sigma).astype(np.float32)

    @staticmethod
    def reduce(attributions):
        return tf.abs(sum_over_channels(attributions))

    def _reach(self, size):
        # The kernel's normalisation runs over offsets to 6 sigma (its tail beyond is below
        # 1e-8), and at least over the image (a blur that reaches past it loses that mass).
        return int(math.ceil(6 * self.max_sigma)) + int(size)

    def _arguments(self, x, classes, score_fn):
        per = plan_chunks(self.steps, batch_of(x), self.batch_size)
        return (x, classes, score_fn, self._sigmas, self._weights, per)

    def _matrices(self, x, sigmas):
        sizes = x.shape[1:-1]
        return [blur_matrices(sigmas, n, self._reach(n)) for n in sizes]

    def _attribution(self, x, classes, score_fn, sigmas, weights, per):
        at_x, classes = select_scores(self.scorer(x), classes, score_fn)

        def chunk(total, _, ids):
            k = tf.shape(ids)[0]
            copies, d_copies = blurred_copies(x, self._matrices(x, tf.gather(sigmas, ids)))
            points = merge_leading(copies)
            with tf.GradientTape() as tape:
                tape.watch(points)
                scores, _ = select_scores(self.scorer(points), tf.tile(classes, [k]), score_fn)
            grads = tape.gradient(scores, points, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = tf.reshape(grads, tf.shape(copies))
            # The path runs from max_sigma down to 0: the sign of d b / d s flips.
            return total - tf.tensordot(tf.gather(weights, ids), d_copies * grads, axes=1)

        attr = over_chunks(chunk, tf.zeros_like(x), self.steps, per, xla=self.tracing_xla())
        start, _ = blurred_copies(x, self._matrices(x, tf.constant([self.max_sigma])), derivative=False)
        at_start, _ = select_scores(self.scorer(start[0]), classes, score_fn)
        delta = tf.reduce_sum(attr, axis=list(range(1, len(x.shape)))) - (at_x - at_start)
        return attr, delta

    def attribute(self, inputs, target=None, return_delta=False):
        """Signed attributions of the input's shape; with return_delta also the completeness gap
        (B,): sum(attr) - (score(x) - score(x blurred with max_sigma))."""
        attr, delta = self._run("_attribution", inputs, target)
        return (attr, delta) if return_delta else attr
