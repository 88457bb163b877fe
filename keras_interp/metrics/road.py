"""ROAD: Remove And Debias (Rong, Leemann, Nguyen, Fiedler, Haghighi, Kasneci, ICML 2022).

Deletion replaces pixels by a blur or a constant, and the shape of what was replaced tells the
model where the removed pixels were: a map can score well by leaking its own mask. ROAD removes
pixels by noisy linear imputation instead: each removed pixel becomes the weighted mean of its
8 neighbours (weight 1/6 for the 4 edge neighbours, 1/12 for the 4 diagonal ones; only the
neighbours inside the image count, their weights renormalised), all removed pixels of an image
at once, which is one sparse linear system, plus a little Gaussian noise. The target's
probability is then read with the top (MoRF: most relevant first, a fast fall is good) or the
bottom (LeRF: least relevant first, a slow fall is good) fraction of the pixels removed.

The system of an image is a weighted graph Laplacian on the removed pixels with the kept ones
as boundary values: symmetric and positive definite wherever every region of removed pixels
touches a kept pixel, as it does for any fraction below 1. ROAD's authors solve it with a direct
sparse solver; here it is solved by conjugate gradients preconditioned by a multigrid V-cycle
(`solve_imputation`), for all images, channels and fractions of a chunk at once inside the
compiled chunk loop, until every removed pixel is within `TOLERANCE` (1e-5) of the image's value
range of its neighbours' weighted mean: the definition, to that tolerance (tests/test_evaluation.py
checks it pixel by pixel, and against a dense NumPy solve).
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.chunks import fused, over_chunks, plan_chunks
from keras_interp.explainers.masking import check_number, check_seed
from keras_interp.explainers.perturbation import PerturbationExplainer
from keras_interp.metrics._maps import pixel_maps, single_images
from keras_interp.metrics.faithfulness import _area_over, pixel_ranks
from keras_interp.targets import select_scores

__all__ = ["road", "road_curve", "impute", "NEIGHBOUR_WEIGHTS", "PERCENTAGES"]

# Row-major 3x3 weights of the neighbours (the centre is the pixel itself).
NEIGHBOUR_WEIGHTS = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORDERS = ("morf", "lerf")
# Of the image's value range: the solution is then within about 1e-3 of the range of the exact one
# (a quarter of an 8-bit level; tests/test_evaluation.py).
TOLERANCE = 1e-5


def _neighbour_sum(u):
    """sum_j w_ij u_j over the 8 neighbours j of each pixel i (zero outside the image), for planes
    (M, H, W).

    The stencil is separable up to its centre: [1 2 1]^T [1 2 1] / 12 has 1/3 at the centre, so
    the sum is that filter less u / 3, as shifted adds."""
    p = tf.pad(u, [[0, 0], [1, 1], [0, 0]])
    rows = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]
    p = tf.pad(rows, [[0, 0], [0, 0], [1, 1]])
    return (p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]) / 12.0 - u / 3.0


def _blocks(t):
    """(M, ceil(H / 2), ceil(W / 2)): each 2x2 block's sum (zero padded to even sizes)."""
    height, width = t.shape[1], t.shape[2]
    t = tf.pad(t, [[0, 0], [0, height % 2], [0, width % 2]])
    return tf.reduce_sum(tf.reshape(t, tf.stack([tf.shape(t)[0], t.shape[1] // 2, 2, t.shape[2] // 2, 2])),
                         axis=[2, 4])


def _interleave(even, odd, axis):
    """even[i] at 2i and odd[i] at 2i + 1 along axis (1 or 2)."""
    shape = tf.unstack(tf.shape(even))
    shape[axis] = 2 * even.shape[axis]
    return tf.reshape(tf.stack([even, odd], axis + 1), tf.stack(shape))


def _prolong(c, axis):
    """Cell-centred linear interpolation to twice the size along axis: fine 2i gets 3/4 of coarse
    i and 1/4 of coarse i - 1, fine 2i + 1 3/4 of i and 1/4 of i + 1 (the edge value repeated
    past the border)."""
    n = c.shape[axis]
    before = tf.concat([_take(c, axis, 0, 1), _take(c, axis, 0, n - 1)], axis)
    after = tf.concat([_take(c, axis, 1, n), _take(c, axis, n - 1, n)], axis)
    return _interleave(0.75 * c + 0.25 * before, 0.75 * c + 0.25 * after, axis)


def _restrict(f, axis):
    """The transpose of `_prolong` along axis (f of even size)."""
    n = f.shape[axis] // 2
    pairs = tf.reshape(f, tf.concat([tf.shape(f)[:axis], [n, 2], tf.shape(f)[axis + 1:]], 0))
    even, odd = tf.unstack(pairs, axis=axis + 1)
    next_even = tf.concat([_take(even, axis, 1, n), _take(odd, axis, n - 1, n)], axis)
    previous_odd = tf.concat([_take(even, axis, 0, 1), _take(odd, axis, 0, n - 1)], axis)
    return 0.75 * (even + odd) + 0.25 * (next_even + previous_odd)


def _take(t, axis, start, stop):
    return t[:, start:stop] if axis == 1 else t[:, :, start:stop]


def _coarser(t):
    """(M, ceil(H / 2), ceil(W / 2)): the residual carried to the coarse grid, the transpose of
    `_finer` (so the V-cycle stays symmetric, as CG needs)."""
    height, width = t.shape[1], t.shape[2]
    return _restrict(_restrict(tf.pad(t, [[0, 0], [0, height % 2], [0, width % 2]]), 1), 2)


def _finer(t, size):
    """The coarse correction interpolated bilinearly to the fine grid, cropped to size=(H, W)."""
    return _prolong(_prolong(t, 1), 2)[:, :size[0], :size[1]]


# Plain Jacobi: the stencil's high frequencies have D^-1 A eigenvalues in [2/3, 4/3], which a
# weight of 1 damps by 1/3 or better (2/3 damps them by only 5/9); all eigenvalues lie in (0, 4/3],
# so the sweep converges and the V-cycle stays positive definite.
_SMOOTHING = 1.0
_COARSEST = 8  # pixels on the shorter side of the coarsest grid
_COARSEST_SWEEPS = 4


def solve_imputation(x, removed, tolerance):
    """(N, H, W, C): x with each removed pixel ((N, H, W, 1), 1.0 where removed) the weighted mean
    of its neighbours to within `tolerance` times the image's value range, all removed pixels
    solved together (no noise).

    Conjugate gradients, preconditioned by one multigrid V-cycle: a Jacobi sweep on each grid,
    the residual carried onto a grid of half the size (a coarse pixel is unknown where all four
    of its pixels are), the correction interpolated back bilinearly, down to 8 pixels a side.
    The V-cycle is symmetric, so CG converges to the full-resolution system's solution whatever
    the coarse grids miss; they only save iterations (about 8, against the image's side for
    plain CG). Each image
    and channel is its own system, laid out as planes (N * C, H, W)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    planes = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, height, width])
    spread = tf.reduce_max(x, axis=[1, 2, 3]) - tf.reduce_min(x, axis=[1, 2, 3])
    # A floor at float32 rounding of the values: a constant image (spread 0) is solved by its start.
    floor = 1e-6 * tf.reduce_max(tf.abs(x), axis=[1, 2, 3]) + 1e-30
    limit = tf.reshape(tf.repeat(tf.maximum(tolerance * spread, floor), channels), [-1, 1, 1])
    masks = [tf.reshape(tf.tile(tf.transpose(removed, [0, 3, 1, 2]), [1, channels, 1, 1]), [-1, height, width])]
    while min(masks[-1].shape[1:3]) > _COARSEST:
        # A coarse pixel is unknown where its whole block is: near kept pixels the correction is
        # left to the fine grid, which has their values (8 CG iterations against 15 with any).
        masks.append(tf.cast(_blocks(masks[-1]) > 3.5, x.dtype))
    weights = [_neighbour_sum(tf.ones_like(m[:1])) for m in masks]  # the neighbour weights inside the image

    def apply(level, u):  # the system's matrix on the unknown pixels: sum_j w_ij (u_i - u_j)
        return masks[level] * (weights[level] * u - _neighbour_sum(masks[level] * u))

    def smooth(level, r):
        return _SMOOTHING * masks[level] * r / weights[level]

    def v_cycle(level, r):
        e = smooth(level, r)
        if level == len(masks) - 1:
            for _ in range(_COARSEST_SWEEPS):
                e = e + smooth(level, r - apply(level, e))
            return e
        coarse = v_cycle(level + 1, masks[level + 1] * _coarser(r - apply(level, e)))
        e = e + masks[level] * _finer(coarse, r.shape[1:3])
        return e + smooth(level, r - apply(level, e))

    def dot(a, b):  # one value per plane: each is its own system
        return tf.reduce_sum(a * b, axis=[1, 2], keepdims=True)

    def far(r):  # planes with a removed pixel farther than the tolerance from its neighbours' mean
        return tf.reduce_max(tf.abs(r) / weights[0], axis=[1, 2], keepdims=True) > limit

    # XLA fuses each piece's stencil and pointwise work into a few loops (2-4x faster on CPU than
    # op by op); the loop around them stays plain (XLA compiling the whole solve was slower).
    fine, cycle = fused(lambda u: apply(0, u)), fused(lambda r: v_cycle(0, r))
    unknown = masks[0]
    kept = planes * (1.0 - unknown)
    mean = tf.math.divide_no_nan(tf.reduce_sum(kept, axis=[1, 2], keepdims=True),
                                 tf.reduce_sum(1.0 - unknown, axis=[1, 2], keepdims=True))
    u = unknown * mean  # each plane's mean kept value: the solution's scale, so CG finds its shape
    r = unknown * _neighbour_sum(kept) - fine(u)
    z = cycle(r)
    p, rz = z, dot(r, z)

    def unfinished(i, u, r, p, rz):
        return tf.logical_and(i < 20 * _COARSEST + height + width, tf.reduce_any(far(r)))

    def step(i, u, r, p, rz):
        ap = fine(p)
        # A system that has converged stops moving, so its answer does not depend on how long
        # the others in its chunk (other images, fractions) take.
        alpha = tf.cast(far(r), u.dtype) * tf.math.divide_no_nan(rz, dot(p, ap))
        u, r = u + alpha * p, r - alpha * ap
        z = cycle(r)
        rz_next = dot(r, z)
        return i + 1, u, r, z + tf.math.divide_no_nan(rz_next, rz) * p, rz_next

    _, u, *_ = tf.while_loop(unfinished, step, (tf.constant(0), u, r, p, rz))
    filled = tf.reshape(kept + unknown * u, tf.stack([-1, channels, height, width]))
    return tf.transpose(filled, [0, 2, 3, 1])


class _Road(PerturbationExplainer):
    """The compiled ROAD curve: each fraction's imputed images streamed through the model in chunks."""

    def _road_fn(self, x, classes, score_fn, ranks, counts, noise, lerf, tolerance, per):
        _, classes = select_scores(self.scorer(x), classes, score_fn)  # None: the original's top class
        shape = tf.shape(x)
        batch, pixels = shape[0], shape[1] * shape[2]
        levels = int(counts.shape[0])
        scale = tf.math.reduce_std(x, axis=[1, 2, 3], keepdims=True)  # the noise is relative to each image

        def chunk(curves, _, ids):
            k = tf.shape(ids)[0]
            n = tf.gather(counts, ids)[:, None, None, None]
            chosen = ranks[None] >= pixels - n if lerf else ranks[None] < n  # (k, B, H, W)
            removed = tf.reshape(tf.cast(chosen, x.dtype), tf.concat([[k * batch], shape[1:3], [1]], 0))
            copies = tf.reshape(tf.tile(x[None], [k, 1, 1, 1, 1]), tf.concat([[k * batch], shape[1:]], 0))
            filled = solve_imputation(copies, removed, tolerance)
            jitter = tf.repeat(tf.gather(noise, ids), batch, axis=0) * tf.tile(scale, [k, 1, 1, 1])
            images = filled + removed * jitter
            confidence = self.scorer.confidence(self.scorer(images), tf.tile(classes, [k]), score_fn)
            return tf.tensor_scatter_nd_update(curves, ids[:, None], tf.reshape(confidence, (k, batch)))

        return tf.transpose(over_chunks(chunk, tf.zeros(tf.stack([levels, batch])), levels, per,
                                        xla=self.tracing_xla()))


def _percentages(percentages):
    try:
        values = np.asarray(percentages, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size == 0 or not np.isfinite(values).all() or (values < 0).any() or (values >= 1).any() or (
            np.diff(values) <= 0).any():
        raise ValueError(
            f"percentages must be increasing fractions of the pixels in [0, 1), e.g. {PERCENTAGES}; "
            f"received {percentages!r}."
        )
    return values


def _noise_field(levels, shape, seed):
    """(levels, H, W, C) standard normal draws, one field per fraction, the same for every image
    (so an image's curve does not depend on the rest of its batch)."""
    return np.random.default_rng(seed).standard_normal((levels,) + tuple(shape)).astype(np.float32)


def road_curve(model, inputs, maps, target=None, percentages=PERCENTAGES, order="morf", noise=0.01, seed=0,
               batch_size=128, output=None):
    """(B, len(percentages)) float32: the target's probability with each fraction of the pixels
    removed by noisy linear imputation, in the map's order (see the module docstring).

    Args:
        model: the Keras model the maps explain.
        inputs: (B, H, W, C) images, as the model takes them.
        maps: (B, h, w) maps, one per image; smaller maps are resized bilinearly. Only their
            order matters; ties are broken in a fixed pseudo-random order (`pixel_ranks`).
        target: None (each image's top class on the original image), an int, one int per image,
            or a callable `logits -> (B,)` (its value is followed instead of a probability).
        percentages: fractions of the pixels removed, increasing, in [0, 1) (ROAD's 10% to 90%).
        order: "morf" removes the most relevant pixels first (lower is better), "lerf" the
            least relevant first (higher is better).
        noise: standard deviation of the Gaussian noise added to each imputed value, as a
            fraction of the image's standard deviation (ROAD adds 0.01 to standardized
            inputs, whose standard deviation is about 1).
        seed: seed of the noise.
        batch_size: most images per forward pass.
        output: the output whose target is followed (name or index), for a model with several.

    The probability is read as deletion_curve reads it: the model's own softmax or sigmoid, the
    softmax of a logit model's outputs, or a callable target's value.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; received {order!r}.")
    fractions = _percentages(percentages)
    noise = check_number(noise, "noise", 0.0)
    seed = check_seed(seed)
    road = _Road(model, batch_size=batch_size, output=output)
    x, classes, score_fn = road._prepare(inputs, target)
    single_images(x, "ROAD needs")
    pixels = x.shape[1] * x.shape[2]
    ranks = pixel_ranks(pixel_maps(maps, x.shape[1:3], len(x), "inputs"))
    # At least one pixel is kept: with none the system has no boundary values (singular).
    counts = np.minimum(np.floor(fractions * pixels + 0.5), pixels - 1).astype(np.int32)
    field = noise * _noise_field(len(counts), x.shape[1:], seed)

    def call(xb, cb, rb):
        per = plan_chunks(len(counts), xb.shape[0], road.batch_size)
        return road._call("_road_fn", xb, cb, score_fn, rb, counts, field, order == "lerf",
                          np.float32(TOLERANCE), per)

    curves = road._batched(call, x, classes, ranks).astype(np.float32)
    if not np.isfinite(curves).all():
        raise ValueError(
            "The model gave NaN or infinite probabilities on the imputed images: has training diverged, or do "
            "the inputs lie outside the range the model takes? ROAD cannot be computed from them."
        )
    return curves


def road(model, inputs, maps, target=None, percentages=PERCENTAGES, order="morf", noise=0.01, seed=0,
         batch_size=128, output=None):
    """Per-image ROAD score, (B,) float32: the area under `road_curve` over the fractions removed,
    divided by their span (the mean probability over 10%..90%): with order="morf" lower is
    better, with "lerf" higher is better. Arguments as for `road_curve`.

    Example:
        >>> maps = ki.GradCAM(model).explain(images)
        >>> ki.metrics.road(model, images, maps, order="morf").mean()
    """
    curves = road_curve(model, inputs, maps, target, percentages, order, noise, seed, batch_size, output)
    return _area_over(curves, _percentages(percentages))


_SOLVE = tf.function(solve_imputation)  # traced once per image shape


def impute(images, removed, noise=0.0, seed=0):
    """ROAD's noisy linear imputation of (B, H, W, C) images: the pixels where `removed` ((B, H, W)
    bool) is True become the weighted mean of their neighbours (module docstring), solved
    together, plus Gaussian noise of standard deviation `noise` times the image's standard
    deviation. NumPy in, NumPy (float32) out."""
    x = np.asarray(images, np.float32)
    mask = np.asarray(removed)
    if x.ndim != 4 or mask.shape != x.shape[:3]:
        raise ValueError(
            f"impute takes images (B, H, W, C) and a removed mask (B, H, W); received shapes {x.shape} and "
            f"{mask.shape}."
        )
    noise = check_number(noise, "noise", 0.0)
    full = np.flatnonzero(mask.reshape(len(mask), -1).all(axis=1))
    if full.size:
        raise ValueError(f"impute needs at least one kept pixel per image (the neighbours' values); image "
                         f"{int(full[0])} has every pixel removed.")
    m = tf.constant(mask.astype(np.float32)[..., None])
    filled = _SOLVE(tf.constant(x), m, tf.constant(TOLERANCE, tf.float32)).numpy()
    field = noise * _noise_field(1, x.shape[1:], check_seed(seed))[0]
    return filled + mask[..., None] * field * x.std(axis=(1, 2, 3), keepdims=True)
