"""Surrogate models over segments: LIME (Ribeiro, Singh and Guestrin, 2016) and Kernel SHAP
(Lundberg and Lee, 2017).

Both switch segments of the input on and off (a coalition z per copy: segment s keeps its pixels
where z_s = 1 and takes the baseline where z_s = 0), score the copies through the chunk loop of
keras_interp.explainers.masking, and fit a linear model of the score on z on the host in
float64: LIME a ridge regression weighted by closeness to the input, Kernel SHAP the weighted
least squares whose solution is the Shapley values. A segment's weight is given to its pixels.
"""

import math

import cv2
import numpy as np
import tensorflow as tf

from keras_interp.explainers.masking import MaskExplainer, check_count, check_number, check_seed, per_axis
from keras_interp.images import to_uint8

__all__ = ["LIME", "KernelSHAP", "grid_segments", "superpixels", "kernel_shap_coalitions", "shapley_kernel"]


def grid_segments(spatial, cells):
    """(*spatial) int32: the cell of a grid of `cells` a side (an int or one per axis) each pixel
    lies in, cells numbered in row-major order."""
    cells = per_axis(cells, len(spatial), "segments as a grid")
    if any(c > n for c, n in zip(cells, spatial)):
        raise ValueError(f"a grid of {cells} cells exceeds the input's spatial size {tuple(spatial)}.")
    index = [np.minimum(np.arange(n) * c // n, c - 1) for n, c in zip(spatial, cells)]
    return np.ravel_multi_index(np.meshgrid(*index, indexing="ij"), cells).astype(np.int32)


def superpixels(image, count=64, compactness=0.0):
    """(H, W) int32 superpixel labels of an (H, W, C) image: OpenCV's watershed on the image's
    colour gradient, seeded by a regular grid of about `count` markers, so each region follows
    edges near its seed. The image is read as `ki.images.to_uint8` shows it (watershed's 8-bit input)."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"superpixels takes one (H, W, C) image; received shape {image.shape}.")
    h, w = image.shape[:2]
    rgb = np.ascontiguousarray(to_uint8(image))  # watershed reads 8-bit colour
    side = max(1, int(round(math.sqrt(count * h / w)))), max(1, int(round(math.sqrt(count * w / h))))
    markers = np.zeros((h, w), np.int32)
    for i in range(side[0]):
        for j in range(side[1]):
            markers[min(h - 1, int((i + 0.5) * h / side[0])), min(w - 1, int((j + 0.5) * w / side[1]))] = \
                i * side[1] + j + 1
    cv2.watershed(rgb, markers)
    # Watershed marks the boundaries -1: give each boundary pixel its neighbour's region.
    labels = markers.astype(np.float32)
    grown = cv2.dilate(labels, np.ones((3, 3), np.uint8))
    labels = np.where(markers > 0, markers, grown).astype(np.int32)
    return np.unique(labels, return_inverse=True)[1].reshape(h, w).astype(np.int32)


def _is_grid(segments):
    ints = (int, np.integer)
    return (isinstance(segments, ints) and not isinstance(segments, (bool, np.bool_))) or (
        isinstance(segments, tuple) and segments and all(isinstance(c, ints) for c in segments))


def _checked_segments(segments):
    """segments as given, or a ValueError when it is none of the accepted forms."""
    if _is_grid(segments) or callable(segments):
        return segments
    if isinstance(segments, (np.ndarray, list)) or hasattr(segments, "numpy"):
        labels = np.asarray(segments)
        if labels.ndim >= 1 and np.issubdtype(labels.dtype, np.integer):
            return labels
        raise ValueError(f"segment labels must be integers, one per pixel; received dtype {labels.dtype} and "
                         f"shape {labels.shape}.")
    raise ValueError(
        "segments must be an int (a grid of that many cells a side) or a tuple of one per axis, integer labels "
        f"per pixel ((H, W) or (B, H, W)), or a callable image -> labels; received {segments!r}."
    )


def _labels(segments, images):
    """(B, *spatial) int32 labels numbered 0 .. S_b - 1 per image, and S_b (B,)."""
    spatial = images.shape[1:-1]
    batch = len(images)
    if _is_grid(segments):
        labels = np.broadcast_to(grid_segments(spatial, segments), (batch,) + spatial)
    elif callable(segments):
        labels = []
        for image in images:
            got = np.asarray(segments(image))
            if got.shape != spatial:
                raise ValueError(
                    f"The segmentation callable returned labels of shape {got.shape} for an image of shape "
                    f"{image.shape}; it must return one integer label per pixel, shape {spatial}."
                )
            labels.append(got)
        labels = np.stack(labels)
    else:
        labels = np.asarray(segments)
        if labels.shape == spatial:
            labels = np.broadcast_to(labels, (batch,) + spatial)
        elif labels.shape != (batch,) + spatial:
            raise ValueError(
                f"segments of shape {labels.shape} match neither one image {spatial} nor the batch "
                f"{(batch,) + spatial}; give integer labels per pixel."
            )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"segment labels must be integers; received dtype {labels.dtype}.")
    dense = np.empty(labels.shape, np.int32)
    counts = np.empty(batch, np.int32)
    for b in range(batch):
        values, inverse = np.unique(labels[b], return_inverse=True)
        dense[b] = inverse.reshape(spatial)
        counts[b] = len(values)
    return dense, counts


class _SegmentExplainer(MaskExplainer):
    """Coalitions of segments: per image, labels (B, P) and coalitions (B, N, S_max)."""

    def __init__(self, model, segments, samples, score, baseline, seed, batch_size, output, input, jit_compile):
        super().__init__(model, score=score, baseline=baseline, batch_size=batch_size, output=output, input=input,
                         jit_compile=jit_compile)
        self.segments = DEFAULT_GRID if segments is None else _checked_segments(segments)
        self.samples = check_count(samples, "samples", least=2)
        self.seed = check_seed(seed)

    def _masks(self, ids, xi, arrays):
        labels, coalitions = arrays  # (B, P) int32, (B, N, S) float32
        chosen = tf.gather(coalitions, ids, axis=1)  # (B, k, S)
        masks = tf.gather(chosen, labels, axis=2, batch_dims=1)  # (B, k, P)
        shape = tf.concat([[tf.shape(ids)[0]], tf.shape(xi)[:-1]], 0)
        return tf.reshape(tf.transpose(masks, [1, 0, 2]), shape)

    def _coalitions(self, segments):
        """(N, segments) float32 coalitions and (N,) weights for one image."""
        raise NotImplementedError

    def _fit(self, z, weights, scores):
        raise NotImplementedError

    def explain(self, inputs, target=None):
        """Maps (B, *spatial) float32: each segment's coefficient on its pixels."""
        prepared, xi = self._prepared(inputs, target)
        labels, counts = _labels(self.segments, xi)
        least = self._least(int(counts.max()))
        if self.samples < least:
            raise ValueError(
                f"{type(self).__name__} with {int(counts.max())} segments needs samples >= {least} to fit one weight "
                f"per segment; received samples={self.samples}. Raise samples or use fewer segments."
            )
        drawn = [self._coalitions(int(s)) for s in counts]
        count = max(len(z) for z, _ in drawn)
        z = np.zeros((len(xi), count, int(counts.max())), np.float32)
        for b, (zb, _) in enumerate(drawn):
            z[b, :len(zb), :zb.shape[1]] = zb
        flat = labels.reshape(len(xi), -1)
        scores = self._scores(prepared, count, aligned=(flat, z))
        maps = np.empty(labels.shape, np.float32)
        for b, (zb, weights) in enumerate(drawn):
            coef = self._fit(zb, weights, scores[b, :len(zb)])
            maps[b] = coef[labels[b]]
        return maps


# The default segmentation: a grid of 6 x 6 cells. On the built-in shapes (benchmarks/segments.py,
# docs/explainers.md) it led the pointing game and deletion for both methods, superpixels led energy
# and insertion; a grid needs no per-image work and also segments signals and volumes.
DEFAULT_GRID = 6


class LIME(_SegmentExplainer):
    """LIME (Ribeiro et al., 2016) on segments: a weighted ridge regression of the score on which
    segments are kept.

    As the authors' `lime_image` (which reads the class probability: `score="probability"`; the
    default explains the pre-softmax score, as every other explainer here): the first coalition
    keeps every segment, the others keep each segment with probability 1/2; a coalition's weight
    is sqrt(exp(-d^2 / kernel_width^2)), d the cosine distance between the coalition and the
    all-kept one; the surrogate is a ridge regression with intercept (penalty `alpha`, 1 as
    scikit-learn's Ridge in lime) whose coefficients are the map, segment by segment. Removed
    segments take `baseline`. On a score linear in the input the coefficients are the segments'
    contributions sum_i w_i (x_i - b_i) (exactly with alpha=0).

    Args:
        model: Keras model.
        segments: an int (a grid of that many cells a side), integer labels (H, W) or
            (B, H, W) (one's own superpixels), or a callable image (H, W, C) -> labels (H, W).
            None: a grid of 6 x 6 (docs/explainers.md compares grids with `superpixels`, OpenCV's
            watershed seeded on a grid, on the built-in shapes).
        samples: coalitions scored per image (the first is the input itself).
        kernel_width: the width of the exponential kernel on the cosine distance.
        alpha: the ridge penalty (0: weighted least squares).
        score: "logit" (the pre-softmax score, as every other explainer) or "probability".
        baseline: what removed segments become.
        seed: seeds the coalitions (each image draws the same stream: its map does not depend
            on the rest of the batch).
        batch_size, output, input, jit_compile: as for Occlusion.

    Example:
        >>> maps = ki.LIME(model, segments=8, samples=1000).explain(images)   # (B, H, W), signed
    """

    signed = True

    def __init__(self, model, segments=None, samples=1000, kernel_width=0.25, alpha=1.0, score="logit", baseline=0.0,
                 seed=0, batch_size=256, output=None, input=None, jit_compile=None):
        super().__init__(model, segments, samples, score, baseline, seed, batch_size, output, input, jit_compile)
        self.kernel_width = check_number(kernel_width, "kernel_width", 0, low_open=True)
        self.alpha = check_number(alpha, "alpha", 0)

    @staticmethod
    def _least(segments):
        return segments + 1

    def _coalitions(self, segments):
        rng = np.random.default_rng(self.seed)
        z = rng.integers(0, 2, (self.samples, segments)).astype(np.float32)
        z[0] = 1
        kept = z.sum(axis=1)
        distance = 1.0 - np.sqrt(kept / segments)  # cosine distance to all-kept (1 for none kept)
        weights = np.sqrt(np.exp(-(distance ** 2) / self.kernel_width ** 2))
        return z, weights

    def _fit(self, z, weights, scores):
        z, y, w = np.asarray(z, np.float64), np.asarray(scores, np.float64), np.asarray(weights, np.float64)
        zc = z - (w @ z) / w.sum()
        yc = y - (w @ y) / w.sum()
        gram = zc.T @ (w[:, None] * zc) + self.alpha * np.eye(z.shape[1])
        return np.linalg.lstsq(gram, zc.T @ (w * yc), rcond=None)[0]


def shapley_kernel(segments, size):
    """The Shapley kernel's weight of one coalition of `size` of `segments`:
    (M - 1) / (C(M, size) size (M - size))."""
    return (segments - 1) / (math.comb(segments, size) * size * (segments - size))


def kernel_shap_coalitions(segments, samples, rng):
    """(N, segments) coalitions and (N,) weights for Kernel SHAP, all but the empty and full ones.

    When 2^M - 2 <= samples every coalition is listed with its kernel weight (the regression then
    gives the exact Shapley values); otherwise coalitions are drawn with the kernel's mass per
    size, (M - 1) / (s (M - s)), uniformly within a size, in complementary pairs, each of weight 1
    (the kernel's objective estimated by importance sampling)."""
    m = segments
    if m < 63 and 2 ** m - 2 <= samples:
        codes = np.arange(1, 2 ** m - 1, dtype=np.int64)
        z = ((codes[:, None] >> np.arange(m)) & 1).astype(np.float32)
        sizes = z.sum(axis=1).astype(int)
        return z, np.array([shapley_kernel(m, s) for s in sizes])
    sizes = np.arange(1, m)
    mass = (m - 1) / (sizes * (m - sizes))
    pairs = (samples + 1) // 2
    drawn = rng.choice(sizes, size=pairs, p=mass / mass.sum())
    z = np.zeros((2 * pairs, m), np.float32)
    for i, s in enumerate(drawn):
        z[2 * i, rng.permutation(m)[:s]] = 1
        z[2 * i + 1] = 1 - z[2 * i]
    return z[:samples], np.ones(samples)


class KernelSHAP(_SegmentExplainer):
    """Kernel SHAP (Lundberg and Lee, 2017) on segments: the Shapley values of the score, with
    removed segments taking `baseline`.

    The score is read on the input (all segments kept), on the baseline (none kept) and on
    `samples` coalitions between (`kernel_shap_coalitions`: all of them with the Shapley kernel's
    weights when 2^M - 2 <= samples, else drawn from the kernel in complementary pairs). The
    weighted least squares fit of the score on the coalitions, constrained to sum to
    f(x) - f(baseline) (efficiency), gives the Shapley values: exactly when every coalition is
    listed, or for a score linear in the segments; otherwise a sampling estimate.

    Args:
        model: Keras model.
        segments: as for LIME.
        samples: coalitions scored per image besides the input and the baseline.
        score: "logit" (the pre-softmax score, as every other explainer) or "probability".
        baseline: what removed segments become (Shapley values are relative to it).
        seed: seeds the coalitions (each image draws the same stream).
        batch_size, output, input, jit_compile: as for Occlusion.

    Example:
        >>> maps = ki.KernelSHAP(model, segments=8, samples=1000).explain(images)   # signed
    """

    signed = True

    def __init__(self, model, segments=None, samples=1000, score="logit", baseline=0.0, seed=0, batch_size=256,
                 output=None, input=None, jit_compile=None):
        super().__init__(model, segments, samples, score, baseline, seed, batch_size, output, input, jit_compile)

    @staticmethod
    def _least(segments):
        return min(segments, 2 ** min(segments, 62) - 2)

    def _coalitions(self, segments):
        if segments < 2:
            raise ValueError("Kernel SHAP needs at least 2 segments; the segmentation gave 1.")
        z, weights = kernel_shap_coalitions(segments, self.samples, np.random.default_rng(self.seed))
        ends = np.stack([np.ones(segments, np.float32), np.zeros(segments, np.float32)])
        return np.concatenate([ends, z]), np.concatenate([[0.0, 0.0], weights])

    def _fit(self, z, weights, scores):
        y = np.asarray(scores, np.float64)
        full, empty = y[0], y[1]
        z, y, w = np.asarray(z[2:], np.float64), y[2:], np.asarray(weights[2:], np.float64)
        delta = full - empty
        # Efficiency: the last value is delta minus the others; regress on z_j - z_last.
        target = y - empty - z[:, -1] * delta
        design = z[:, :-1] - z[:, -1:]
        root = np.sqrt(w)[:, None]
        head = np.linalg.lstsq(design * root, target * root[:, 0], rcond=None)[0]
        return np.append(head, delta - head.sum())
