"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, 2018)."""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.masking import (MaskExplainer, check_count, check_number, check_seed, per_axis,
                                             resize_matrix, upsample_grids)

__all__ = ["RISE", "rise_masks"]


class _Draws:
    """The paper's masks as the compiled loop builds them: binary grids, shifts and, per axis, the
    bilinear upsampling matrix cropped at each possible shift."""

    def __init__(self, count, spatial, cells, p, seed):
        cells = per_axis(cells, len(spatial), "cells")
        if any(c > n for c, n in zip(cells, spatial)):
            raise ValueError(f"cells {cells} exceeds the input's spatial size {spatial}: a cell must hold a pixel.")
        rng = np.random.default_rng(seed)
        self.grids = (rng.random((count,) + cells) < p).astype(np.float32)
        # A cell of C = ceil(n / s) pixels; the grid is upsampled to (s + 1) C and cropped at a
        # random offset in [0, C), so the cells' edges fall anywhere.
        sizes = [-(-n // c) for n, c in zip(spatial, cells)]
        self.shifts = np.stack([rng.integers(0, c, count) for c in sizes], axis=1).astype(np.int32)
        self.crops = tuple(
            np.stack([resize_matrix((c + 1) * size, c, "bilinear")[d:d + n] for d in range(size)])
            for n, c, size in zip(spatial, cells, sizes))

    def arrays(self):
        return (self.grids, self.shifts) + self.crops


def rise_masks(count, spatial, cells=7, p=0.5, seed=0):
    """(count, *spatial) float32: the masks RISE(masks=count, cells, p, seed) applies to inputs of
    spatial shape `spatial` ((H, W) for images), in [0, 1] (1 keeps the pixel)."""
    draws = _Draws(check_count(count, "count"), tuple(spatial), cells, p, seed)
    grids, shifts = tf.constant(draws.grids), tf.constant(draws.shifts)
    matrices = [tf.gather(crop, shifts[:, a]) for a, crop in enumerate(draws.crops)]
    return upsample_grids(grids, matrices).numpy()


class RISE(MaskExplainer):
    """RISE (Petsiuk et al., 2018): the score-weighted mean of random masks.

    Each mask is a random binary grid of `cells` x `cells` (each cell kept with probability
    `p`), upsampled bilinearly to (cells + 1) C pixels a side, C = ceil(H / cells), and cropped
    to the input at a random offset in [0, C) per axis, as in the paper. A pixel's saliency is
    E[f(x * M) M] / p over the masks: sum_n f(x * M_n) M_n / (N p), with f the class's
    probability (the model's own softmax or sigmoid, or the softmax of a logit model's outputs;
    never a second softmax). Masked pixels take `baseline` (0 as in the paper). The masked
    copies are streamed through the model in chunks, so memory does not grow with `masks`.

    On a linear score with pixel-level masks the identity is exact in expectation:
    saliency_i = (1 - p) w_i x_i + p f(x); upsampled masks blur w * x around the same constant.

    Args:
        model: Keras model.
        masks: the number of random masks N (the paper: 4000 for ResNet50), or an array
            (N, *spatial) of masks of one's own, values in [0, 1] (then `cells` is unused and
            `p` is their expected value).
        cells: the grid's cells a side (an int, or one per spatial axis).
        p: the probability a cell is kept.
        score: "probability" (the paper) or "logit" (then the map can be negative).
        baseline: what masked pixels become (scalar, image or one per example).
        seed: seeds the masks (the same seed gives the same map).
        batch_size, output, input, jit_compile: as for Occlusion.

    Example:
        >>> maps = ki.RISE(model, masks=4000).explain(images)   # (B, H, W), non-negative
    """

    def __init__(self, model, masks=4000, cells=7, p=0.5, score="probability", baseline=0.0, seed=0,
                 batch_size=256, output=None, input=None, jit_compile=None):
        super().__init__(model, score=score, baseline=baseline, batch_size=batch_size, output=output, input=input,
                         jit_compile=jit_compile)
        p = check_number(p, "p", 0, 1, low_open=True)
        if isinstance(masks, (int, np.integer)) and not isinstance(masks, (bool, np.bool_)):
            self.masks = check_count(masks, "masks")
        elif isinstance(masks, (np.ndarray, list, tuple)) or hasattr(masks, "numpy"):
            masks = np.asarray(masks, np.float32)
            if masks.ndim < 2 or not masks.size or not np.isfinite(masks).all() or masks.min() < 0 or masks.max() > 1:
                values = f" with values in [{np.nanmin(masks)}, {np.nanmax(masks)}]" if masks.size else ""
                raise ValueError(
                    "masks must be a count or an array (N, *spatial) of values in [0, 1]; received an array of "
                    f"shape {masks.shape}{values}."
                )
            if abs(float(masks.mean()) - p) > 0.05:
                # The map is divided by N p: masks of another mean would be silently rescaled.
                raise ValueError(
                    f"The masks' mean is {masks.mean():.3f} but p={p}: p is their expected value (the map is "
                    f"divided by N p). Pass p={masks.mean():.3f}."
                )
            self.masks = masks
        else:
            raise ValueError(f"masks must be an int count or an array (N, *spatial) of masks; received {masks!r}.")
        self.cells, self.p, self.seed = cells, p, check_seed(seed)
        shapes = self.scorer.input_shapes
        if isinstance(self.masks, int) and shapes:
            per_axis(cells, len(shapes[self.input_index]) - 2, "cells")  # fail now on a bad grid
        self.signed = score == "logit"

    def _masks(self, ids, xi, arrays):
        if len(arrays) == 1:  # the user's masks
            return tf.gather(arrays[0], ids)[:, None]
        grids, shifts, crops = arrays[0], arrays[1], arrays[2:]
        matrices = [tf.gather(crop, tf.gather(shifts[:, a], ids)) for a, crop in enumerate(crops)]
        return upsample_grids(tf.gather(grids, ids), matrices)[:, None]

    def _start(self, xi, count):
        return tf.zeros(tf.shape(xi)[:-1], tf.float32)

    def _add(self, state, scores, masks, ids):
        k = tf.shape(scores)[0]
        flat = tf.reshape(masks, tf.stack([k, -1]))  # masks are shared by the examples: (k, 1, ...)
        return state + tf.reshape(tf.matmul(scores, flat, transpose_a=True), tf.shape(state))

    def _finish(self, state):
        return state

    def explain(self, inputs, target=None):
        """Maps (B, *spatial) float32: E[f(x * M) M] / p."""
        prepared, xi = self._prepared(inputs, target)
        spatial = self._spatial(xi)
        if isinstance(self.masks, int):
            count, arrays = self.masks, _Draws(self.masks, spatial, self.cells, self.p, self.seed).arrays()
        else:
            if self.masks.shape[1:] != spatial:
                raise ValueError(
                    f"masks of shape {self.masks.shape[1:]} do not match the input's spatial shape {spatial}."
                )
            count, arrays = len(self.masks), (self.masks,)
        heat = self._scores(prepared, count, shared=arrays)
        return (heat / (count * self.p)).astype(np.float32)
