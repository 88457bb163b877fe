"""Global sensitivity analysis of the score over a grid of cells: Sobol indices (Fel et al., 2021)
and the Hilbert-Schmidt independence criterion (Novello, Fel and Vigouroux, 2022).

Both draw quasi-Monte Carlo masks on a coarse grid (TensorFlow's Sobol sequence, as Xplique),
upsample them to the input by nearest neighbour, score the masked copies x * M (the chunk loop
of keras_interp.explainers.masking) and estimate, per cell, how much of the score's variation
the cell accounts for. The cell values are resized to the input bicubically, as Xplique does.
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.masking import (MaskExplainer, check_count, negligible_spread, per_axis, resize_matrix,
                                             upsample_grids)

__all__ = ["SobolAttribution", "HSICAttribution", "jansen_total", "saltelli_first", "hsic_binary"]

_EPS = 1e-12


def jansen_total(scores, designs):
    """Total Sobol indices (d,) by Jansen's estimator from the scores of the design [A; B; C_1 ..
    C_d] (C_i: A with column i taken from B), `designs` rows each: sum_n (f(A_n) - f(C_i,n))^2 /
    (2 N Var f(A)), the variance with ddof=1 (as Xplique computes it)."""
    scores = np.asarray(scores, np.float64)
    a, c = scores[:designs], scores[2 * designs:].reshape(-1, designs)
    if negligible_spread(scores):
        return np.zeros(len(c))
    var = max(np.var(a, ddof=1) if designs > 1 else 0.0, _EPS)
    return ((a[None] - c) ** 2).sum(axis=1) / (2 * designs * var)


def saltelli_first(scores, designs):
    """First-order Sobol indices (d,) by Saltelli's (2010) estimator on the same design:
    mean_n f(B_n) (f(C_i,n) - f(A_n)) / Var f(A)."""
    scores = np.asarray(scores, np.float64)
    a, b, c = scores[:designs], scores[designs:2 * designs], scores[2 * designs:].reshape(-1, designs)
    if negligible_spread(scores):
        return np.zeros(len(c))
    var = max(np.var(a, ddof=1) if designs > 1 else 0.0, _EPS)
    return (b[None] * (c - a[None])).mean(axis=1) / var


def median_distance(y, most=1000):
    """The median of |y_i - y_j| over pairs i < j: the usual bandwidth of an RBF kernel. Past
    `most` scores, over the pairs of `most` evenly spaced ones (memory stays O(most^2))."""
    y = np.asarray(y, np.float64)
    if len(y) > most:
        y = y[np.linspace(0, len(y) - 1, most).round().astype(int)]
    diff = np.abs(y[:, None] - y[None])
    return float(np.median(diff[np.triu_indices(len(y), 1)])) if len(y) > 1 else 0.0


def hsic_binary(scores, masks, width, block=128):
    """HSIC (d,) between each binary mask variable (masks: (N, d) in {0, 1}) and the scores (N,),
    as Xplique's estimator: trace(K_i H L H) / N with the input kernel K_i = 1.5 - (m - m')^2 and
    an RBF output kernel L of `width`. With binary masks trace(K_i H L H) = 2 m_i' (H L H) m_i (the
    constant part meets H L H's zero row sums), one product for all cells. Scores that vary only
    by float rounding give 0 (see negligible_spread)."""
    y = np.asarray(scores, np.float64)
    m = np.asarray(masks, np.float64)
    n = len(y)
    if negligible_spread(y):  # no dependence to measure, only rounding: not a map of the noise
        return np.zeros(m.shape[1])
    width = max(float(width), _EPS)
    # (H L H) m with H = I - 11'/n is L m - r (1'm) - 1 (r'm) + mean(r) (1'm), r the row means of L
    # (symmetric): L is built a block of rows at a time, so memory stays O(block n), not n^2.
    lm, row = np.empty_like(m), np.empty(n)
    for start in range(0, n, block):
        rows = np.exp(-((y[start:start + block, None] - y[None]) ** 2) / (2 * width ** 2))
        lm[start:start + block] = rows @ m
        row[start:start + block] = rows.mean(axis=1)
    ones = m.sum(axis=0)  # 1'm
    lcm = lm - row[:, None] * ones[None] - (row @ m)[None] + row.mean() * ones[None]
    return 2.0 * (m * lcm).sum(axis=0) / n


class _GridSensitivity(MaskExplainer):
    """Masks on a coarse grid, nearest-upsampled; cell indices resized bicubically to the input."""

    def __init__(self, model, grid, score, baseline, batch_size, output, input, jit_compile):
        super().__init__(model, score=score, baseline=baseline, batch_size=batch_size, output=output, input=input,
                         jit_compile=jit_compile)
        shapes = self.scorer.input_shapes
        self.grid = grid
        if shapes:
            per_axis(grid, len(shapes[self.input_index]) - 2, "grid")  # fail now on a bad grid

    def _masks(self, ids, xi, arrays):
        designs, matrices = arrays[0], arrays[1:]
        return upsample_grids(tf.gather(designs, ids), matrices)[:, None]

    def designs(self, cells):
        raise NotImplementedError

    def _values(self, scores, designs):
        """(B, cells) cell values from the scores (B, count) of the design rows (count, cells)."""
        raise NotImplementedError

    def _cell_values(self, inputs, target):
        """The cell values (B, *grid) and the input's spatial shape."""
        prepared, xi = self._prepared(inputs, target)
        spatial = self._spatial(xi)
        grid = per_axis(self.grid, len(spatial), "grid")
        if any(g > n for g, n in zip(grid, spatial)):
            raise ValueError(f"grid {grid} exceeds the input's spatial size {spatial}: a cell must hold a pixel.")
        designs = self.designs(int(np.prod(grid)))
        matrices = tuple(resize_matrix(n, g, "nearest") for n, g in zip(spatial, grid))
        shaped = np.ascontiguousarray(designs, np.float32).reshape((len(designs),) + grid)
        scores = self._scores(prepared, len(designs), shared=(shaped,) + matrices)
        return self._values(scores, designs).reshape((len(scores),) + grid), spatial

    def cell_values(self, inputs, target=None):
        """(B, *grid) float64: each cell's index (Sobol) or dependence (HSIC), before resizing."""
        return self._cell_values(inputs, target)[0]

    def explain(self, inputs, target=None):
        """Maps (B, *spatial) float32: `cell_values` resized bicubically to the input (as Xplique)."""
        cells, spatial = self._cell_values(inputs, target)
        matrices = [resize_matrix(n, g, "bicubic") for n, g in zip(spatial, cells.shape[1:])]
        return upsample_grids(tf.constant(cells, tf.float32), matrices).numpy().astype(np.float32)


class SobolAttribution(_GridSensitivity):
    """Sobol attribution (Fel et al., 2021): each grid cell's total Sobol index of the score.

    The masks are quasi-Monte Carlo: TensorFlow's Sobol sequence gives two designs A and B of
    `nb_design` points in [0, 1]^d (d cells), and d more C_i, A with cell i taken from B, as
    Xplique builds them; each point is a mask (a value per cell, nearest-upsampled) and the input
    becomes x * M + (1 - M) * baseline. The total index of cell i (Jansen's estimator) is the
    share of the score's variance that involves the cell, interactions included; the first-order
    index (Saltelli's) the share it accounts for alone. On an additive score the two agree. The
    model sees nb_design * (d + 2) copies per image (2112 for an 8 x 8 grid and 32 designs).

    Args:
        model: Keras model.
        grid: cells a side (an int, or one per spatial axis).
        nb_design: points per design, a power of two (the Sobol sequence's balance).
        indices: "total" (the paper's map) or "first".
        score: "logit" (the pre-softmax score, as every other explainer) or "probability".
        baseline: what masked pixels become (0: Xplique's inpainting).
        batch_size, output, input, jit_compile: as for Occlusion.

    Example:
        >>> maps = ki.SobolAttribution(model, grid=8, nb_design=32).explain(images)   # (B, H, W)
    """

    def __init__(self, model, grid=8, nb_design=32, indices="total", score="logit", baseline=0.0, batch_size=256,
                 output=None, input=None, jit_compile=None):
        super().__init__(model, grid, score, baseline, batch_size, output, input, jit_compile)
        self.nb_design = check_count(nb_design, "nb_design", least=2)
        if self.nb_design & (self.nb_design - 1):
            raise ValueError(f"nb_design must be a power of two (the Sobol sequence's balance); received {nb_design}.")
        if indices not in ("total", "first"):
            raise ValueError(f'indices must be "total" or "first"; received {indices!r}.')
        self.indices = indices

    def designs(self, cells):
        """(nb_design * (cells + 2), cells) float32: the rows of A, B, C_1 .. C_cells."""
        n = self.nb_design
        ab = tf.math.sobol_sample(2 * cells, n, dtype=tf.float32).numpy()
        a, b = ab[:, :cells], ab[:, cells:]
        c = np.repeat(a[None], cells, axis=0)  # (cells, n, cells): C_i is A ...
        idx = np.arange(cells)
        c[idx, :, idx] = b.T  # ... with column i from B
        return np.concatenate([a, b, c.reshape(-1, cells)])

    def _values(self, scores, designs):
        estimate = jansen_total if self.indices == "total" else saltelli_first
        return np.stack([estimate(s, self.nb_design) for s in scores])


class HSICAttribution(_GridSensitivity):
    """HSIC attribution (Novello et al., 2022): the dependence between each cell and the score.

    Binary masks (TensorFlow's Sobol sequence rounded, as Xplique) keep or drop each cell of the
    grid; after `samples` masked copies, each cell's Hilbert-Schmidt independence criterion with
    the score is estimated with Xplique's kernels: trace(K_i H L H) / N, the input kernel
    K_i(m, m') = 1.5 - (m_i - m'_i)^2, the output kernel L Gaussian of width `bandwidth`.

    Args:
        model: Keras model.
        grid: cells a side (an int, or one per spatial axis).
        samples: the number of masks N.
        bandwidth: the output kernel's width: None for the median distance between the scores
            (Gretton et al.'s rule), or a callable scores (N,) -> width. Xplique takes the median
            of the scores themselves (`bandwidth=numpy.median`), which is 0 for logits centred on
            0, where the kernel degenerates; its default reads probabilities.
        score: "logit" or "probability".
        baseline: what masked pixels become.
        batch_size, output, input, jit_compile: as for Occlusion.

    Example:
        >>> maps = ki.HSICAttribution(model, grid=8, samples=1500).explain(images)   # (B, H, W)
    """

    def __init__(self, model, grid=8, samples=1500, bandwidth=None, score="logit", baseline=0.0, batch_size=256,
                 output=None, input=None, jit_compile=None):
        super().__init__(model, grid, score, baseline, batch_size, output, input, jit_compile)
        self.samples = check_count(samples, "samples", least=2)
        if bandwidth is not None and not callable(bandwidth):
            raise ValueError(f"bandwidth must be None or a callable scores -> width; received {bandwidth!r}.")
        self.bandwidth = bandwidth

    def designs(self, cells):
        """(samples, cells) float32 in {0, 1}: the binary masks."""
        return np.round(tf.math.sobol_sample(cells, self.samples, dtype=tf.float32).numpy())

    def _values(self, scores, designs):
        width = self.bandwidth or median_distance
        return np.stack([hsic_binary(s, designs, width(s)) for s in scores])
