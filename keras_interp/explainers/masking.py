"""What the black-box explainers share: the model's scores on masked copies of the examples.

RISE, Sobol, HSIC, LIME and Kernel SHAP read the model only through its outputs on copies
x * M + (1 - M) * baseline, M a mask with values in [0, 1] per pixel (Petsiuk et al. 2018; Fel et
al. 2021 call it inpainting). They need no gradient: a SavedModel behind TFSMLayer, a quantized
model or non-differentiable preprocessing inside the model explain as well as any other.

`MaskExplainer` streams the copies through the model in chunks (the chunk loop of occlusion,
keras_interp.explainers.chunks), so memory stays flat as the number of masks grows: each method
only says how to build a chunk's masks (`_masks`) and what to keep of a chunk's scores (`_start`,
`_add`; by default the scores themselves, (masks, B) floats, for an estimator run on the host).
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import choose_input
from keras_interp.explainers.chunks import batch_of, broadcast_baseline, fused, merge_leading, over_chunks, plan_chunks
from keras_interp.explainers.occlusion import _expand, _per_axis
from keras_interp.explainers.perturbation import PerturbationExplainer
from keras_interp.targets import select_scores

__all__ = ["MaskExplainer", "blended_copies", "resize_matrix", "upsample_grids", "check_count", "check_number",
           "check_seed", "negligible_spread", "per_axis"]

SCORES = ("logit", "probability")


@fused
def blended_copies(x, baseline, masks):
    """(k * B, ..., C), k-major: x * M + (1 - M) * baseline for each of the k masks M ((k, B or 1,
    *spatial), values in [0, 1])."""
    m = masks[..., None]
    return merge_leading(baseline[None] + m * (x[None] - baseline[None]))


def resize_matrix(size, cells, method):
    """(size, cells) float32: tf.image.resize of a length-`cells` axis to `size` (bilinear with
    half-pixel centres, or nearest) as a matrix, so a grid is resized by matrix products."""
    eye = tf.eye(cells)[:, None, :]  # an image of height `cells`, width 1, one channel per cell
    return tf.image.resize(eye, (size, 1), method=method).numpy()[:, 0, :].astype(np.float32)


def upsample_grids(grids, matrices):
    """(k, n_1, .., n_a): grids (k, s_1, .., s_a) with axis i mapped by matrices[i], (n_i, s_i) or
    one per grid (k, n_i, s_i). Each step multiplies the first grid axis and rotates it to the
    end, so after a steps the axes are back in order."""
    g = grids
    k = tf.shape(g)[0]
    for m in matrices:
        shape = tf.shape(g)
        g = tf.transpose(tf.reshape(g, tf.stack([k, shape[1], -1])), [0, 2, 1])  # (k, rest, s_i)
        m = m if len(m.shape) == 3 else m[None]
        g = tf.matmul(g, tf.cast(m, g.dtype), transpose_b=True)  # (k, rest, n_i)
        g = tf.reshape(g, tf.concat([[k], shape[2:], tf.shape(m)[1:2]], 0))
    return g


def check_count(value, name, least=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an int >= {least}; received {value!r}.")
    return int(value)


def per_axis(value, axes, name):
    """A positive int or one per spatial axis, as a tuple of `axes` ints; else a ValueError
    (occlusion's patch and stride checks)."""
    return tuple(_expand(_per_axis(value, name), axes, name))


def check_number(value, name, low=None, high=None, low_open=False):
    """A float within [low, high] (or (low, high] with low_open), else a ValueError saying so."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = ok and np.isfinite(value) and (low is None or value > low if low_open else low is None or value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        ends = ("-inf" if low is None else low, "inf" if high is None else high)
        interval = f"{'(' if low_open else '['}{ends[0]}, {ends[1]}]"
        raise ValueError(f"{name} must be a number in {interval}; received {value!r}.")
    return float(value)


def check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; received {seed!r}.")
    return int(seed)


def negligible_spread(scores):
    """Whether scores (N,) vary only by float32 rounding: a model that does not respond to the
    masks (its indices are then 0, not a map of the noise)."""
    scores = np.asarray(scores, np.float64)
    return np.ptp(scores) <= 1e-5 * max(1.0, float(np.abs(scores).max()))


class MaskExplainer(PerturbationExplainer):
    """Base of the black-box explainers: scores of masked copies, streamed in chunks.

    Args:
        model, batch_size, output, jit_compile: see keras_interp.explainers.base.Explainer.
        score: what the model's output is read as: "logit" (the pre-softmax score, as every
            gradient method explains) or "probability" (the class's probability: the model's
            own softmax or sigmoid re-applied, never a second one; see Scorer.confidence). A
            callable target's value is used as it is either way.
        baseline: the value masked pixels take, in the model's input space: a scalar, an
            (H, W, C) image or one per example.
        input: the input to mask (name or index) for a model with several; the others are kept.
    """

    signed = False
    display_clip = (0.0, 99.9)  # region maps: keep every nonzero cell
    _probe = "forward"

    def __init__(self, model, score="logit", baseline=0.0, batch_size=256, output=None, input=None,
                 jit_compile=None):
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}; received {score!r}.")
        self.score = score
        self.baseline = baseline
        self.input_index = choose_input(self.scorer, input)
        shapes = self.scorer.input_shapes
        if shapes and len(shapes[self.input_index]) < 3:
            raise ValueError(
                f"{type(self).__name__} masks an input with spatial axes (a signal, an image or a volume); the "
                f"chosen input has shape {tuple(shapes[self.input_index])}. Pass input= to choose another."
            )

    def _read(self, logits, classes, score_fn):
        if self.score == "probability":
            return self.scorer.confidence(logits, classes, score_fn)
        return select_scores(logits, classes, score_fn)[0]

    # What a method defines: its masks, and what it keeps of each chunk's scores.
    def _masks(self, ids, xi, arrays):
        """(k, B or 1, *spatial) float32 masks of the perturbations `ids` (int32, (k,)); `arrays`
        are the tensors the method passed to `_scores` (its draws)."""
        raise NotImplementedError

    def _copies(self, xi, baseline, masks):
        """The chunk's perturbed copies (k * B, ..., C), k-major, from its `_masks`: by default
        x * M + (1 - M) * baseline."""
        return blended_copies(xi, baseline, masks)

    def _start(self, xi, count):
        return tf.zeros(tf.stack([count, tf.shape(xi)[0]]), tf.float32)

    def _add(self, state, scores, masks, ids):
        return tf.tensor_scatter_nd_update(state, ids[:, None], scores)

    def _finish(self, state):
        """The kept state with the examples first (the batch is split and joined on axis 0)."""
        return tf.transpose(state)  # (B, count) scores

    def _scores_fn(self, x, classes, score_fn, baseline, count, per, arrays):
        clean = self.scorer(x)
        classes = select_scores(clean, classes, score_fn)[1]
        xi, others = self._split(x, self.input_index)

        def chunk(state, _, ids):
            k = tf.shape(ids)[0]
            masks = self._masks(ids, xi, arrays)
            logits = self._logits_with(self._copies(xi, baseline, masks), others)
            scores = tf.reshape(self._read(logits, tf.tile(classes, [k]), score_fn), tf.stack([k, -1]))
            return self._add(state, scores, masks, ids)

        state = over_chunks(chunk, self._start(xi, count), count, per, xla=self.tracing_xla())
        return self._finish(state), self._read(clean, classes, score_fn), classes

    def _prepared(self, inputs, target):
        """(the checked inputs, classes and score function, as `_scores` takes them; the masked
        input (B, ..., C)), checked once per call."""
        prepared = self._prepare(inputs, target)
        return prepared, self._split(prepared[0], self.input_index)[0]

    def _scores(self, prepared, count, shared=(), aligned=()):
        """The kept state (B, ...) as NumPy: the model read on `count` masked copies of each
        example (`prepared` from `_prepared`). `shared` arrays are the same for every example;
        `aligned` ones have one row per example (split with them)."""
        x, classes, score_fn = prepared
        xi = self._split(x, self.input_index)[0]
        shared = tuple(shared)

        def call(xb, cb, baseline, *rows):
            per = plan_chunks(count, batch_of(xb), self._chunk_images(xb, count))
            return self._call("_scores_fn", xb, cb, score_fn, baseline, count, per, shared + tuple(rows))

        state, clean, _ = self._batched(call, x, classes, broadcast_baseline(self.baseline, xi), *aligned)
        if not (np.isfinite(clean).all() and np.isfinite(state).all()):
            bad = "its outputs on the inputs" if not np.isfinite(clean).all() else "its outputs on masked copies"
            raise ValueError(
                f"The model gave NaN or infinite scores ({bad}): has training diverged, or do the "
                "inputs lie outside the range the model takes? No map can be computed from them."
            )
        return state

    @staticmethod
    def _spatial(xi):
        return tuple(int(n) for n in xi.shape[1:-1])
