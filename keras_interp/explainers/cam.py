"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM.

Each computes a (B, h, w) map on a spatial feature layer and upsamples it to the input size
with bilinear interpolation on half-pixel centres (`tf.image.resize`), so a feature cell lands
on its receptive-field centre. `explain(..., upsample=False)` returns the feature-resolution
maps. The feature layer is read through a second Keras graph that shares the model's layers,
so the model is never modified and its weights are read live.
"""

import keras
import tensorflow as tf

from keras_interp.explainers.base import Explainer, broadcast_baseline, chunk_indices, merge_leading, plan_chunks
from keras_interp.graph import last_spatial_layer, layer_node, output_node, resolve_layer, spatial_layers
from keras_interp.layers.cam_head import CAMHead
from keras_interp.targets import select_scores

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM", "find_cam_head", "upsample_maps"]


def upsample_maps(maps, size):
    """(B, h, w) -> (B, H, W), bilinear with half-pixel centres (alignment-preserving)."""
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


class _FeatureMapExplainer(Explainer):
    """Shared machinery: a spatial layer, a compiled `_maps` graph, upsampling."""

    def __init__(self, model, layer=None, batch_size=128):
        super().__init__(model, batch_size=batch_size)
        self.layer = last_spatial_layer(model) if layer is None else layer
        host, found = resolve_layer(model, self.layer)[-1]
        shape = tuple(layer_node(host, found).output_tensors[0].shape)
        self._channels = shape[-1]
        if len(shape) != 4:
            raise ValueError(
                f"Layer {self.layer!r} has output shape {shape}, not a spatial (batch, height, width, "
                f"channels) map. Layers with spatial outputs: {spatial_layers(model)}."
            )
        self._features = self.scorer.with_features(self.layer)
        self._explain_compiled = self._compile(self._explain_graph)

    def _explain_graph(self, x, classes, score_fn, upsample, *extra):
        maps = self._maps(x, classes, score_fn, *extra)
        return upsample_maps(maps, tf.shape(x)[1:3]) if upsample else maps

    def _extra(self, x):
        return ()

    def explain(self, inputs, target=None, upsample=True):
        """Maps (B, H, W) float32, or (B, h, w) at the feature layer's size with upsample=False."""
        x, classes, score_fn = self._prepare(inputs, target)
        return self._explain_compiled(x, classes, score_fn, bool(upsample), *self._extra(x)).numpy()

    def _gradients(self, x, classes, score_fn):
        with tf.GradientTape() as tape:
            features, logits = self._features(x)
            scores, _ = select_scores(logits, classes, score_fn)
        return features, tape.gradient(scores, features)


class GradCAM(_FeatureMapExplainer):
    """Grad-CAM (Selvaraju et al., 2017): ReLU(sum_k mean_ij(d score / d A^k) A^k).

    Args:
        model: single-input Keras model.
        layer: None (the last layer with a spatial output, after its activation), a layer
            name, or a path into a nested model ("backbone/block3_conv").
        relu: apply the final ReLU (True in the paper); False keeps negative evidence.

    Example:
        >>> maps = ki.GradCAM(model).explain(images)            # (B, H, W)
    """

    def __init__(self, model, layer=None, relu=True):
        super().__init__(model, layer)
        self.relu = relu

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


def _skip(model, tensor, types):
    """Walk back from `tensor` over layers of `types`; returns (layer, node) of the first other."""
    while True:
        layer, index, _ = tensor._keras_history
        node = layer._inbound_nodes[index]
        if not isinstance(layer, types) or len(node.input_tensors) != 1:
            return layer, node
        tensor = node.input_tensors[0]


def find_cam_head(model):
    """(feature layer name, kernel variable, bias variable or None) of a GAP -> Dense head.

    Accepts a CAMHead, or GlobalAveragePooling2D -> (Dropout) -> Dense, each optionally followed
    by a Softmax / Activation layer, at the top level of the model.
    """
    operation, node = output_node(model)
    hint = (
        f"Model {getattr(model, 'name', model)!r} does not end in global average pooling followed by a "
        "dense layer (or a keras_interp.layers.CAMHead), so plain CAM does not apply. Use "
        "ki.GradCAM(model), which works for any convolutional network."
    )
    if operation is None:
        raise ValueError(hint)
    head, node = _skip(model, model.outputs[0], (keras.layers.Softmax, keras.layers.Activation))
    if isinstance(head, CAMHead):
        source = node.input_tensors[0]
        kernel, bias = head.kernel, head.bias
    elif isinstance(head, keras.layers.Dense):
        gap, gap_node = _skip(model, node.input_tensors[0], (keras.layers.Dropout,))
        if not isinstance(gap, keras.layers.GlobalAveragePooling2D) or gap.keepdims or gap.data_format != "channels_last":
            raise ValueError(hint)
        source = gap_node.input_tensors[0]
        kernel, bias = head.kernel, head.bias if head.use_bias else None
    else:
        raise ValueError(hint)
    feature_layer = source._keras_history[0]
    if isinstance(feature_layer, keras.layers.InputLayer):
        raise ValueError(hint)
    return feature_layer.name, kernel, bias


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
        layer, self._kernel, self._bias = find_cam_head(model)
        super().__init__(model, layer)

    def _prepare(self, inputs, target):
        if callable(target):
            raise TypeError("CAM explains classes: pass None, an int or a sequence of ints, not a callable.")
        return super()._prepare(inputs, target)

    def _maps(self, x, classes, score_fn):
        features, logits = self._features(x)
        _, classes = select_scores(logits, classes, None)
        weights = tf.gather(tf.transpose(tf.cast(self._kernel, tf.float32)), classes)
        return tf.einsum("bhwk,bk->bhw", features, weights)


class ScoreCAM(_FeatureMapExplainer):
    """Score-CAM (Wang et al., 2020): channels weighted by the target's score on masked inputs.

    Each channel, upsampled and min-max normalised to [0, 1] (a constant channel gives an
    all-zero mask, never NaN), masks the input; its weight is the target's score on that
    masked input, computed once: the model's own probability for a softmax head (no second
    softmax), the sigmoid of the logit for a sigmoid head, the logit otherwise, or the
    callable target's value. Masked inputs are streamed in chunks of at most `batch_size`.

    Args:
        model: single-input Keras model.
        layer: as for GradCAM.
        max_channels: None for all channels, or keep the channels with the highest spatial
            activation variance (chosen per image).
        baseline: what the masked-out part of the input becomes, in the model's input space:
            0.0 (the paper: black), another scalar, an (H, W, C) image or one per example
            (e.g. blurred copies of the inputs); masked = baseline + mask * (x - baseline).
        batch_size: most masked images per forward pass.
    """

    def __init__(self, model, layer=None, max_channels=None, baseline=0.0, batch_size=256):
        super().__init__(model, layer, batch_size=batch_size)
        if max_channels is not None and (not isinstance(max_channels, int) or max_channels < 1):
            raise ValueError(f"max_channels must be None or a positive int; received {max_channels!r}.")
        self.max_channels = max_channels
        self.baseline = baseline

    def _extra(self, x):
        channels = self._channels
        count = channels if self.max_channels is None else min(self.max_channels, channels)
        return (broadcast_baseline(self.baseline, x), count) + plan_chunks(count, x.shape[0], self.batch_size)

    def _target_scores(self, logits, classes, score_fn):
        if score_fn is not None:
            return select_scores(logits, classes, score_fn)[0]
        probabilities = self.scorer.probabilities(logits)
        return tf.gather(probabilities, classes, axis=1, batch_dims=1)

    def _maps(self, x, classes, score_fn, baseline, count, per, num_chunks):
        features, logits = self._features(x)
        _, classes = select_scores(logits, classes, score_fn)
        if count < features.shape[-1]:
            variance = tf.math.reduce_variance(features, axis=(1, 2))
            keep = tf.math.top_k(variance, k=count).indices
            features = tf.gather(features, keep, axis=3, batch_dims=1)
        shape = tf.shape(x)
        tiled = tf.tile(classes, [per])
        maps = tf.zeros(tf.shape(features)[:3], tf.float32)
        for chunk in tf.range(num_chunks):
            ids, valid = chunk_indices(chunk, per, count)
            a = tf.gather(features, ids, axis=3)  # (B, h, w, per)
            up = tf.image.resize(a, shape[1:3], method="bilinear")
            lo = tf.reduce_min(up, axis=(1, 2), keepdims=True)
            hi = tf.reduce_max(up, axis=(1, 2), keepdims=True)
            masks = tf.math.divide_no_nan(up - lo, hi - lo)
            masked = baseline[None] + tf.transpose(masks, (3, 0, 1, 2))[..., None] * (x - baseline)[None]
            scores = self._target_scores(self.scorer(merge_leading(masked)), tiled, score_fn)
            weights = tf.transpose(tf.reshape(scores, (per, -1))) * valid[None]
            maps += tf.einsum("bhwk,bk->bhw", a, weights)
        return tf.nn.relu(maps)

