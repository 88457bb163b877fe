"""One gradient-ascent engine for class models, channel images and Deep Dream.

An objective maps a batch of images (N, H, W, C) to one score per image. Each step takes the
gradient of the scores, normalizes it per image by its mean magnitude (so `step_size` is in
pixel units whatever the model's scale), moves the images up it, applies the regularizers in
order and clips to the value range. All N images (every class or channel asked for) go
through one batch, and the steps run in one compiled loop traced once per image shape.

A regularizer is a small callable `r(x, state) -> x` in TensorFlow ops, applied after each step;
`state` holds `grad` (the normalized gradient), `step`, `steps` (the run's length) and `seed`
(int32 tensors) and `low`, `high` (the value range). A regularizer with `before_step = True` instead transforms the image
the objective sees (`Jitter`); the gradient flows back through it, so it is undone.
"""

import collections
import math

import numpy as np
import tensorflow as tf

from keras_interp.compat import progress_bar

__all__ = ["GradientAscent", "Ascent", "State", "L2Decay", "GaussianBlur", "Jitter", "ClipNorm",
           "ClipContribution", "resolve_value_range", "yosinski_defaults"]

State = collections.namedtuple("State", "grad step steps seed low high")
Ascent = collections.namedtuple("Ascent", "images history")
Ascent.__doc__ = """Result of a run: images (N, H, W, C) float32 and history (steps, N), the
objective of every image as each step saw it (before that step's update, through the jitter)."""


def resolve_value_range(value_range):
    """(low, high) from a pair, from example images (their min and max), or [0, 1] for None."""
    if value_range is None:
        return 0.0, 1.0
    values = np.asarray(value_range, dtype=np.float64)
    if values.shape == (2,):
        low, high = float(values[0]), float(values[1])
    elif values.ndim >= 3 and values.size:
        low, high = float(values.min()), float(values.max())
    else:
        raise ValueError(
            f"value_range must be (low, high) or example images to take the range from; received an "
            f"array of shape {values.shape}."
        )
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"value_range must be finite with low < high; received ({low}, {high}).")
    return low, high


class L2Decay:
    """Pull every pixel toward the middle of the value range by `rate` per step (Yosinski's
    decay, around the range's centre rather than 0 so [0, 1] images do not darken)."""

    def __init__(self, rate=1e-4):
        self.rate = float(rate)

    def __call__(self, x, state):
        centre = (state.low + state.high) / 2
        return x - self.rate * (x - centre)


def _gaussian_taps(sigma):
    radius = max(1, math.ceil(4 * sigma))  # scipy's gaussian_filter (Yosinski's blur) truncates at 4 sigma
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32), radius


def gaussian_blur(x, sigma):
    """Per-channel Gaussian blur of (N, H, W, C) images, borders reflected; separable (a column
    pass then a row pass: 2k taps per pixel instead of k^2)."""
    taps, radius = _gaussian_taps(sigma)
    channels = x.shape[-1]
    column = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    row = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, column, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, row, [1, 1, 1, 1], "VALID")


class GaussianBlur:
    """Gaussian blur of standard deviation `sigma` pixels every `every` steps (Yosinski's
    theta_b_width and theta_b_every): smooths away high-frequency patterns. Never on the last
    step, so a run ends on a gradient step (a final blur of a 64x64 image can undo most of
    what the steps since the previous blur gained)."""

    def __init__(self, sigma=1.0, every=4):
        if sigma <= 0 or int(every) < 1:
            raise ValueError(f"GaussianBlur needs sigma > 0 and every >= 1; received sigma={sigma}, every={every}.")
        self.sigma, self.every = float(sigma), int(every)

    def __call__(self, x, state):
        due = tf.equal(state.step % self.every, self.every - 1) & (state.step < state.steps - 1)
        return tf.cond(due, lambda: gaussian_blur(x, self.sigma), lambda: x)


class Jitter:
    """Roll the image the objective sees by a random offset of up to `pixels` in each direction
    (seeded by the run's seed and the step), so no pattern can rely on exact pixel positions."""

    before_step = True

    def __init__(self, pixels=4):
        if not isinstance(pixels, (int, np.integer)) or isinstance(pixels, bool) or pixels < 0:
            raise ValueError(f"Jitter takes a number of pixels >= 0; received {pixels!r}.")
        self.pixels = int(pixels)

    def __call__(self, x, state):
        if self.pixels < 1:
            return x
        shift = tf.random.stateless_uniform(
            [2], seed=tf.stack([state.seed, state.step]), minval=-self.pixels, maxval=self.pixels + 1, dtype=tf.int32
        )
        return tf.roll(x, shift, axis=[1, 2])


def _per_image_quantile(values, fraction):
    """The `fraction` quantile of each image's values (N, H, W) -> (N, 1, 1)."""
    flat = tf.sort(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
    index = tf.cast(tf.round(fraction * tf.cast(tf.shape(flat)[1] - 1, tf.float32)), tf.int32)
    return flat[:, index][:, None, None]


def _fraction(percentile, name):
    if not isinstance(percentile, (int, float, np.integer, np.floating)) or not 0 <= percentile <= 100:
        raise ValueError(f"{name} takes a percentile in [0, 100]; received {percentile!r}.")
    return float(percentile) / 100


class ClipNorm:
    """Reset the pixels whose norm (over channels, around the range's centre) is in the lowest
    `percentile` percent of the image to the centre (Yosinski's theta_n_pct)."""

    def __init__(self, percentile=10.0):
        self.fraction = _fraction(percentile, "ClipNorm")

    def __call__(self, x, state):
        centre = (state.low + state.high) / 2
        norm = tf.norm(x - centre, axis=-1)
        return tf.where((norm < _per_image_quantile(norm, self.fraction))[..., None], centre, x)


class ClipContribution:
    """Reset the pixels whose contribution |sum_c x * grad| is in the lowest `percentile` percent
    of the image to the centre (Yosinski's theta_c_pct)."""

    def __init__(self, percentile=10.0):
        self.fraction = _fraction(percentile, "ClipContribution")

    def __call__(self, x, state):
        centre = (state.low + state.high) / 2
        contribution = tf.abs(tf.reduce_sum((x - centre) * state.grad, axis=-1))
        low = contribution < _per_image_quantile(contribution, self.fraction)
        return tf.where(low[..., None], centre, x)


def check_steps(steps):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int; received {steps!r}.")


def yosinski_defaults(steps):
    """Yosinski et al. (2015)'s most used setting (L2 decay 1e-4, Gaussian blur of radius 1.0
    every 4 steps, over 1000 steps) for a run of `steps` steps.

    The decay is scaled so the run shrinks the image as much as 1000 steps would. The blur keeps
    its cadence of one every 4 steps: spreading the 250 blurs of 1000 steps over fewer steps
    (every step for 200) smooths away the ascent itself (measured on a trained 24x24 model: the
    class images then beat the best real image on 2 of 4 classes, against 4 of 4).
    """
    rate = 1 - (1 - 1e-4) ** (1000 / steps)
    return [L2Decay(rate), GaussianBlur(1.0, every=4)]


class GradientAscent:
    """Batched, compiled gradient ascent of `objective` over images.

    Args:
        objective: callable (N, H, W, C) float32 images -> (N,) float32 scores, in TF ops.
        regularizers: callables applied in order each step (see the module docstring).
        value_range: (low, high) every pixel stays in.
        step_size: how far one step moves a pixel on average, as a fraction of the range.
        gradient: optional callable (x, state, view, objective) -> (scores, grad) replacing the
            plain tape gradient of objective(view(x, state)) (Deep Dream computes it tile by tile).
        keep_best: return, per image, the iterate with the highest objective rather than the
            last one (the blur every few steps makes the objective saw-toothed, and the last
            iterate can sit just after a drop). Iterates are scored as their step saw them
            (through a jitter, if any), the last one directly. An image whose objective was
            never finite (a model giving NaN) comes back as NaN.

    Example:
        >>> ascent = GradientAscent(lambda x: scorer(x)[:, 3], [L2Decay(1e-4)], (0.0, 1.0))
        >>> images, history = ascent.run(init, steps=200, seed=0)
    """

    def __init__(self, objective, regularizers=(), value_range=(0.0, 1.0), step_size=0.01, gradient=None,
                 keep_best=False):
        self.objective = objective
        if callable(regularizers) or not isinstance(regularizers, (list, tuple)):
            raise TypeError(f"regularizers must be a list of callables (x, state) -> x; received {regularizers!r}.")
        self.regularizers = list(regularizers)
        for r in self.regularizers:
            if not callable(r):
                raise TypeError(f"A regularizer must be a callable (x, state) -> x; received {r!r}.")
        self.low, self.high = resolve_value_range(value_range)
        if not isinstance(step_size, (int, float, np.integer, np.floating)) or not step_size > 0:
            raise ValueError(f"step_size must be a number > 0; received {step_size!r}.")
        self.step_size = float(step_size)
        self._gradient = gradient or self._tape_gradient
        self.keep_best = keep_best
        self._steps = tf.function(self._steps_fn)
        self._score = tf.function(lambda x: tf.cast(self.objective(x), tf.float32))

    @property
    def trace_count(self):
        return self._steps.experimental_get_tracing_count()

    def _viewed(self, x, state):
        for r in self.regularizers:
            if getattr(r, "before_step", False):
                x = r(x, state)
        return x

    def _tape_gradient(self, x, state, view, objective):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = tf.cast(objective(view(x, state)), tf.float32)
        return scores, tape.gradient(scores, x)

    def _step_fn(self, x, step, steps, seed):
        state = State(None, step, steps, seed, self.low, self.high)
        scores, grad = self._gradient(x, state, self._viewed, self.objective)
        grad = tf.convert_to_tensor(grad)
        # A floor far below any real gradient: untrained nets can have mean |grad| ~ 1e-14.
        grad = grad / tf.maximum(tf.reduce_mean(tf.abs(grad), axis=[1, 2, 3], keepdims=True), 1e-30)
        x = x + self.step_size * (self.high - self.low) * grad
        state = state._replace(grad=grad)
        for r in self.regularizers:
            if not getattr(r, "before_step", False):
                x = r(x, state)
        return tf.clip_by_value(x, self.low, self.high), tf.cast(scores, tf.float32)

    def initial(self, shape, seed):
        """Seeded start: the range's centre plus noise of 1% of the range."""
        noise = tf.random.stateless_normal(shape, seed=[int(seed), 0x51A7])
        return np.asarray((self.low + self.high) / 2 + 0.01 * (self.high - self.low) * noise, np.float32)

    def _steps_fn(self, x, best, best_scores, first, count, steps, seed):
        """`count` steps from step `first` in one compiled loop; with keep_best, each image's best
        iterate is kept too."""
        history = tf.TensorArray(tf.float32, size=count)
        for i in tf.range(count):
            previous = x
            x, scores = self._step_fn(x, first + i, steps, seed)
            history = history.write(i, scores)
            if self.keep_best:  # decided when tracing: Deep Dream's large images skip the copy
                better = scores > best_scores  # `scores` are those of `previous`
                best = tf.where(better[:, None, None, None], previous, best)
                best_scores = tf.where(better, scores, best_scores)
        return x, best, best_scores, history.stack()

    def run(self, init, steps, seed=0, verbose=False, chunk=50):
        """Ascend from `init` (N, H, W, C) for `steps` steps; returns Ascent(images, history).

        Steps run in compiled loops of `chunk` steps (the progress bar moves per chunk)."""
        check_steps(steps)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int; received {seed!r}.")
        x = tf.constant(np.clip(np.asarray(init, np.float32), self.low, self.high))
        best, best_scores = x, tf.fill([x.shape[0]], -np.inf)
        seed_t, steps_t = tf.constant(int(seed), tf.int32), tf.constant(int(steps), tf.int32)
        history = []
        progress = progress_bar(steps, unit_name="step") if verbose else None
        for first in range(0, int(steps), chunk):
            count = min(chunk, int(steps) - first)
            x, best, best_scores, scores = self._steps(
                x, best, best_scores, tf.constant(first, tf.int32), tf.constant(count, tf.int32), steps_t, seed_t
            )
            history.append(scores.numpy())
            if progress is not None:
                progress.update(first + count, values=[("objective", float(np.mean(history[-1][-1])))])
        result = x.numpy()
        if self.keep_best:
            # The last update's image was never scored by a step: score it, and keep it if better.
            final = self._score(x)
            better = (final >= best_scores).numpy()
            result = np.where(better[:, None, None, None], result, best.numpy())
            best_scores = np.where(better, final.numpy(), best_scores.numpy())
            # No finite objective ever (a model giving NaN): say so with NaN, not the start image.
            result[~np.isfinite(best_scores)] = np.nan
        return Ascent(result, np.concatenate(history))
