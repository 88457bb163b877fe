"""Attention rollout (Abnar and Zuidema, 2020) and gradient-weighted rollout (Chefer, Gur and
Wolf, 2021, "Generic attention-model explainability"), for models built of Keras
`MultiHeadAttention` layers (a Vision Transformer, keras-hub's included, or a token model over a
signal).

Both read the attention probabilities A (B, heads, T, T) of every self-attention call, as the
model computes them (keras_interp.tokens.Watch: the model is not changed), combine them block
by block into a (T, T) relevance of tokens to tokens, and read the row of the class token (the
mean of all rows for a model without extra tokens, which pools all of them) over the patch
tokens, laid on their grid (keras_interp.tokens.TokenGrid) and upsampled to the input.
"""

import numpy as np
import tensorflow as tf

from keras_interp.explainers.base import Explainer
from keras_interp.explainers.cam import upsample_maps
from keras_interp.targets import select_scores
from keras_interp.tokens import Watch, attention_layers, attention_probe, token_grid

__all__ = ["AttentionRollout", "GradientAttentionRollout"]

HEAD_FUSIONS = ("mean", "max", "min")


class _Rollout(Explainer):
    """What both rollouts share: the attention layers, the token grid, the class row."""

    display_clip = (0.0, 99.9)
    signed = False

    def __init__(self, model, batch_size=128, output=None, jit_compile=None):
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        shapes = self.scorer.input_shapes
        if shapes is None:
            raise ValueError(
                f"Model {model.name!r} is a subclassed keras.Model with no known input shape, so the token grid "
                f"cannot be found. Wrap it: `inputs = keras.Input(shape); keras.Model(inputs, model(inputs))`; "
                f"{type(self).__name__} then reads its attention layers inside it."
            )
        if len(shapes) != 1 or len(shapes[0]) not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} draws maps on one image (batch, height, width, channels) or signal "
                f"(batch, length, channels) input; model {model.name!r} takes {shapes}."
            )
        self._layers = attention_layers(model)
        if not self._layers:
            raise ValueError(
                f"Model {model.name!r} has no keras.layers.MultiHeadAttention layer, so there is no attention to "
                "roll out. Class activation maps (ki.GradCAM) and the gradient and perturbation methods work on "
                "any model."
            )
        calls = attention_probe(self.scorer)
        if calls is None:
            raise ValueError(f"{type(self).__name__} needs a model with a fixed input size; model {model.name!r} takes "
                             f"{shapes[0]}.")
        shapes_seen = [probabilities for _, _, probabilities in calls]
        if not shapes_seen:
            raise ValueError(f"Model {model.name!r} has attention layers but called none of them on its input.")
        if any(s[-1] != s[-2] or s[-1] != shapes_seen[0][-1] for s in shapes_seen):
            raise ValueError(
                f"{type(self).__name__} rolls out self-attention over one token sequence; the attention calls of "
                f"model {model.name!r} have probabilities of shapes {shapes_seen} (batch, heads, queries, keys)."
            )
        tokens = shapes_seen[0][-1]
        self.blocks = len(shapes_seen)
        self.grid = token_grid(model, (None, tokens, None), shapes[0], f"The attention of model {model.name!r}")

    def _row(self, relevance):
        """(B, T, T) -> (B, *grid): the class token's row (the mean row without extra tokens) over
        the patch tokens."""
        row = relevance[:, 0] if self.grid.extra else tf.reduce_mean(relevance, axis=1)
        return self.grid.to_map(row[..., None])[..., 0]

    def _explain_graph(self, x, classes, score_fn, upsample):
        maps = self._maps(x, classes, score_fn)
        return upsample_maps(maps, tf.shape(x)[1:-1]) if upsample else maps

    def explain(self, inputs, target=None, upsample=True):
        """Maps (B, H, W) float32 (B, L for signals), or (B, h, w) on the token grid with
        upsample=False."""
        x, classes, score_fn = self._prepare(inputs, target)

        def call(xb, cb):
            return self._call("_explain_graph", xb, cb, score_fn, bool(upsample))

        return self._batched(call, x, classes)


class AttentionRollout(_Rollout):
    """Attention rollout (Abnar and Zuidema, 2020): per block, the attention probabilities fused
    over heads (`head_fusion`: mean, the paper's; max or min), with the residual connection
    added as the identity, 0.5 A + 0.5 I, rows renormalised; the blocks multiplied from the
    first to the last, R = A_L ... A_1; the map is the class token's row of R over the patch
    tokens (for a model without a class token, the mean row).

    Class-agnostic: the attention does not depend on the class, so `target` is ignored and
    every class gets the same map. One forward pass.

    Args:
        model: a Keras model with `keras.layers.MultiHeadAttention` self-attention layers (in
            nested models or custom layers too), whose tokens lie on a patch grid it defines.
        head_fusion: "mean", "max" or "min" over heads.
        discard_ratio: the fraction of each block's fused attention weights set to zero, the
            smallest first (jacobgil's vit-explain; weights to the class and other extra tokens
            are kept), before the identity is added.
        batch_size: most images per forward pass.
        output: accepted for the common interface (the attention does not depend on it).

    Example:
        >>> maps = ki.AttentionRollout(vit).explain(images)        # (B, H, W)
    """

    class_agnostic = True
    _probe = "forward"

    def __init__(self, model, head_fusion="mean", discard_ratio=0.0, batch_size=128, output=None, jit_compile=None):
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}; received {head_fusion!r}.")
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float, np.number)) or not (
                0.0 <= discard_ratio < 1.0):
            raise ValueError(f"discard_ratio must be a fraction in [0, 1); received {discard_ratio!r}.")
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.head_fusion, self.discard_ratio = head_fusion, float(discard_ratio)

    def _maps(self, x, classes, score_fn):
        with Watch(self._layers) as watch:
            self.scorer._run(x)
        fuse = {"mean": tf.reduce_mean, "max": tf.reduce_max, "min": tf.reduce_min}[self.head_fusion]
        tokens = int(watch.probabilities[0].shape[-1])
        identity = tf.eye(tokens)
        relevance = None
        for probabilities in watch.probabilities:
            a = fuse(tf.cast(probabilities, tf.float32), axis=1)  # (B, T, T)
            if self.discard_ratio > 0:
                a = self._discard(a, tokens)
            a = 0.5 * a + 0.5 * identity
            a = a / tf.reduce_sum(a, axis=-1, keepdims=True)
            relevance = a if relevance is None else tf.matmul(a, relevance)
        return self._row(relevance)

    def _discard(self, a, tokens):
        """The `discard_ratio` smallest weights of each block's fused attention set to zero, by
        position (ties are not all dropped), never those to the extra tokens."""
        extra = self.grid.extra
        count = min(int(self.discard_ratio * tokens * tokens), tokens * (tokens - extra))
        if count == 0:
            return a
        flat = tf.reshape(a, [-1, tokens * tokens])
        column = tf.reshape(tf.tile(tf.range(tokens)[None], [tokens, 1]), [1, -1])
        candidates = tf.where(column < extra, tf.float32.max, flat)
        smallest = tf.math.top_k(-candidates, k=count).indices  # (B, count)
        rows = tf.repeat(tf.range(tf.shape(flat)[0]), count)
        flat = tf.tensor_scatter_nd_update(flat, tf.stack([rows, tf.reshape(smallest, [-1])], axis=1),
                                           tf.zeros(tf.shape(rows), flat.dtype))
        return tf.reshape(flat, tf.shape(a))


class GradientAttentionRollout(_Rollout):
    """Gradient-weighted attention rollout (Chefer, Gur and Wolf, 2021, "Generic
    attention-model explainability", self-attention rule): R = I, and for each block, first to
    last, R = R + mean_heads(ReLU(dS/dA * A)) R, with A the block's attention probabilities and
    S the target's pre-softmax score; the map is the class token's row of R over the patch
    tokens (the mean row for a model without a class token). Class-specific; one forward and
    one backward pass.

    Args:
        model: as for AttentionRollout.
        batch_size: most images per pass.
        output: the output to explain (name or index), for a model with several.

    Example:
        >>> maps = ki.GradientAttentionRollout(vit).explain(images, target=3)
    """

    _probe = "gradient"

    def __init__(self, model, batch_size=128, output=None, jit_compile=None):
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)

    def _maps(self, x, classes, score_fn):
        with tf.GradientTape() as tape:
            with Watch(self._layers) as watch:
                output, _ = self.scorer._run(x)
            scores, _ = select_scores(self.scorer._as_logits(output), classes, score_fn)
        grads = tape.gradient(scores, watch.probabilities, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        tokens = int(watch.probabilities[0].shape[-1])
        relevance = tf.eye(tokens, batch_shape=tf.shape(x)[:1])
        for a, g in zip(watch.probabilities, grads):
            weighted = tf.reduce_mean(tf.nn.relu(tf.cast(g, tf.float32) * tf.cast(a, tf.float32)), axis=1)
            relevance = relevance + tf.matmul(weighted, relevance)
        return self._row(relevance)
