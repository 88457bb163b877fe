"""Guided Integrated Gradients (Kapishnikov et al., 2021): an adaptive path from the baseline.

The path is chosen as it is walked: each step moves the features whose gradient is smallest
first, so it avoids the regions where the gradient is large for reasons unrelated to the input
(saturation, noise). The choice depends on every previous gradient, so the steps run one after
another: one compiled forward+backward pass of the batch per step, the path's bookkeeping in
NumPy (float64, one vectorised row per example) between them.
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import broadcast_baseline
from keras_interp.explainers.gradients import GradientExplainer, sum_over_channels
from keras_interp.targets import select_scores

__all__ = ["GuidedIntegratedGradients", "guided_path"]

# The L1 distance counts as reached within this tolerance (relative and absolute), as in PAIR's
# saliency library, whose tests our defaults and results follow.
_CLOSE = 1e-9
_HUGE = np.finfo(np.float64).max  # above any float32 gradient: "excluded" in the quantile


def _close(a, b):
    """math.isclose(a, b, rel_tol=_CLOSE, abs_tol=_CLOSE), elementwise."""
    return np.abs(a - b) <= np.maximum(_CLOSE * np.maximum(np.abs(a), np.abs(b)), _CLOSE)


def guided_path(x, baseline, gradient, steps, fraction, max_dist):
    """Guided IG's attributions of the rows of x (B, N) from `baseline` (B, N).

    `gradient(points)` returns d score / d input at (B, N) points. Step s moves the path's L1
    distance to x down to (1 - s / steps) of the total by moving the `fraction` of the features
    with the smallest |gradient| (ties and features already at their bound aside) towards x,
    each feature staying within `max_dist` (in path position alpha) of the straight line's
    alpha = s / steps. Features that fell behind are first pulled up to that band. The
    attribution adds (point - previous point) * gradient at the step's start, so it sums to
    the score's change along the path (completeness up to the step size).

    The arrays are updated in place, a few passes per selection round: the bookkeeping costs
    about as much as a small model's gradient, not a multiple of it.
    """
    x = np.asarray(x, np.float64)
    baseline = np.asarray(baseline, np.float64)
    diff = x - baseline
    l1_total = np.abs(diff).sum(axis=1)
    attr = np.zeros_like(x)
    point = baseline.copy()
    rows = l1_total > 0  # an input equal to its baseline gets zero attribution
    n = x.shape[1]
    kth = int(np.floor(fraction * (n - 1)))  # np.quantile(..., method="lower")'s index
    x_min, x_max, work, gaps = (np.empty_like(x) for _ in range(4))

    def put(target, values, mask):
        """target[mask] = values[mask], exactly, by arithmetic: boolean-masked copies of
        scattered masks cost 4-5x more in NumPy (a branch per element)."""
        m = mask.astype(np.float64)
        target *= 1.0 - m
        target += values * m

    for step in range(steps):
        grad_at = np.asarray(gradient(point), np.float64).reshape(x.shape)
        magnitude = np.abs(grad_at)
        start = point.copy()
        alpha = (step + 1.0) / steps
        alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        np.multiply(diff, alpha_min, out=x_min)
        x_min += baseline
        np.multiply(diff, alpha_max, out=x_max)
        x_max += baseline
        l1_target = l1_total * (1.0 - (step + 1.0) / steps)
        active = rows.copy()
        while active.any():
            # Features behind the band (alpha < alpha_min, i.e. on the baseline's side of x_min)
            # are pulled up to it; features with x = baseline never are (diff 0).
            np.subtract(point, x_min, out=work)
            work *= diff
            put(point, x_min, (work < 0) & active[:, None])
            np.subtract(point, x, out=work)
            np.abs(work, out=work)
            l1_now = work.sum(axis=1)
            active &= ~_close(l1_target, l1_now)
            if not active.any():
                break
            # The features at their band's end take no part: they count as an infinite gradient
            # in the quantile (the largest float here), as in the paper's code.
            at_max = point == x_max
            np.copyto(work, magnitude)
            put(work, _HUGE, at_max)
            threshold = np.partition(work, kth, axis=1)[:, kth]
            chosen = (work <= threshold[:, None]) & ~at_max & active[:, None]
            np.subtract(x_max, point, out=gaps)
            np.abs(gaps, out=work)
            work *= chosen
            l1_chosen = work.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(l1_chosen > 0, (l1_now - l1_target) / l1_chosen, np.inf)
            full = gamma > 1.0
            # Moving the chosen features to their bound closes less than the gap: move them all
            # the way (exactly to x_max, so they are excluded next round) and choose again;
            # else move them the share gamma of the way.
            put(point, x_max, chosen & full[:, None])
            gaps *= (chosen & ~full[:, None]) * np.where(full, 0.0, gamma)[:, None]
            point += gaps
            # Nothing left to move (every feature at its bound) ends the step too.
            active &= full & (l1_chosen > 0)
        # The gradient is the step's throughout, so the step's moves add up to end - start.
        attr += (point - start) * grad_at
    return attr


class GuidedIntegratedGradients(GradientExplainer):
    """Guided Integrated Gradients (Kapishnikov et al., 2021): Integrated Gradients along a path
    chosen by the gradients themselves.

    At each of `steps` steps, the features with the smallest |gradient| (the `fraction` lowest)
    move towards the input first, each kept within `max_dist` (in path position, 0 to 1) of
    the straight line from the baseline; max_dist=0 gives the straight line, i.e. Integrated
    Gradients with a left Riemann sum. The defaults are the paper's code's (PAIR's saliency
    library). Completeness holds up to the step size: the attribution sums to about
    score(x) - score(baseline) (`attribute(..., return_delta=True)` gives the gap).

    Each step is one forward+backward pass of the batch; the steps are sequential, since each
    chooses its path from the last gradient. The class explained is the input's (the top class
    at x for target=None), not each path point's.

    `attribute` gives the signed (B, H, W, C); `explain` |its sum over channels|, as for
    Integrated Gradients.

    Args:
        model: Keras model with one input.
        steps: number of steps (forward+backward passes) along the path.
        fraction: the share of features moved at a time.
        max_dist: how far (in path position) a feature may run ahead of or fall behind the
            straight line.
        baseline: the path's start in the model's input space: a scalar, an (H, W, C) image or
            one per example.
        batch_size: most images per forward pass.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> attr = ki.GuidedIntegratedGradients(model, steps=200).attribute(images)
    """

    def __init__(self, model, steps=200, fraction=0.25, max_dist=0.02, baseline=0.0, batch_size=128, output=None,
                 jit_compile=None):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive int; received {steps!r}.")
        number = (int, float, np.integer, np.floating)
        if isinstance(fraction, bool) or not isinstance(fraction, number) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be a number in (0, 1]; received {fraction!r}.")
        if isinstance(max_dist, bool) or not isinstance(max_dist, number) or not 0.0 <= max_dist <= 1.0:
            raise ValueError(f"max_dist must be a number in [0, 1]; received {max_dist!r}.")
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self._one_input_shape()
        self.steps, self.fraction, self.max_dist = steps, float(fraction), float(max_dist)
        self.baseline = baseline

    @staticmethod
    def reduce(attributions):
        return tf.abs(sum_over_channels(attributions))

    def _scores(self, x, classes, score_fn):
        return select_scores(self.scorer(x), classes, score_fn)

    def _gradient(self, x, classes, score_fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores, _ = select_scores(self.scorer(x), classes, score_fn)
        return tape.gradient(scores, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _walk(self, x, classes, score_fn, baseline):
        """(attributions, completeness gap) for one slice of the batch."""
        # The path's two ends: one pass each, compiled without choosing (jit_compile="auto"
        # decides on the steps' gradient passes, which are the cost).
        scores = self._compiled("_scores", self.jit_compile is True)
        at_x, classes = self._run_compiled(scores, (x, classes, score_fn))
        at_baseline, _ = self._run_compiled(scores, (baseline, classes, score_fn))
        shape = x.shape

        def gradient(point):
            g = self._call("_gradient", point.reshape(shape).astype(np.float32), classes, score_fn)
            return np.asarray(g).reshape(len(point), -1)

        flat = guided_path(x.reshape(len(x), -1), baseline.reshape(len(x), -1), gradient,
                           self.steps, self.fraction, self.max_dist)
        delta = flat.sum(axis=1) - (np.asarray(at_x, np.float64) - np.asarray(at_baseline, np.float64))
        return flat.reshape(shape).astype(np.float32), delta.astype(np.float32)

    def _run_walk(self, inputs, target):
        x, classes, score_fn = self._prepare(inputs, target)
        baseline = broadcast_baseline(self.baseline, x)
        return self._batched(lambda xb, cb, bb: self._walk(xb, cb, score_fn, bb), x, classes, baseline)

    def attribute(self, inputs, target=None, return_delta=False):
        """Signed attributions of the input's shape; with return_delta also the completeness gap
        (B,): sum(attr) - (score(x) - score(baseline))."""
        attr, delta = self._run_walk(inputs, target)
        return (attr, delta) if return_delta else attr

    def explain(self, inputs, target=None):
        """Maps (B, H, W) (|channel sum|), (B, L) or (B, D, H, W); (B, F) |attribution| for
        feature vectors."""
        attr, _ = self._run_walk(inputs, target)
        return np.asarray(self._reduce_one(tf.constant(attr)))
