"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM.

Each computes a (B, h, w) map on a spatial feature layer and upsamples it to the input size
with bilinear interpolation on half-pixel centres (`tf.image.resize`), so a feature cell lands
on its receptive-field centre. `explain(..., upsample=False)` returns the feature-resolution
maps. The feature tensor is read by running the model's own graph (keras_interp.graph.run),
so the model is never modified and its weights are read live.
"""

import keras
import tensorflow as tf

from keras_interp.explainers.base import Explainer, broadcast_baseline, chunk_indices, merge_leading, plan_chunks
from keras_interp.graph import Cursor, last_spatial_site, no_graph_error, spatial_layers
from keras_interp.layers.cam_head import CAMHead
from keras_interp.targets import is_shape_only, select_scores, squashing

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM", "find_cam_head", "upsample_maps"]


def upsample_maps(maps, size):
    """(B, h, w) -> (B, H, W), bilinear with half-pixel centres (alignment-preserving)."""
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


class _FeatureMapExplainer(Explainer):
    """Shared machinery: a spatial layer, a compiled `_maps` graph, upsampling.

    `layer` may name any layer or operation (`"add_17"`), inside nested models too
    ("backbone/conv5_block3_out"); None takes the last tensor with spatial extent on the path to
    the output (see keras_interp.graph.last_spatial_site). `self.layer` is the chosen path.
    """

    def __init__(self, model, layer=None, batch_size=128):
        super().__init__(model, batch_size=batch_size)
        self.site = last_spatial_site(model) if layer is None else self.scorer.site(layer)
        self.layer = self.site.path
        shape = self.site.shape
        if len(shape) != 4:
            raise ValueError(
                f"Layer {self.layer!r} has output shape {shape}, not a spatial (batch, height, width, "
                f"channels) map. Layers with spatial outputs: {spatial_layers(model)[-8:]} (last 8)."
            )
        self._channels = shape[-1]
        self._features = self.scorer.with_features(self.site)

    def _trace_key(self):
        return tuple(map(id, self.site.nodes)) + (self.site.index,)

    def _explain_graph(self, x, classes, score_fn, upsample, *extra):
        maps = self._maps(x, classes, score_fn, *extra)
        return upsample_maps(maps, tf.shape(x)[1:3]) if upsample else maps

    def _per_example(self, x):
        return ()

    def _extra(self, x, *rows):
        return rows

    def explain(self, inputs, target=None, upsample=True):
        """Maps (B, H, W) float32, or (B, h, w) at the feature layer's size with upsample=False."""
        x, classes, score_fn = self._prepare(inputs, target)

        def call(xb, cb, *rows):
            return self._call("_explain_graph", xb, cb, score_fn, bool(upsample), *self._extra(xb, *rows))

        return self._batched(call, x, classes, *self._per_example(x))

    def _gradients(self, x, classes, score_fn):
        """(features, d score / d features), float32, for the explained classes.

        The gradient is taken with respect to the graph's own feature tensor (float16 under
        mixed precision) and cast afterwards: a cast copy would not be on the path to the logits.
        """
        with tf.GradientTape() as tape:
            features, logits = self._features(x)
            scores, _ = select_scores(logits, classes, score_fn)
        grads = tape.gradient(scores, features)
        return tf.cast(features, tf.float32), tf.cast(grads, tf.float32)


class GradCAM(_FeatureMapExplainer):
    """Grad-CAM (Selvaraju et al., 2017): ReLU(sum_k mean_ij(d score / d A^k) A^k).

    Args:
        model: single-input Keras model.
        layer: None (the last layer with a spatial output, after its activation), a layer
            name, or a path into a nested model ("backbone/block3_conv").
        relu: apply the final ReLU (True in the paper); False keeps negative evidence.
        batch_size: most images per forward pass; larger batches are split.

    Example:
        >>> maps = ki.GradCAM(model).explain(images)            # (B, H, W)
    """

    def __init__(self, model, layer=None, relu=True, batch_size=128):
        super().__init__(model, layer, batch_size=batch_size)
        self.relu = bool(relu)

    def _trace_key(self):
        return super()._trace_key() + (self.relu,)

    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        maps = tf.einsum("bhwk,bk->bhw", features, tf.reduce_mean(grads, axis=(1, 2)))
        return tf.nn.relu(maps) if self.relu else maps


class GradCAMPlusPlus(_FeatureMapExplainer):
    """Grad-CAM++ (Chattopadhyay et al., 2018) with the exponential of the score factored out.

    With S = exp(logit) the higher derivatives are powers of the logit's gradient g and the
    exp cancels: alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), weights = sum_ij alpha ReLU(g); so
    the maps stay finite for logits of any size.

    Args:
        model: single-input Keras model.
        layer: as for GradCAM.
    """

    def _maps(self, x, classes, score_fn):
        features, g = self._gradients(x, classes, score_fn)
        g2 = tf.square(g)
        denominator = 2.0 * g2 + tf.reduce_sum(features, axis=(1, 2), keepdims=True) * g2 * g
        alpha = tf.math.divide_no_nan(g2, denominator)
        weights = tf.reduce_sum(alpha * tf.nn.relu(g), axis=(1, 2))
        return tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights))


class LayerCAM(_FeatureMapExplainer):
    """LayerCAM (Jiang et al., 2021): ReLU(sum_k ReLU(d score / d A^k_ij) A^k_ij), per position.

    Args:
        model: single-input Keras model.
        layer: as for GradCAM.
    """

    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * features, axis=-1))


def _walk_back(cursor, skip):
    """The first site at or before `cursor` whose operation is not skipped by `skip(op)`."""
    while True:
        site = cursor.producer()
        if site is None or not (skip(site.operation) and len(site.nodes[-1].input_tensors) == 1):
            return site
        cursor = Cursor.input_of(site)


def find_cam_head(model):
    """(feature Site, kernel variable, bias variable or None) of a GAP -> Dense head.

    Accepts a CAMHead, or GlobalAveragePooling2D -> (Dropout) -> Dense, each optionally followed
    by a softmax or sigmoid (fused, a layer or an operation) and shape-only layers; the head may
    end a nested classifier.
    """
    hint = (
        f"Model {getattr(model, 'name', model)!r} does not end in global average pooling followed by a "
        "dense layer (or a keras_interp.layers.CAMHead), so plain CAM does not apply. Use "
        "ki.GradCAM(model), which works for any convolutional network."
    )
    cursor = Cursor.at_output(model)
    if cursor is None:
        raise no_graph_error(model, "its GAP -> Dense head")
    head = _walk_back(cursor, lambda op: is_shape_only(op) or squashing(op) in (("softmax", False), ("sigmoid", False)))
    if head is None:
        raise ValueError(hint)
    if isinstance(head.operation, CAMHead):
        feature = Cursor.input_of(head).producer()
        kernel, bias = head.operation.kernel, head.operation.bias
    elif isinstance(head.operation, keras.layers.Dense):
        gap = _walk_back(Cursor.input_of(head), lambda op: isinstance(op, (keras.layers.Dropout, keras.layers.Identity)))
        op = None if gap is None else gap.operation
        if not isinstance(op, keras.layers.GlobalAveragePooling2D) or op.keepdims or op.data_format != "channels_last":
            raise ValueError(hint)
        feature = Cursor.input_of(gap).producer()
        kernel, bias = head.operation.kernel, head.operation.bias if head.operation.use_bias else None
    else:
        raise ValueError(hint)
    if feature is None:
        raise ValueError(hint)
    return feature, kernel, bias


class CAM(_FeatureMapExplainer):
    """Class activation maps (Zhou et al., 2016) for a GAP -> Dense head or a CAMHead.

    map_c = sum_k W[k, c] A^k, without the bias, so mean_ij(map_c) + b_c equals logit_c.
    Maps are signed (negative where a region argues against the class). The head is found
    automatically; a model without one gets an error that points to GradCAM.

    Args:
        model: single-input Keras model ending in GAP -> (Dropout) -> Dense or a CAMHead.

    Example:
        >>> maps = ki.CAM(model).explain(images)                # (B, H, W)
    """

    def __init__(self, model):
        site, self._kernel, self._bias = find_cam_head(model)
        super().__init__(model, site)

    def _prepare(self, inputs, target):
        if callable(target):
            raise TypeError("CAM explains classes: pass None, an int or a sequence of ints, not a callable.")
        return super()._prepare(inputs, target)

    def _maps(self, x, classes, score_fn):
        features, logits = self._features(x)
        features = tf.cast(features, tf.float32)
        _, classes = select_scores(logits, classes, None)
        kernel = tf.transpose(tf.cast(self._kernel, tf.float32))  # (classes, channels)
        if self.scorer.binary:
            # One sigmoid unit scored as logits [-z, z]: class c weighs the unit's column by +-1.
            weights = kernel[0][None] * tf.cast(2 * classes - 1, tf.float32)[:, None]
        else:
            weights = tf.gather(kernel, classes)
        return tf.einsum("bhwk,bk->bhw", features, weights)


WEIGHTINGS = ("increase", "softmax", "probability")


class ScoreCAM(_FeatureMapExplainer):
    """Score-CAM (Wang et al., 2020): channels weighted by the target's confidence on masked inputs.

    Each channel A^k of the layer, upsampled to the input and min-max normalised to [0, 1]
    (H^k), masks the input: X o H^k = X_b + H^k (X - X_b), with X_b the `baseline` image. The
    map is ReLU(sum_k w_k A^k). Channels that are constant after upsampling carry no spatial
    information and get weight 0. The paper has three readings of w_k, chosen by `weighting`:

    - "softmax" (default; the paper's Algorithm 1, as pytorch-grad-cam computes it): the
      target's logit on each masked input, then a softmax over the channels. When those
      logits differ little (an untrained model), the weights are nearly uniform and the map
      is close to the channels' plain sum.
    - "increase" (the paper's definition, eq. 3-5): w_k = f(X o H^k) - f(X_b), the increase
      of confidence over the baseline image, f being the target's probability: the model's
      own softmax (or sigmoid) probability for a model that ends in one, the softmax of the
      logits for a logit model, or the callable target's value. No second softmax is ever
      applied to a softmax head.
    - "probability" (the authors' released code): w_k = f(X o H^k), without the baseline term.

    The default was chosen by `benchmarks/quality.py`: masked images are far from the training
    data, and a model may give them all to one class with probability 1 (the reference CNN on
    the built-in shapes calls them "square"). Then every probability-based weight is about 0
    and the map is empty or noise (pointing game 0.00 with "increase", 0.22 with
    "probability"), while the logits still rank the channels (0.48).

    In every reading a shift of all logits by a constant leaves the map unchanged. Masked inputs
    are streamed in chunks of at most `batch_size` images.

    Args:
        model: single-input Keras model.
        layer: as for GradCAM.
        max_channels: None for all channels, or keep the channels with the highest spatial
            activation variance (chosen per image).
        baseline: X_b, what the masked-out part of the input becomes, in the model's input
            space: 0.0 (the paper: black), another scalar, an (H, W, C) image or one per example
            (e.g. blurred copies of the inputs).
        weighting: "increase", "softmax" or "probability" (see above).
        batch_size: most masked images per forward pass.

    Example:
        >>> maps = ki.ScoreCAM(model, max_channels=64).explain(images)
    """

    def __init__(self, model, layer=None, max_channels=None, baseline=0.0, weighting="softmax", batch_size=256):
        super().__init__(model, layer, batch_size=batch_size)
        if max_channels is not None and (not isinstance(max_channels, int) or max_channels < 1):
            raise ValueError(f"max_channels must be None or a positive int; received {max_channels!r}.")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}; received {weighting!r}.")
        self.max_channels = max_channels
        self.baseline = baseline
        self.weighting = weighting

    def _trace_key(self):
        return super()._trace_key() + (self.weighting,)

    def _per_example(self, x):
        return (broadcast_baseline(self.baseline, x),)

    def _extra(self, x, baseline):
        channels = self._channels
        count = channels if self.max_channels is None else min(self.max_channels, channels)
        return (baseline, count) + plan_chunks(count, x.shape[0], self.batch_size)

    def _confidence(self, logits, classes, score_fn):
        if self.weighting == "softmax":  # Algorithm 1: logits, softmax over channels later
            return select_scores(logits, classes, score_fn)[0]
        return self.scorer.confidence(logits, classes, score_fn)

    def _maps(self, x, classes, score_fn, baseline, count, per, num_chunks):
        features, logits = self._features(x)
        features = tf.cast(features, tf.float32)
        _, classes = select_scores(logits, classes, score_fn)
        if count < features.shape[-1]:
            variance = tf.math.reduce_variance(features, axis=(1, 2))
            keep = tf.math.top_k(variance, k=count).indices
            features = tf.gather(features, keep, axis=3, batch_dims=1)
        shape = tf.shape(x)
        batch = shape[0]
        tiled = tf.tile(classes, [per])
        scores = tf.TensorArray(tf.float32, size=num_chunks)
        varying = tf.TensorArray(tf.float32, size=num_chunks)
        for chunk in tf.range(num_chunks):
            ids, valid = chunk_indices(chunk, per, count)
            up = tf.image.resize(tf.gather(features, ids, axis=3), shape[1:3], method="bilinear")
            lo = tf.reduce_min(up, axis=(1, 2), keepdims=True)
            hi = tf.reduce_max(up, axis=(1, 2), keepdims=True)
            masks = tf.math.divide_no_nan(up - lo, hi - lo)
            masked = baseline[None] + tf.transpose(masks, (3, 0, 1, 2))[..., None] * (x - baseline)[None]
            confidence = self._confidence(self.scorer(merge_leading(masked)), tiled, score_fn)
            scores = scores.write(chunk, tf.transpose(tf.reshape(confidence, (per, batch))))
            varying = varying.write(chunk, tf.cast(hi[:, 0, 0, :] > lo[:, 0, 0, :], tf.float32) * valid[None])
        # (chunks, B, per) -> (B, channels): chunk c holds channels c * per ... c * per + per - 1.
        scores = tf.reshape(tf.transpose(scores.stack(), (1, 0, 2)), (batch, -1))[:, :count]
        varying = tf.reshape(tf.transpose(varying.stack(), (1, 0, 2)), (batch, -1))[:, :count]
        if self.weighting == "increase":
            at_baseline = self._confidence(self.scorer(baseline), classes, score_fn)
            weights = (scores - at_baseline[:, None]) * varying
        elif self.weighting == "probability":
            weights = scores * varying
        else:
            weights = tf.nn.softmax(tf.where(varying > 0, scores, tf.float32.min), axis=-1) * varying
        return tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights))
