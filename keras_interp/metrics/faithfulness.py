"""Faithfulness: deletion and insertion curves (Petsiuk, Das and Saenko, RISE, BMVC 2018).

A faithful map ranks first the pixels the model needs. Deletion replaces the pixels by a
substrate in the order the map ranks them, most important first, and follows the target's
probability: it should fall fast, so a low area under the curve is good. Insertion starts
from the substrate and puts the pixels back in the same order: the probability should rise
fast, so a high area is good.
"""

import cv2
import numpy as np
import tensorflow as tf

from keras_interp.explainers.chunks import broadcast_baseline, over_chunks, plan_chunks, replaced_copies
from keras_interp.explainers.perturbation import PerturbationExplainer
from keras_interp.metrics._maps import pixel_maps, single_images
from keras_interp.targets import select_scores

__all__ = ["deletion_curve", "insertion_curve", "deletion_auc", "insertion_auc", "pixel_ranks", "substrate_images"]

SUBSTRATES = ("blur", "zero", "mean")


def substrate_images(x, substrate):
    """What removed pixels become, at x's shape (B, H, W, C).

    "blur": each image blurred by a Gaussian of kernel 11 and sigma 5 (RISE's kernel size and
    sigma for its insertion start; on images smaller than RISE's 224 pixels it blurs relatively
    more); "zero": zeros in the model's input space (black for images in [0, 1]; RISE deletes
    to the zero of ImageNet-normalised inputs, the data set's mean colour); "mean": each
    image's per-channel mean; or an array broadcastable to x (a scalar, an (H, W, C) image, one
    per example), in the model's input space.
    """
    if isinstance(substrate, str):
        if substrate == "blur":
            blurred = np.empty_like(x)
            for i, image in enumerate(x):
                for c in range(x.shape[-1]):
                    blurred[i, ..., c] = cv2.GaussianBlur(image[..., c], (11, 11), 5.0, borderType=cv2.BORDER_REFLECT)
            return blurred
        if substrate == "zero":
            return np.zeros_like(x)
        if substrate == "mean":
            return np.ascontiguousarray(np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape))
        raise ValueError(f"substrate must be one of {SUBSTRATES} or an array; received {substrate!r}.")
    if substrate is None:
        raise ValueError(f"substrate must be one of {SUBSTRATES} or an array; received None.")
    return broadcast_baseline(substrate, x, name="substrate")


def pixel_ranks(maps, seed=0):
    """(B, H, W) int32: each pixel's place in its map's descending order (0 = most important).

    Ties (the zero region of a ReLU'd map, a constant map) are broken by a fixed pseudo-random
    order of the pixels, seeded, so they are removed evenly over the image rather than row by
    row; a constant map is then a random ranking.
    """
    flat = maps.reshape(len(maps), -1)
    shuffle = np.random.default_rng(seed).permutation(flat.shape[1])
    order = np.stack([np.lexsort((shuffle, -row)) for row in flat])
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.reshape(maps.shape).astype(np.int32)


class _Curves(PerturbationExplainer):
    """The compiled curve: every step's perturbed images streamed through the model in chunks."""

    def _curve_fn(self, x, classes, score_fn, substrate, ranks, inserting, steps, per):
        _, classes = select_scores(self.scorer(x), classes, score_fn)  # None: the original's top class
        shape = tf.shape(x)
        batch, pixels = shape[0], shape[1] * shape[2]

        def chunk(curves, _, ids):
            k = tf.shape(ids)[0]
            moved = (ids * pixels + steps // 2) // steps  # pixels removed (or inserted) at each step
            first = ranks[None] < moved[:, None, None, None]  # (k, B, H, W): the top-ranked ones
            # Deletion: the first pixels from the substrate; insertion: only those kept.
            images = replaced_copies(substrate, x, first) if inserting else replaced_copies(x, substrate, first)
            confidence = self.scorer.confidence(self.scorer(images), tf.tile(classes, [k]), score_fn)
            return tf.tensor_scatter_nd_update(curves, ids[:, None], tf.reshape(confidence, (k, batch)))

        return tf.transpose(over_chunks(chunk, tf.zeros(tf.stack([steps + 1, batch])), steps + 1, per,
                                        xla=self.tracing_xla()))


def _curve(model, inputs, maps, target, steps, substrate, batch_size, inserting, output=None):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int; received {steps!r}.")
    curves = _Curves(model, batch_size=batch_size, output=output)
    x, classes, score_fn = curves._prepare(inputs, target)
    single_images(x, "Deletion and insertion curves need")
    ranks = pixel_ranks(pixel_maps(maps, x.shape[1:3], len(x), "inputs"))
    steps = min(int(steps), x.shape[1] * x.shape[2])

    def call(xb, cb, sb, rb):
        per = plan_chunks(steps + 1, xb.shape[0], curves.batch_size)
        return curves._call("_curve_fn", xb, cb, score_fn, sb, rb, inserting, steps, per)

    return curves._batched(call, x, classes, substrate_images(x, substrate), ranks).astype(np.float32)


_ARGS = """
    Args:
        model: the Keras model the maps explain.
        inputs: (B, H, W, C) images, as the model takes them.
        maps: (B, h, w) maps, one per image; smaller maps (a CAM before upsampling) are
            resized to the images bilinearly. Only their order matters.
        target: as for the explainers: None (each image's top class on the original image,
            kept along the curve), an int, one int per image, or a callable `logits -> (B,)`.
        steps: points of the curve after the first: step i moves round(i H W / steps)
            pixels (all channels of a pixel together). At most H W.
        substrate: "blur" (default; RISE's insertion start), "zero" (RISE's deletion
            substrate), "mean", or an array in the model's input space (see `substrate_images`).
        batch_size: most images per forward pass; the B x (steps + 1) perturbed images are
            streamed in chunks of this size.
        output: the output whose target is followed (name or index), for a model with several.

    The curve follows the target's probability: the model's own softmax or sigmoid probability
    (no second softmax), the softmax of the logits for a logit model, the callable target's
    value, or the raw output of a model with one unsquashed score. Ties in a map are broken by
    a fixed pseudo-random order (see `pixel_ranks`), so a constant map is a random ranking.
    RISE deletes to a constant and inserts into a blur; the default here blurs for both, so
    that the two curves start or end at the same image (pass substrate="mean" for a constant).
"""


def deletion_curve(model, inputs, maps, target=None, steps=32, substrate="blur", batch_size=128, output=None):
    """(B, steps + 1) float32: the target's probability as the most important pixels are removed.

    Point i replaces the round(i H W / steps) highest-ranked pixels by the substrate; point 0
    is the original image, the last the substrate alone.
    """
    return _curve(model, inputs, maps, target, steps, substrate, batch_size, inserting=False, output=output)


def insertion_curve(model, inputs, maps, target=None, steps=32, substrate="blur", batch_size=128, output=None):
    """(B, steps + 1) float32: the target's probability as the most important pixels are inserted.

    Point i puts the round(i H W / steps) highest-ranked pixels of the image into the
    substrate; point 0 is the substrate alone, the last the original image.
    """
    return _curve(model, inputs, maps, target, steps, substrate, batch_size, inserting=True, output=output)


def _area(curves):
    """Trapezoidal area over the fraction of pixels moved, in [0, 1]."""
    return ((curves[:, :-1] + curves[:, 1:]).sum(axis=1) / (2 * (curves.shape[1] - 1))).astype(np.float32)


def _area_over(curves, fractions):
    """Trapezoidal area of curves (B, n) over the points `fractions` (n,), divided by their span:
    the curve's mean level (a single point: its value)."""
    if len(fractions) == 1:
        return curves[:, 0].astype(np.float32)
    widths = np.diff(fractions)
    area = ((curves[:, :-1] + curves[:, 1:]) * widths).sum(axis=1) / 2
    return (area / (fractions[-1] - fractions[0])).astype(np.float32)


def deletion_auc(model, inputs, maps, target=None, steps=32, substrate="blur", batch_size=128, output=None):
    """Per-image area under the deletion curve, (B,) float32: lower is more faithful.

    Example:
        >>> maps = ki.GradCAM(model).explain(images)
        >>> ki.metrics.deletion_auc(model, images, maps).mean()
    """
    return _area(deletion_curve(model, inputs, maps, target, steps, substrate, batch_size, output))


def insertion_auc(model, inputs, maps, target=None, steps=32, substrate="blur", batch_size=128, output=None):
    """Per-image area under the insertion curve, (B,) float32: higher is more faithful.

    Example:
        >>> ki.metrics.insertion_auc(model, images, ki.Saliency(model).explain(images)).mean()
    """
    return _area(insertion_curve(model, inputs, maps, target, steps, substrate, batch_size, output))


for _fn in (deletion_curve, insertion_curve, deletion_auc, insertion_auc):
    _fn.__doc__ += _ARGS
