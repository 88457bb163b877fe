"""Occlusion sensitivity (Zeiler and Fergus, 2014)."""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import choose_input
from keras_interp.explainers.chunks import batch_of, broadcast_baseline, over_chunks, plan_chunks, replaced_copies
from keras_interp.explainers.perturbation import PerturbationExplainer
from keras_interp.targets import select_scores

__all__ = ["Occlusion", "window_positions"]


def _per_axis(value, name):
    """An int or a tuple of positive ints, checked; expanded to the input's axes later."""
    values = (value,) if np.isscalar(value) else tuple(value)
    if not 1 <= len(values) <= 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1 for v in values
    ):
        raise ValueError(
            f"{name} must be a positive int or a tuple of them, one per spatial axis; received {value!r}."
        )
    return tuple(int(v) for v in values) if len(values) > 1 else int(values[0])


def _expand(value, axes, name):
    if isinstance(value, int):
        return (value,) * axes
    if len(value) != axes:
        raise ValueError(
            f"{name} {value} has {len(value)} entries but the input has {axes} spatial "
            f"ax{'is' if axes == 1 else 'es'}; give an int or {axes} values."
        )
    return value


def window_positions(size, patch, stride):
    """Start offsets along one axis so that every pixel is covered.

    A patch larger than the axis is cut to the axis. When (size - patch) is not a multiple of
    the stride a last window flush with the far edge is added.
    """
    patch = min(patch, size)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts, patch


class Occlusion(PerturbationExplainer):
    """Occlusion sensitivity: how much the score drops when a patch is replaced by a baseline.

    Every window of `patch_size` at `stride` (plus flush windows at the far edges, so all
    pixels are covered) is replaced by `baseline`; a pixel's value is the mean score drop
    score(x) - score(occluded x) over the windows that cover it. Higher = more important;
    negative values mark regions whose removal raises the score. Occluded copies of all
    images are streamed through the model in chunks of at most `batch_size` images.

    Signals (B, L, C) and volumes (B, D, H, W, C) are occluded the same way with windows along
    their 1 or 3 axes, giving (B, L) and (B, D, H, W) maps.

    Args:
        model: Keras model.
        patch_size: int, or one size per spatial axis ((height, width) for images), in pixels.
        stride: int, or one step per spatial axis.
        baseline: replacement value in the model's input space (after preprocessing): a
            scalar, an (H, W, C) image or one per example.
        batch_size: most images per forward pass; below it the pass size is measured once per
            model and input shape (see Explainer._chunk_images).
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).
        input: the input to occlude (name or index), for a model with several; the others are
            kept as they are. None takes the first signal, image or volume input.

    Example:
        >>> maps = ki.Occlusion(model, patch_size=8, stride=4).explain(images)   # (B, H, W)
    """

    signed = True  # occluding a region can raise the score
    display_clip = (0.0, 99.9)
    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)

    def __init__(self, model, patch_size=8, stride=4, baseline=0.0, batch_size=256, output=None, input=None,
                 jit_compile=None):
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.patch_size = _per_axis(patch_size, "patch_size")
        self.stride = _per_axis(stride, "stride")
        self.input_index = choose_input(self.scorer, input)
        shapes = self.scorer.input_shapes
        if shapes:
            self._sizes(len(shapes[self.input_index]) - 2)  # fail now on a stride larger than the patch
        self.baseline = baseline


    def _sizes(self, axes):
        if axes < 1:
            raise ValueError(
                "Occlusion needs an input with spatial axes (a signal, an image or a volume); the "
                f"chosen input has shape {self.scorer.input_shapes[self.input_index]}. Pass input= to "
                "choose another."
            )
        patch = _expand(self.patch_size, axes, "patch_size")
        stride = _expand(self.stride, axes, "stride")
        if any(s > p for s, p in zip(stride, patch)):
            raise ValueError(
                f"stride {stride} is larger than patch_size {patch}: pixels between "
                "windows would never be occluded. Use a stride no larger than the patch."
            )
        return patch, stride

    def windows(self, *size):
        """(N, axes) int32 window starts, the patch per axis, and the cover count (the input's
        spatial shape): windows(height, width) for images, windows(length) for signals."""
        patch, stride = self._sizes(len(size))
        if any(p > n for p, n in zip(patch, size)):
            raise ValueError(
                f"patch_size {patch} is larger than the input's spatial size {tuple(size)}; occluding "
                "it would only ever remove the whole input. Use a patch no larger than the input."
            )
        starts = [window_positions(n, p, st)[0] for n, p, st in zip(size, patch, stride)]
        corners = np.array(np.meshgrid(*starts, indexing="ij"), np.int32).reshape(len(size), -1).T
        # The windows are a product grid, so the cover count is a product of per-axis counts.
        count = np.ones((), np.float32)
        for n, p, axis_starts in zip(size, patch, starts):
            cover = np.zeros(n, np.float32)
            for start in axis_starts:
                cover[start:start + p] += 1
            count = np.multiply.outer(count, cover)
        return corners, patch, count.astype(np.float32)

    def _occlude_fn(self, x, classes, score_fn, corners, patch, baseline, per):
        scores, classes = select_scores(self.scorer(x), classes, score_fn)
        xi, others = self._split(x, self.input_index)
        shape = tf.shape(xi)
        axes = len(xi.shape) - 2

        def chunk(heat, _, ids):
            k = tf.shape(ids)[0]
            window = tf.gather(corners, ids)
            # (k, *spatial): the product of one interval per axis.
            inside = tf.ones([k] + [1] * axes, tf.bool)
            for a in range(axes):
                positions = tf.reshape(tf.range(shape[1 + a]), [1] + [-1 if b == a else 1 for b in range(axes)])
                start = tf.reshape(window[:, a], [-1] + [1] * axes)
                inside &= (positions >= start) & (positions < start + patch[a])
            logits = self._logits_with(replaced_copies(xi, baseline, inside[:, None]), others)
            occluded_scores, _ = select_scores(logits, tf.tile(classes, [k]), score_fn)
            drop = scores[None] - tf.reshape(occluded_scores, (k, -1))
            # sum_k drop[k, b] inside[k]: a (B, k) x (k, pixels) product (einsum would transpose).
            cover = tf.reshape(tf.cast(inside, tf.float32), [k, -1])
            return heat + tf.reshape(tf.matmul(drop, cover, transpose_a=True), shape[:-1])

        return over_chunks(chunk, tf.zeros(shape[:-1], tf.float32), corners.shape[0], per,
                           xla=self.tracing_xla())

    def explain(self, inputs, target=None):
        """Maps (B, H, W) float32, or (B, L) / (B, D, H, W); with several inputs, the map of the
        occluded input."""
        x, classes, score_fn = self._prepare(inputs, target)
        xi = self._split(x, self.input_index)[0]
        corners, patch, count = self.windows(*xi.shape[1:-1])
        patch = np.array(patch, np.int32)

        def call(xb, cb, baseline):
            per = plan_chunks(len(corners), batch_of(xb), self._chunk_images(xb, len(corners)))
            return self._call("_occlude_fn", xb, cb, score_fn, corners, patch, baseline, per)

        heat = self._batched(call, x, classes, broadcast_baseline(self.baseline, xi))
        return (heat / count).astype(np.float32)
