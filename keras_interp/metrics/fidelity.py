"""Do the attributions add up to what the model does? MuFidelity and infidelity; and do they
stay put when the input barely moves? Max-sensitivity.

- MuFidelity (Bhatt, Weller and Moura, IJCAI 2020): over random subsets S of the image, the
  Pearson correlation between the attributions' sum over S and the score's drop when S is set
  to a baseline, f(x) - f(x with S removed). Subsets are cells of a grid (Xplique's reading:
  9 x 9 cells, each removed with probability 0.2). Higher is better; 1 for Gradient x Input on a
  linear model with the zero baseline.
- Infidelity (Yeh, Hsieh, Suggala, Inouye and Ravikumar, NeurIPS 2019): the mean squared
  difference between I . phi and f(x) - f(x - I) over random perturbations I, with the
  attributions first scaled by the factor that minimizes it, as the authors' code does, so the
  value does not depend on the attributions' units. Lower is better; 0 for the gradient of a
  linear model.
- Max-sensitivity (same paper): the largest change of the explanation, ||phi(y) - phi(x)|| /
  ||phi(x)||, over inputs y drawn uniformly within an L-infinity ball around x. Lower is
  better; 0 for the saliency map of a linear model.

The attributions are maps (B, h, w) from any explainer (smaller ones, CAMs, resized to the
pixels bilinearly) or per-channel attributions (B, H, W, C) as the inputs. A map perturbs and
removes whole pixels (all channels together); per-channel attributions perturb each value.
Scores are the target's pre-softmax score, as the explainers explain it (score="probability"
reads the class probability instead).
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.chunks import merge_leading
from keras_interp.explainers.gradients import _value_range
from keras_interp.explainers.masking import (
    MaskExplainer,
    check_count,
    check_number,
    check_seed,
    per_axis,
    resize_matrix,
    upsample_grids,
)
from keras_interp.metrics._maps import pixel_maps, single_images
from keras_interp.targets import resolve_target, top_classes

__all__ = ["mu_fidelity", "infidelity", "max_sensitivity"]


class _Subsets(MaskExplainer):
    """The model's scores with random grid cells of each image set to the baseline."""

    def _masks(self, ids, xi, arrays):
        grids, rows, cols = arrays
        return upsample_grids(tf.gather(grids, ids), (rows, cols))[:, None]  # (k, 1, H, W)


class _Noised(MaskExplainer):
    """The model's scores on x - s I: draws I shared by the examples, each example's scale s."""

    def _masks(self, ids, xi, arrays):
        draws, scale = arrays  # (count, H, W, C or 1), (B, 1, 1, 1): one row per example
        return tf.gather(draws, ids)[:, None] * scale[None]  # (k, B, H, W, C or 1): the perturbations

    def _copies(self, xi, baseline, perturbations):
        return merge_leading(xi[None] - perturbations)


def _image_inputs(explainer, inputs, target, what):
    prepared, xi = explainer._prepared(inputs, target)
    single_images(prepared[0], f"{what} needs")
    return prepared, xi


def _attributions(attributions, xi):
    """(B, H, W, 1) for maps (resized to the pixels), (B, H, W, C) for per-channel attributions."""
    a = np.asarray(attributions)
    if a.ndim == 4:
        if a.shape != xi.shape:
            raise ValueError(f"Per-channel attributions must have the inputs' shape {xi.shape}; received {a.shape}.")
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError("The attributions contain NaN or infinite values.")
        return a
    return pixel_maps(a, xi.shape[1:3], len(xi), "inputs")[..., None]


def _scores_with_original(explainer, prepared, count, shared, aligned=()):
    """(f(x) per image (B,), scores of the `count` perturbed copies (B, count)): perturbation 0 is
    the identity (an all-kept grid, a zero draw), so the original is scored in the same passes."""
    scores = explainer._scores(prepared, count + 1, shared=shared, aligned=aligned).astype(np.float64)
    return scores[:, 0], scores[:, 1:]


def mu_fidelity(model, inputs, attributions, target=None, grid=9, subset=0.2, samples=128, baseline=0.0,
                score="logit", seed=0, batch_size=256, output=None):
    """Per-image MuFidelity, (B,) float32 in [-1, 1]: higher is better (see the module docstring).

    Args:
        model: the Keras model the attributions explain.
        inputs: (B, H, W, C) images, as the model takes them.
        attributions: (B, h, w) maps or (B, H, W, C) attributions, one per image.
        target: None (each image's top class), an int, one int per image, or a callable
            `logits -> (B,)`.
        grid: cells per side of the subset grid (an int or (rows, cols)).
        subset: the probability that a cell is removed.
        samples: random subsets per image (the same subsets for every image).
        baseline: the value removed pixels take, in the model's input space.
        score: "logit" (the pre-softmax score) or "probability".
        seed: seed of the subsets.
        batch_size, output: as for the explainers.

    An image whose score does not change, or whose attributions sum to the same over every
    subset, has no correlation: its value is 0 (Xplique's convention).
    """
    samples = check_count(samples, "samples", 2)
    subset = check_number(subset, "subset", 0.0, 1.0, low_open=True)
    seed = check_seed(seed)
    explainer = _Subsets(model, score=score, baseline=baseline, batch_size=batch_size, output=output)
    prepared, xi = _image_inputs(explainer, inputs, target, "MuFidelity")
    cells = per_axis(grid, 2, "grid")
    phi = _attributions(attributions, xi).sum(axis=-1, dtype=np.float64)  # (B, H, W)
    rows, cols = (resize_matrix(n, c, "nearest") for n, c in zip(xi.shape[1:3], cells))
    kept = (np.random.default_rng(seed).uniform(size=(samples,) + cells) > subset).astype(np.float32)
    grids = np.concatenate([np.ones((1,) + cells, np.float32), kept])
    original, masked = _scores_with_original(explainer, prepared, samples, (grids, rows, cols))
    drops = original[:, None] - masked
    per_cell = np.einsum("hc,bhw,wd->bcd", rows, phi, cols).reshape(len(phi), -1)  # the attributions per cell
    removed = per_cell @ (1.0 - kept.reshape(samples, -1)).T  # (B, samples)
    return np.array([_pearson(a, b) for a, b in zip(drops, removed)], np.float32)


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    if scale <= 1e-12 * max(1.0, np.abs(a).max() ** 2, np.abs(b).max() ** 2):
        return 0.0
    return float((a * b).sum() / scale)


def infidelity(model, inputs, attributions, target=None, samples=64, noise=0.1, score="logit", seed=0,
               batch_size=256, output=None):
    """Per-image infidelity, (B,) float32 >= 0: lower is better (see the module docstring).

    Args:
        model: the Keras model the attributions explain.
        inputs: (B, H, W, C) images, as the model takes them.
        attributions: (B, h, w) maps (each pixel perturbed by one draw on all its channels) or
            (B, H, W, C) attributions (each value perturbed on its own).
        target: None (each image's top class), an int, one int per image, or a callable.
        samples: perturbations per image (the same draws for every image, scaled to it).
        noise: the perturbations' standard deviation, a fraction of each image's value range
            (max - min), as SmoothGrad's noise.
        score: "logit" (the pre-softmax score) or "probability".
        seed, batch_size, output: as for the explainers.

    Perturbations I are Gaussian; the value is min over beta of E[(beta I . phi - (f(x) - f(x -
    I)))^2] (Yeh et al.'s code scales each explanation by that beta first), in the score's units
    squared. beta may be negative, as in the authors' code: a map and its negation score the same
    (read the sign from MuFidelity).
    """
    samples = check_count(samples, "samples", 2)
    noise = check_number(noise, "noise", 0.0, low_open=True)
    seed = check_seed(seed)
    explainer = _Noised(model, score=score, batch_size=batch_size, output=output)
    prepared, xi = _image_inputs(explainer, inputs, target, "Infidelity")
    phi = _attributions(attributions, xi)
    draws = np.random.default_rng(seed).standard_normal((samples,) + phi.shape[1:]).astype(np.float32)
    scale = (noise * _value_range(xi)).astype(np.float32)  # (B, 1, 1, 1)
    original, moved = _scores_with_original(explainer, prepared, samples,
                                            (np.concatenate([np.zeros_like(draws[:1]), draws]),), (scale,))
    changes = original[:, None] - moved
    # I . phi per draw, each image's draws scaled to it.
    dots = scale.reshape(-1, 1) * (phi.reshape(len(phi), -1).astype(np.float64) @ draws.reshape(samples, -1).T)
    beta = np.divide((changes * dots).mean(axis=1), (dots * dots).mean(axis=1),
                     out=np.zeros(len(dots)), where=(dots * dots).mean(axis=1) > 0)
    return ((changes - beta[:, None] * dots) ** 2).mean(axis=1).astype(np.float32)


def _finite_maps(maps):
    if not np.isfinite(maps).all():
        raise ValueError("The explainer gave NaN or infinite maps: has training diverged, or do the inputs lie "
                         "outside the range the model takes? No sensitivity can be computed from them.")
    return maps


def max_sensitivity(explainer, inputs, radius=0.02, samples=10, target=None, seed=0):
    """Per-image max-sensitivity, (B,) float32 >= 0: lower is better (see the module docstring).

    Args:
        explainer: any keras_interp explainer (its `explain` is called samples + 1 times).
        inputs: (B, ..., C) inputs of a single-input model.
        radius: the L-infinity radius of the uniform perturbations, a fraction of each input's
            value range (max - min): 0.02 on [0, 1] images is Captum's default radius.
        samples: perturbed inputs per example.
        target: as for `explain`; None explains each input's top class on the original and
            keeps that class for the perturbed ones (a flipped prediction is not a changed map).
        seed: seed of the perturbations.

    The value is max_j ||phi(x + d_j) - phi(x)|| / ||phi(x)|| (Frobenius norms over the map).
    An all-zero map scores 0 when it stays zero, inf otherwise.
    """
    samples = check_count(samples, "samples")
    radius = check_number(radius, "radius", 0.0)
    seed = check_seed(seed)
    if not hasattr(explainer, "explain") or not hasattr(explainer, "scorer"):
        raise TypeError(f"max_sensitivity takes a keras_interp explainer (with explain); received "
                        f"{type(explainer).__name__}.")
    x, _, _ = explainer._prepare(inputs, None)
    if isinstance(x, tuple):
        raise ValueError("max_sensitivity needs a single-input model; this one takes "
                         f"{len(x)} inputs.")
    if target is None:
        target = top_classes(explainer.scorer, x, explainer.batch_size)
        if target is None:
            raise ValueError(f"target=None needs (batch, classes) outputs; the model gives "
                             f"{explainer.scorer.output_shape}: pass a callable target.")
    elif not callable(target):
        target = resolve_target(target, len(x), explainer.scorer.num_classes, explainer.scorer.output_shape)[0]
    base = _finite_maps(np.asarray(explainer.explain(x, target=target), np.float64).reshape(len(x), -1))
    size = radius * _value_range(x)
    rng = np.random.default_rng(seed)
    worst = np.zeros(len(x))
    for _ in range(samples):
        moved = (x + rng.uniform(-1.0, 1.0, size=x.shape).astype(np.float32) * size).astype(np.float32)
        maps = np.asarray(explainer.explain(moved, target=target), np.float64).reshape(len(x), -1)
        _finite_maps(maps)
        worst = np.maximum(worst, np.linalg.norm(maps - base, axis=1))
    norm = np.linalg.norm(base, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(worst == 0, 0.0, worst / norm).astype(np.float32)
