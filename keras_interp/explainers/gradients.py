"""Gradient attributions: saliency, Gradient x Input, SmoothGrad and Integrated Gradients.

All three differentiate the target's pre-softmax score with respect to the input. SmoothGrad and
Integrated Gradients average gradients over many perturbed copies of the input; those copies
are generated inside one compiled loop, a bounded chunk at a time, so memory stays flat as
`samples` or `steps` grow and nothing is retraced between calls of the same shape.
"""

import numpy as np
import tensorflow as tf

from keras_interp.checks import check_images
from keras_interp.explainers.base import Explainer
from keras_interp.explainers.chunks import batch_of, broadcast_baseline, fused, merge_leading, over_chunks, plan_chunks
from keras_interp.targets import select_scores

__all__ = ["Saliency", "GradientInput", "SmoothGrad", "SquareGrad", "VarGrad", "IntegratedGradients", "ExpectedGradients", "GradientExplainer"]


def max_abs_over_channels(attributions):
    return tf.reduce_max(tf.abs(attributions), axis=-1)


def sum_over_channels(attributions):
    """The signed channel sum: for Integrated Gradients the map then still sums to the score's
    change from the baseline (completeness), and shows evidence against the class as negative."""
    return tf.reduce_sum(attributions, axis=-1)


def _map(fn, x, *rest):
    """fn over one input or each of a tuple of inputs (with the matching entries of `rest`)."""
    if isinstance(x, (tuple, list)):
        return tuple(fn(*args) for args in zip(x, *rest))
    return fn(x, *rest)


def _value_range(x):
    axes = tuple(range(1, x.ndim))
    return x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True)


class GradientExplainer(Explainer):
    """Base for explainers whose raw result is a signed input-space attribution.

    `attribute(inputs, target)` returns (B, ..., C), the input's shape; `explain` reduces it to
    (B, ...) with the class's `reduce` (TensorFlow ops, run inside the same compiled function).
    A model with several inputs gets one attribution per input, and a feature-vector input
    (B, F) is reduced to |attribution| per feature. Subclasses write
    `_attribution(x, classes, score_fn, *extra)` in TensorFlow ops (x a tensor, or a tuple of
    them for several inputs) and `_arguments`.
    """

    reduce = staticmethod(max_abs_over_channels)

    def _one_input_shape(self):
        """The input's shape (None when unknown), or a ValueError for a model with several."""
        shapes = self.scorer.input_shapes
        if shapes is not None and len(shapes) > 1:
            raise ValueError(f"{type(self).__name__} takes models with one input; this one has {len(shapes)} "
                             f"{self.scorer.input_names}.")
        return None if shapes is None else shapes[0]

    def _reduce_one(self, attributions):
        return tf.abs(attributions) if len(attributions.shape) == 2 else self.reduce(attributions)

    def _reduced(self, *args):
        return _map(self._reduce_one, self._attribution(*args)[0])

    def _per_example(self, x):
        """Arrays aligned with the batch (one row per example), sliced with it."""
        return ()

    def _arguments(self, x, classes, score_fn):
        return (x, classes, score_fn)

    def _run(self, name, inputs, target):
        x, classes, score_fn = self._prepare(inputs, target)

        def call(xb, cb, *rows):
            return self._call(name, *self._arguments(xb, cb, score_fn, *rows))

        return self._batched(call, x, classes, *self._per_example(x))

    def attribute(self, inputs, target=None):
        """Signed attributions, float32, of the inputs' shape: (B, H, W, C) for images; one per
        input (a list, or a dict when the inputs were given as one) for several inputs."""
        return self._pack(self._run("_attribution", inputs, target)[0])

    def explain(self, inputs, target=None):
        """Maps (B, H, W), (B, L) or (B, D, H, W), float32; one per input for several inputs."""
        return self._pack(self._run("_reduced", inputs, target))


class Saliency(GradientExplainer):
    """Saliency map (Simonyan et al., 2014): the gradient of the class logit w.r.t. the input.

    `attribute` gives the signed gradient; `explain` the maximum of its absolute value over
    channels.

    Args:
        model: Keras model (several inputs give one gradient per input).
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> maps = ki.Saliency(model).explain(images)          # (B, H, W)
    """

    def _attribution(self, x, classes, score_fn):
        return self._gradient_and_logits(x, classes, score_fn)[:1]

    def _gradient_and_logits(self, x, classes, score_fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = self.scorer(x)
            scores, _ = select_scores(logits, classes, score_fn)
        # An input the explained output does not use gets a zero attribution, not None.
        return tape.gradient(scores, x, unconnected_gradients=tf.UnconnectedGradients.ZERO), logits

    def _reduced_and_logits(self, x, classes, score_fn):
        gradient, logits = self._gradient_and_logits(x, classes, score_fn)
        return _map(self._reduce_one, gradient), logits

    def explain_with_logits(self, inputs, target=None):
        """(maps, logits) from one pass: the logits are the ones the gradient was taken through."""
        if type(self)._attribution is not Saliency._attribution:  # a subclass changing the map
            return super().explain_with_logits(inputs, target)
        maps, logits = self._run("_reduced_and_logits", inputs, target)
        return self._pack(maps), logits


class GradientInput(Saliency):
    """Gradient x Input (Shrikumar et al., 2016): x * d score / d x, elementwise.

    `attribute` gives the signed product (B, H, W, C); `explain` its sum over channels, signed
    (positive where the input raises the score). On a linear model f(x) = w.x + b the product
    is w x, and the map sums to f(x) - b.

    Args:
        model: Keras model (several inputs give one attribution per input).
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> maps = ki.GradientInput(model).explain(images)     # (B, H, W), signed
    """

    reduce = staticmethod(sum_over_channels)
    signed = True

    def _attribution(self, x, classes, score_fn):
        (grads,) = super()._attribution(x, classes, score_fn)
        return (_map(tf.multiply, x, grads),)


# The chunk's copies in one pass over memory (see base.fused): (B, ...) examples -> (k, B, ...).
@fused
def _noisy_copies(x, sigma, noise):
    """x + sigma * noise for (k, ...) noise draws and (B, 1, ...) per-example scales."""
    return x[None] + sigma[None] * noise[:, None]


@fused
def _path_copies(x, baseline, alphas):
    """baseline + alpha (x - baseline) for (k, 1, ...) path positions."""
    return baseline[None] + alphas * (x - baseline)[None]


class _SampledGradients(GradientExplainer):
    """Weighted sum over samples s of d score / d x evaluated at perturb(x, s).

    Subclasses define `_perturb(x, ids, params) -> (k, B, H, W, C)` in TensorFlow ops.
    """

    def _copy_gradients(self, x, ids, params, classes, score_fn):
        """(k, d score / d copy) for the k perturbed copies `ids` of the examples x, k-major."""
        k = tf.shape(ids)[0]
        xs = _map(merge_leading, self._perturb(x, ids, params))
        with tf.GradientTape() as tape:
            tape.watch(xs)
            scores, _ = select_scores(self.scorer(xs), tf.tile(classes, [k]), score_fn)
        return k, tape.gradient(scores, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _sum_gradients(self, x, classes, score_fn, params, weights, per, power=1):
        """(sum_s weights[s] g_s ** power, the clean inputs' scores, the classes explained)."""
        # The class to explain is the clean input's, not each noisy or scaled copy's.
        scores, classes = select_scores(self.scorer(x), classes, score_fn)

        def chunk(total, _, ids):
            k, grads = self._copy_gradients(x, ids, params, classes, score_fn)
            if power != 1:
                grads = _map(lambda g: g ** power, grads)
            w = tf.gather(weights, ids)
            return _map(
                lambda t, g, xi: t + tf.tensordot(w, tf.reshape(g, tf.concat([[k], tf.shape(xi)], 0)), axes=1),
                total, grads, x,
            )

        return over_chunks(chunk, _map(tf.zeros_like, x), weights.shape[0], per, xla=self.tracing_xla()), scores, classes

    def _chunks(self, x, count):
        return plan_chunks(count, batch_of(x), self.batch_size)


class SmoothGrad(_SampledGradients):
    """SmoothGrad (Smilkov et al., 2017): gradients averaged over noisy copies of the input.

    Noise is Gaussian with standard deviation `noise` times each image's value range
    (max - min), so the setting means the same for [0, 1] and [0, 255] inputs. Noise comes from
    a stateless generator seeded with `seed` and the sample index: results are deterministic,
    independent of batch composition, and the global random state is never touched. With
    jit_compile=True, XLA's generator draws other numbers for the same seed (an equally valid
    SmoothGrad estimate, deterministic too); jit_compile="auto" therefore stays plain.

    `attribute` is the mean gradient (B, H, W, C); `explain` its max |.| over channels.

    Args:
        model: Keras model.
        samples: number of noisy copies per image.
        noise: noise level relative to the image's value range (the paper uses 0.1-0.2).
        seed: integer seed for the noise.
        batch_size: most images per forward pass; copies are streamed in chunks of this size.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> maps = ki.SmoothGrad(model, samples=25, noise=0.15).explain(images)
    """

    xla_changes_draws = True  # see Explainer: jit_compile="auto" keeps SmoothGrad plain

    def __init__(self, model, samples=25, noise=0.15, seed=0, batch_size=128, output=None, jit_compile=None):
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int; received {samples!r}.")
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0; received {noise!r}.")
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.samples, self.noise, self.seed = samples, float(noise), int(seed)

    def _perturb(self, x, ids, params):
        sigma, seed = params

        def noisy(xi, s, j):
            # Input j draws from its own stream (seed + j); a single input keeps the seed.
            shape = tf.shape(xi)[1:]
            noise = tf.map_fn(
                lambda i: tf.random.stateless_normal(shape, seed=tf.stack([seed + j, i])),
                ids,
                fn_output_signature=tf.float32,
            )
            return _noisy_copies(xi, s, noise)

        if isinstance(x, tuple):
            return tuple(noisy(xi, s, j) for j, (xi, s) in enumerate(zip(x, sigma)))
        return noisy(x, sigma, 0)

    def _arguments(self, x, classes, score_fn):
        sigma = _map(lambda xi: (self.noise * _value_range(xi)).astype(np.float32), x)
        weights = np.full(self.samples, 1.0 / self.samples, np.float32)
        return (x, classes, score_fn, sigma, np.int32(self.seed), weights, self._chunks(x, self.samples))

    def _attribution(self, x, classes, score_fn, sigma, seed, weights, per):
        total, _, _ = self._sum_gradients(x, classes, score_fn, (sigma, seed), weights, per)
        return (total,)


class SquareGrad(SmoothGrad):
    """SquareGrad (Hooker et al., 2019): the mean of the squared gradients over SmoothGrad's noisy
    copies (the same draws as SmoothGrad with the same seed).

    `attribute` is E[g^2] (B, H, W, C), non-negative; `explain` its max over channels.

    Args:
        model, samples, noise, seed, batch_size, output, jit_compile: as for SmoothGrad.

    Example:
        >>> maps = ki.SquareGrad(model, samples=25, noise=0.15).explain(images)
    """

    def _attribution(self, x, classes, score_fn, sigma, seed, weights, per):
        total, _, _ = self._sum_gradients(x, classes, score_fn, (sigma, seed), weights, per, power=2)
        return (total,)


class VarGrad(SmoothGrad):
    """VarGrad (Adebayo et al., 2018): the variance of the gradients over SmoothGrad's noisy
    copies (the same draws as SmoothGrad with the same seed), the population variance (1/N, as
    Xplique 1.x; Xplique 2.x scales it by N / (N - 1)).

    Computed in one pass over the copies from the running sums of d = g - g0, g0 the clean
    input's gradient (one more backward pass): E[d^2] - E[d]^2 is the variance of g, and
    shifting by g0 keeps float32 from cancelling when the noise is small (the plain E[g^2] -
    E[g]^2 lost all precision at noise 0.001). Needs samples >= 2.

    `attribute` is the variance (B, H, W, C); `explain` its max over channels.

    Args:
        model, samples, noise, seed, batch_size, output, jit_compile: as for SmoothGrad.

    Example:
        >>> maps = ki.VarGrad(model, samples=25, noise=0.15).explain(images)
    """

    def __init__(self, model, samples=25, noise=0.15, seed=0, batch_size=128, output=None, jit_compile=None):
        if isinstance(samples, int) and samples < 2:
            raise ValueError(f"VarGrad needs samples >= 2 (a variance of one sample is 0); received {samples!r}.")
        super().__init__(model, samples=samples, noise=noise, seed=seed, batch_size=batch_size, output=output,
                         jit_compile=jit_compile)

    def _sum_gradients(self, x, classes, score_fn, params, weights, per, power=1):
        # Both moments from one pass over the copies: the chunk state holds (sum d, sum d^2) with
        # d = g - g0, the clean input's gradient.
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores, classes = select_scores(self.scorer(x), classes, score_fn)
        reference = tape.gradient(scores, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        def chunk(state, _, ids):
            k, grads = self._copy_gradients(x, ids, params, classes, score_fn)
            w = tf.gather(weights, ids)

            def add(total, g, xi, g0, square=False):
                d = tf.reshape(g, tf.concat([[k], tf.shape(xi)], 0)) - g0[None]
                return total + tf.tensordot(w, tf.square(d) if square else d, axes=1)

            first, second = state
            return (_map(add, first, grads, x, reference),
                    _map(lambda t, g, xi, g0: add(t, g, xi, g0, square=True), second, grads, x, reference))

        zeros = _map(tf.zeros_like, x)
        first, second = over_chunks(chunk, (zeros, zeros), weights.shape[0], per, xla=self.tracing_xla())
        return _map(lambda m1, m2: tf.nn.relu(m2 - tf.square(m1)), first, second), scores, classes


class ExpectedGradients(GradientExplainer):
    """Expected Gradients (Erion et al., 2021; GradientSHAP): the expectation, over baselines x'
    drawn from a data set and a ~ U(0, 1), of (x - x') * d score / d x at x' + a (x - x').

    Sample s draws its baseline index and its a with `numpy.random.default_rng(seed)` (indices
    first, then the a's), the same for every example: results do not depend on the batch. On a
    linear model the attribution is (x - mean of the drawn x') * w, and completeness holds in
    expectation: the attribution sums to about score(x) - E[score(x')].

    `attribute` gives the signed (B, H, W, C); `explain` |its sum over channels|, as for
    Integrated Gradients.

    Args:
        model: Keras model with one input.
        baselines: (N, H, W, C) reference examples in the model's input space (e.g. a few
            hundred training images).
        samples: number of (baseline, a) draws per example.
        seed: seeds the draws.
        batch_size: most images per forward pass; the samples are streamed in chunks.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> attr = ki.ExpectedGradients(model, x_train[:200], samples=64).attribute(images)
    """

    def __init__(self, model, baselines, samples=64, seed=0, batch_size=128, output=None, jit_compile=None):
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise ValueError(f"samples must be a positive int; received {samples!r}.")
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.baselines = check_images(baselines, self._one_input_shape(), name="baselines")
        self.samples, self.seed = samples, int(seed)
        rng = np.random.default_rng(self.seed)
        self._indices = rng.integers(0, len(self.baselines), samples).astype(np.int32)
        self._alphas = rng.uniform(0.0, 1.0, samples).astype(np.float32)

    @staticmethod
    def reduce(attributions):
        return tf.abs(tf.reduce_sum(attributions, axis=-1))

    def _arguments(self, x, classes, score_fn):
        per = plan_chunks(self.samples, batch_of(x), self.batch_size)
        return (x, classes, score_fn, self.baselines, self._indices, self._alphas, per)

    def _attribution(self, x, classes, score_fn, baselines, indices, alphas, per):
        _, classes = select_scores(self.scorer(x), classes, score_fn)
        weight = 1.0 / self.samples

        def chunk(total, _, ids):
            k = tf.shape(ids)[0]
            chosen = tf.gather(baselines, tf.gather(indices, ids))[:, None]  # (k, 1, H, W, C)
            a = tf.reshape(tf.gather(alphas, ids), [-1] + [1] * len(x.shape))
            xs = merge_leading(chosen + a * (x[None] - chosen))
            with tf.GradientTape() as tape:
                tape.watch(xs)
                scores, _ = select_scores(self.scorer(xs), tf.tile(classes, [k]), score_fn)
            grads = tape.gradient(scores, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = tf.reshape(grads, tf.concat([[k], tf.shape(x)], 0))
            return total + weight * tf.reduce_sum((x[None] - chosen) * grads, axis=0)

        return (over_chunks(chunk, tf.zeros_like(x), self.samples, per, xla=self.tracing_xla()),)


def path_points(steps, method):
    """(alphas, weights) of a quadrature rule for the integral over [0, 1]."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if method == "riemann_midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2.")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    raise ValueError(
        f"Unknown integration method {method!r}; choose 'gausslegendre', 'riemann_midpoint' "
        "or 'riemann_trapezoid'."
    )


class IntegratedGradients(_SampledGradients):
    """Integrated Gradients (Sundararajan et al., 2017).

    attr = (x - x') * integral_0^1 d score / d x (x' + a (x - x')) da, approximated with
    `steps` points of `method` ("gausslegendre", "riemann_midpoint", "riemann_trapezoid").
    Completeness: attr sums to score(x) - score(x'); `attribute(..., return_delta=True)` also
    returns that gap per example.

    `explain` is |sum of attr over channels|.

    Args:
        model: Keras model.
        steps: number of points on the path.
        baseline: x' in the model's input space: a scalar, an (H, W, C) image or one per
            example (B, H, W, C).
        method: quadrature rule.
        batch_size: most images per forward pass; path points are streamed in chunks.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Several inputs move along the path together (one baseline for all, or a list or dict with
    one per input), and completeness holds for the sum over all of them.

    Example:
        >>> attr, delta = ki.IntegratedGradients(model, steps=64).attribute(x, return_delta=True)
    """

    def __init__(self, model, steps=64, baseline=0.0, method="gausslegendre", batch_size=128, output=None,
                 jit_compile=None):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int; received {steps!r}.")
        alphas, weights = path_points(steps, method)
        self._alphas, self._weights = alphas.astype(np.float32), weights.astype(np.float32)
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.steps, self.baseline, self.method = steps, baseline, method

    @staticmethod
    def reduce(attributions):
        return tf.abs(tf.reduce_sum(attributions, axis=-1))

    def _perturb(self, x, ids, params):
        baseline, alphas = params

        def point(xi, bi):
            return _path_copies(xi, bi, tf.reshape(tf.gather(alphas, ids), [-1] + [1] * len(xi.shape)))

        return _map(point, x, baseline)

    def _per_example(self, x):
        return (broadcast_baseline(self.baseline, x, names=self.scorer.input_names),)

    def _arguments(self, x, classes, score_fn, baseline):
        return (x, classes, score_fn, baseline, self._alphas, self._weights, self._chunks(x, self.steps))

    def _attribution(self, x, classes, score_fn, baseline, alphas, weights, per):
        params = (baseline, alphas)
        mean_grad, at_x, classes = self._sum_gradients(x, classes, score_fn, params, weights, per)
        attr = _map(lambda xi, bi, g: (xi - bi) * g, x, baseline, mean_grad)
        at_baseline, _ = select_scores(self.scorer(baseline), classes, score_fn)
        total = sum(tf.reduce_sum(a, axis=list(range(1, len(a.shape)))) for a in tf.nest.flatten(attr))
        delta = total - (at_x - at_baseline)
        return attr, delta

    def attribute(self, inputs, target=None, return_delta=False):
        """Signed attributions of the inputs' shape (one per input for several inputs); with
        return_delta also the completeness gap (B,): sum(attr) - (score(x) - score(baseline)),
        the sum running over every input."""
        attr, delta = self._run("_attribution", inputs, target)
        attr = self._pack(attr)
        return (attr, delta) if return_delta else attr
