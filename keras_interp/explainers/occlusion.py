"""Occlusion sensitivity (Zeiler and Fergus, 2014)."""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import Explainer, broadcast_baseline, chunk_indices, merge_leading, plan_chunks
from keras_interp.targets import select_scores

__all__ = ["Occlusion", "window_positions"]


def _pair(value, name):
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them; received {value!r}.")
    return int(pair[0]), int(pair[1])


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


class Occlusion(Explainer):
    """Occlusion sensitivity: how much the score drops when a patch is replaced by a baseline.

    Every window of `patch_size` at `stride` (plus flush windows at the far edges, so all
    pixels are covered) is replaced by `baseline`; a pixel's value is the mean score drop
    score(x) - score(occluded x) over the windows that cover it. Higher = more important;
    negative values mark regions whose removal raises the score. Occluded copies of all
    images are streamed through the model in chunks of at most `batch_size` images.

    Args:
        model: single-input Keras model.
        patch_size: int or (height, width) of the occluding patch, in pixels.
        stride: int or (dy, dx) between windows.
        baseline: replacement value in the model's input space (after preprocessing): a
            scalar, an (H, W, C) image or one per example.
        batch_size: most images per forward pass.

    Example:
        >>> maps = ki.Occlusion(model, patch_size=8, stride=4).explain(images)   # (B, H, W)
    """

    def __init__(self, model, patch_size=8, stride=4, baseline=0.0, batch_size=256):
        super().__init__(model, batch_size=batch_size)
        self.patch_size = _pair(patch_size, "patch_size")
        self.stride = _pair(stride, "stride")
        if any(s > p for s, p in zip(self.stride, self.patch_size)):
            raise ValueError(
                f"stride {self.stride} is larger than patch_size {self.patch_size}: pixels between "
                "windows would never be occluded. Use a stride no larger than the patch."
            )
        self.baseline = baseline

    def windows(self, height, width):
        """(N, 2) int32 top-left corners, the effective (ph, pw), and the (H, W) cover count."""
        rows, ph = window_positions(height, self.patch_size[0], self.stride[0])
        cols, pw = window_positions(width, self.patch_size[1], self.stride[1])
        corners = np.array([(r, c) for r in rows for c in cols], np.int32)
        count = np.zeros((height, width), np.float32)
        for r, c in corners:
            count[r:r + ph, c:c + pw] += 1
        return corners, (ph, pw), count

    def _occlude_fn(self, x, classes, score_fn, corners, patch, baseline, per, num_chunks):
        scores, classes = select_scores(self.scorer(x), classes, score_fn)
        shape = tf.shape(x)
        rows = tf.range(shape[1])[None, :, None]
        cols = tf.range(shape[2])[None, None, :]
        tiled = tf.tile(classes, [per])
        heat = tf.zeros(shape[:3], tf.float32)
        count = tf.shape(corners)[0]
        for chunk in tf.range(num_chunks):
            ids, valid = chunk_indices(chunk, per, count)
            window = tf.gather(corners, ids)
            top, left = window[:, 0, None, None], window[:, 1, None, None]
            mask = tf.cast(
                (rows >= top) & (rows < top + patch[0]) & (cols >= left) & (cols < left + patch[1]),
                tf.float32,
            )
            m = mask[:, None, :, :, None]
            occluded = x[None] * (1.0 - m) + baseline[None] * m
            occluded_scores, _ = select_scores(self.scorer(merge_leading(occluded)), tiled, score_fn)
            drop = (scores[None] - tf.reshape(occluded_scores, (per, -1))) * valid[:, None]
            heat += tf.einsum("kb,khw->bhw", drop, mask)
        return heat

    def explain(self, inputs, target=None):
        x, classes, score_fn = self._prepare(inputs, target)
        corners, patch, count = self.windows(x.shape[1], x.shape[2])
        patch = np.array(patch, np.int32)

        def call(xb, cb, baseline):
            per, num_chunks = plan_chunks(len(corners), xb.shape[0], self.batch_size)
            return self._call("_occlude_fn", xb, cb, score_fn, corners, patch, baseline, per, num_chunks)

        heat = self._batched(call, x, classes, broadcast_baseline(self.baseline, x))
        return (heat / count).astype(np.float32)
