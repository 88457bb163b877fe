"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM.

Each computes a (B, h, w) map on a spatial feature layer and upsamples it to the input size
with bilinear interpolation on half-pixel centres (`tf.image.resize`), so a feature cell lands
on its receptive-field centre. 1-D models give (B, l) maps upsampled linearly, 3-D models
(B, d, h, w) maps upsampled trilinearly, with the same alignment on every axis.
`explain(..., upsample=False)` returns the feature-resolution maps. The feature tensor is read
by running the model's own graph (keras_interp.graph.run), so the model is never modified and
its weights are read live.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from keras_interp.explainers.base import Explainer, choose_input
from keras_interp.explainers.chunks import (
    batch_of, broadcast_baseline, fused, merge_leading, over_chunks, plan_chunks, spatial_axes,
)
from keras_interp.explainers.perturbation import PerturbationExplainer
from keras_interp.graph import (
    FORMS, Cursor, depends_on_input, last_spatial_site, no_graph_error, out_of_frame, spatial_layers,
)
from keras_interp.layers.cam_head import CAMHead
from keras_interp.tokens import TokenLayer, attention_paths, find_attention
from keras_interp.targets import Scorer, is_shape_only, select_scores, squashing

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "LayerCAM", "HiResCAM", "XGradCAM", "EigenCAM", "FEM", "AblationCAM", "ScoreCAM", "find_cam_head", "upsample_maps", "resize_nd"]

_GAP = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D)


def resize_nd(t, size):
    """(B, *spatial, C) -> (B, *size, C) for 1, 2 or 3 spatial axes: linear interpolation on
    half-pixel centres along each axis (tf.image.resize's bilinear rule, applied axis by axis,
    which is what trilinear interpolation is)."""
    rank = len(t.shape)
    if rank == 4:
        return tf.image.resize(t, size, method="bilinear")
    if rank == 3:  # (B, l, C) as a one-pixel-wide image
        return tf.image.resize(t[:, :, None, :], tf.stack([size[0], 1]), method="bilinear")[:, :, 0, :]
    if rank == 5:
        shape = tf.shape(t)
        b, d, c = shape[0], shape[1], shape[4]
        # (h, w) per depth slice, then depth with the (H * W) cells as one unchanged axis.
        planes = tf.image.resize(tf.reshape(t, tf.stack([b * d, shape[2], shape[3], c])), size[1:], method="bilinear")
        cells = size[1] * size[2]
        deep = tf.image.resize(tf.reshape(planes, tf.stack([b, d, cells, c])), tf.stack([size[0], cells]), method="bilinear")
        return tf.reshape(deep, tf.stack([b, size[0], size[1], size[2], c]))
    raise ValueError(f"Expected a (batch, *spatial, channels) tensor with 1 to 3 spatial axes; received shape {t.shape}.")


def upsample_maps(maps, size):
    """(B, h, w) -> (B, H, W), bilinear with half-pixel centres (alignment-preserving); (B, l)
    and (B, d, h, w) maps likewise, linearly along each axis."""
    return resize_nd(maps[..., None], size)[..., 0]


@fused
def _masked_copies(up, x, baseline):
    """Score-CAM's perturbed copies: (B, *spatial, k) upsampled activations, (B, *spatial, C)
    examples and baselines -> ((k * B, *spatial, C) copies, k-major, (B, k) whether each map
    varies). Each map is min-max normalised over its spatial axes to a mask M in [0, 1] (a
    constant map gives 0) and the copy is baseline + M (x - baseline)."""
    axes = spatial_axes(up)
    last = len(up.shape) - 1
    lo = tf.reduce_min(up, axis=axes, keepdims=True)
    hi = tf.reduce_max(up, axis=axes, keepdims=True)
    masks = tf.math.divide_no_nan(up - lo, hi - lo)
    # (B, ..., k) -> (k, B, ..., 1): one masked copy of every example per channel.
    masks = tf.transpose(masks, [last] + list(range(last)))[..., None]
    varies = tf.reshape(hi > lo, [tf.shape(up)[0], tf.shape(up)[last]])
    return merge_leading(baseline[None] + masks * (x - baseline)[None]), varies


def _weighted_sum(features, weights):
    """sum_k weights[b, k] A^k: (B, ..., K), (B, K) -> (B, ...)."""
    return tf.einsum("b...k,bk->b...", features, weights)


class _FeatureMapExplainer(Explainer):
    """Shared machinery: a spatial layer, a compiled `_maps` graph, upsampling.

    `layer` may name any layer or operation (`"add_17"`), inside nested models too
    ("backbone/conv5_block3_out"); None takes the last tensor with spatial extent on the path to
    the output (see keras_interp.graph.last_spatial_site). `self.layer` is the chosen path.
    """

    display_clip = (0.0, 99.9)  # coarse regions: a pixel-attribution cut would hide most of them
    # Whether the method's paper assumes non-negative features (a layer after a ReLU): a layer
    # with negative activations then gets one warning, with what the method does there.
    assumes_nonnegative = False
    signed_note = ""
    # Whether the map ends in a ReLU, so a map can be zero everywhere: said once, with why.
    final_relu = True

    def __init__(self, model, layer=None, batch_size=128, output=None, input=None, jit_compile=None):
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        # The input the maps are drawn on (and Score-CAM masks): with several inputs, `input=`
        # or the first signal, image or volume input.
        self.input_index = choose_input(self.scorer, input)
        shapes = self.scorer.input_shapes
        rank = len(shapes[self.input_index]) if shapes else 4
        if rank not in (3, 4, 5):
            raise ValueError(
                f"Class activation maps are drawn on a signal, image or volume input; input "
                f"{self.scorer.input_names[self.input_index]!r} has shape {shapes[self.input_index]}. "
                "Pass input= to choose another."
            )
        several = shapes is not None and len(shapes) > 1
        self.tokens = None  # a TokenGrid when the layer is a token tensor (tokens.py)
        attention = attention_paths(model) if shapes is not None and not several else {}
        named = find_attention(attention, layer) if attention and isinstance(layer, str) else None
        if named is not None:
            self._token_source(model, rank, named, chosen=True)
            return
        if layer is None and attention:
            self._token_source(model, rank, None, chosen=False)
            return
        if layer is None:
            self.site = last_spatial_site(model, output=self.scorer.output_index or 0, rank=rank,
                                          input=self.input_index if several else None)
        else:
            try:
                self.site = self.scorer.site(layer)
            except ValueError as error:
                if not attention:
                    raise
                names = list(attention)[-4:]
                raise ValueError(f"{error} Attention layers (naming one means its query input): {names} (last 4).") \
                    from None
            if several and not depends_on_input(model, self.site, self.input_index):
                raise ValueError(
                    f"Layer {self.site.path!r} is not computed from input "
                    f"{self.scorer.input_names[self.input_index]!r}, so its maps cannot be drawn on it; "
                    "choose a layer of that input's branch, or pass input= for the input it belongs to."
                )
        self.layer = self.site.path
        shape = self.site.shape
        if len(shape) == 3 and rank == 4 and not several:
            self._token_source(model, rank, self.site, chosen=True)
            return
        if len(shape) != rank:
            raise ValueError(
                f"Layer {self.layer!r} has output shape {shape}, not a spatial {FORMS[rank]} map like "
                f"the input it is drawn on. Layers with spatial outputs: "
                f"{spatial_layers(model, rank, in_frame=True)[-8:]} (last 8)."
            )
        moved = out_of_frame(model, self.site, rank)
        if moved:
            raise ValueError(
                f"Layer {self.layer!r} is not in the input's spatial frame: {moved}, so its maps would be "
                f"transposed or scrambled on the input. Choose a layer before that operation; layers in the "
                f"frame: {spatial_layers(model, rank, in_frame=True)[-8:]} (last 8)."
            )
        self._channels = shape[-1]
        self._source = self.scorer.with_features(self.site)

    def _token_source(self, model, rank, where, chosen):
        """Features from a (B, T, D) token tensor on its patch grid: `where` is a graph Site, an
        attention layer (its query input) or None (the default, see TokenLayer.default)."""
        if where is None:
            found = TokenLayer.default(self.scorer, rank)
        elif isinstance(where, keras.layers.MultiHeadAttention):
            found = TokenLayer.of_attention(self.scorer, where, rank)
        else:
            found = TokenLayer(self.scorer, where, rank)
        if chosen:
            found.check_reach()
        self.site, self.tokens, self.layer = found, found.grid, found.path
        self._channels = found.shape[-1]
        self._source = found.features

    def _features(self, x):
        """(features (B, *grid, K) in the layer's dtype, logits float32)."""
        raw, logits = self._source(x)
        return (raw if self.tokens is None else self.tokens.to_map(raw)), logits

    def _explain_graph(self, x, classes, score_fn, upsample, *extra):
        maps = self._maps(x, classes, score_fn, *extra)
        drawn_on = self._split(x, self.input_index)[0]
        return upsample_maps(maps, tf.shape(drawn_on)[1:-1]) if upsample else maps

    def _per_example(self, x):
        return ()

    def _extra(self, x, *rows):
        return rows

    def explain(self, inputs, target=None, upsample=True):
        """Maps (B, H, W) float32, or (B, h, w) at the feature layer's size with upsample=False;
        (B, L) and (B, D, H, W) for signals and volumes. With several inputs, one map for the
        input chosen by `input=`."""
        x, classes, score_fn = self._prepare(inputs, target)
        if self.assumes_nonnegative:
            self._check_signed(x)

        def call(xb, cb, *rows):
            return self._call("_explain_graph", xb, cb, score_fn, bool(upsample), *self._extra(xb, *rows))

        maps = self._batched(call, x, classes, *self._per_example(x))
        if self.final_relu:
            self._check_empty(maps)
        return maps

    def _warn_once(self, key, message):
        said = self.__dict__.setdefault("_said", set())
        if key not in said:
            said.add(key)
            # stacklevel 4: the user's call of explain (through explain and _check_*).
            warnings.warn(f"{type(self).__name__}: {message}", stacklevel=4)

    # A layer counts as signed when it goes below SIGNED_BELOW, deeper than the dips of swish,
    # GELU, mish and hard-swish (at least -0.375), and its negative activations are at least
    # SIGNED_SHARE of their total magnitude: BatchNorm, PReLU or class-map layers.
    SIGNED_BELOW = -0.4
    SIGNED_SHARE = 0.05

    def _check_signed(self, x):
        """Once per explainer: warn when the layer's activations on the first examples are
        substantially negative (see SIGNED_SHARE)."""
        if self.__dict__.get("_signed_checked"):
            return
        self._signed_checked = True
        # Once per model, layer and method: an explainer built again in a loop pays no pass.
        checked = self._shared().setdefault("signed_checked", set())
        key = (type(self), tuple(map(id, self.site.nodes)), self.site.index)
        if key in checked:
            return
        checked.add(key)
        n = min(8, self.batch_size)  # one pass of at most batch_size examples, like the first output check
        first = tuple(a[:n] for a in x) if isinstance(x, tuple) else x[:n]
        features = np.asarray(tf.cast(self._features(first)[0], tf.float32))
        negative, total = float(np.maximum(-features, 0).sum()), float(np.abs(features).sum())
        if total > 0 and features.min() < self.SIGNED_BELOW and negative >= self.SIGNED_SHARE * total:
            self._warn_once("signed", (
                f"layer {self.layer!r} has negative activations ({100 * negative / total:.0f}% of their magnitude, "
                f"as low as {features.min():.3g}: no ReLU after it), and the method was defined for non-negative "
                f"features (after a ReLU). {self.signed_note} Grad-CAM (ki.GradCAM) and CAM are defined for "
                "signed layers."
            ))

    def _check_empty(self, maps):
        """Say once why a map is zero everywhere, instead of returning it silently."""
        flat = np.reshape(maps, (len(maps), -1))
        empty = np.flatnonzero(np.isfinite(flat).all(axis=1) & ~(flat > 0).any(axis=1))
        if len(empty):
            self._warn_once("empty", (
                f"the maps of {len(empty)} of {len(maps)} examples (first: {empty[:5].tolist()}) are zero "
                f"everywhere: the weighted sum of layer {self.layer!r}'s channels is negative or zero at every "
                "position, so the final ReLU leaves nothing (the layer's evidence argues against the class "
                "everywhere, or its weights vanish). Look at the signed map (ki.GradCAM(model, relu=False), "
                "ki.CAM) or choose another layer."
            ))

    def _gradients(self, x, classes, score_fn):
        """(features, d score / d features), float32, for the explained classes.

        The gradient is taken with respect to the graph's own feature tensor (float16 under
        mixed precision) and cast afterwards: a cast copy would not be on the path to the logits.
        """
        with tf.GradientTape() as tape:
            features, logits = self._source(x)
            scores, _ = select_scores(logits, classes, score_fn)
        grads = tape.gradient(scores, features)
        if self.tokens is not None:
            features, grads = self.tokens.to_map(features), self.tokens.to_map(grads)
        return tf.cast(features, tf.float32), tf.cast(grads, tf.float32)


class GradCAM(_FeatureMapExplainer):
    """Grad-CAM (Selvaraju et al., 2017): ReLU(sum_k mean_ij(d score / d A^k) A^k).

    Args:
        model: Keras model (signals, images or volumes; see `input` for several inputs).
        layer: None (the last layer with a spatial output, after its activation), a layer
            name, or a path into a nested model ("backbone/block3_conv").
        relu: apply the final ReLU (True in the paper); False keeps negative evidence.
        batch_size: most images per forward pass; larger batches are split.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).
        input: the input the maps are drawn on (name or index), for a model with several; None
            takes the first signal, image or volume input.

    Example:
        >>> maps = ki.GradCAM(model).explain(images)            # (B, H, W)
    """

    def __init__(self, model, layer=None, relu=True, batch_size=128, output=None, input=None, jit_compile=None):
        super().__init__(model, layer, batch_size=batch_size, output=output, input=input, jit_compile=jit_compile)
        self.relu = bool(relu)

    @property
    def signed(self):
        return not self.relu

    @property
    def final_relu(self):
        return self.relu


    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        maps = _weighted_sum(features, tf.reduce_mean(grads, axis=spatial_axes(grads)))
        return tf.nn.relu(maps) if self.relu else maps


class GradCAMPlusPlus(_FeatureMapExplainer):
    """Grad-CAM++ (Chattopadhyay et al., 2018) with the exponential of the score factored out.

    With S = exp(logit) the higher derivatives are powers of the logit's gradient g and the
    exp cancels: alpha = g^2 / (2 g^2 + sum_ab A_ab g^3), weights = sum_ij alpha ReLU(g); so
    the maps stay finite for logits of any size.

    The paper's features are non-negative (after a ReLU), so sum_ab A_ab >= 0 and alpha > 0
    wherever g > 0. On a signed layer that sum can be negative and alpha changes sign: on a
    class-map head (logit = mean of the class's map) alpha = 1 / (2 + logit), which for logits
    below -2 turns the map into counter-evidence (where the class's map is negative). Here the
    sum enters the denominator in magnitude, |sum_ab A_ab|: the same as the paper on
    non-negative features, and alpha stays positive on signed ones (on a class-map head the map
    is then ReLU of the class's channel, as Grad-CAM's). A signed layer gets one warning.

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
    """

    assumes_nonnegative = True
    signed_note = ("Grad-CAM++ uses |sum A| in alpha's denominator there, so alpha keeps its sign (the formula as "
                   "written would show counter-evidence for low logits).")

    def _maps(self, x, classes, score_fn):
        features, g = self._gradients(x, classes, score_fn)
        g2 = tf.square(g)
        axes = spatial_axes(g)
        total = tf.abs(tf.reduce_sum(features, axis=axes, keepdims=True))
        denominator = 2.0 * g2 + total * g2 * g
        alpha = tf.math.divide_no_nan(g2, denominator)
        weights = tf.reduce_sum(alpha * tf.nn.relu(g), axis=axes)
        return tf.nn.relu(_weighted_sum(features, weights))


class LayerCAM(_FeatureMapExplainer):
    """LayerCAM (Jiang et al., 2021): ReLU(sum_k ReLU(d score / d A^k_ij) A^k_ij), per position.

    Defined for non-negative features (after a ReLU); on a signed layer the negative
    activations with a positive gradient count against a position (one warning says so).

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
    """

    assumes_nonnegative = True
    signed_note = "LayerCAM keeps its formula there: negative activations count against a position."

    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * features, axis=-1))


class HiResCAM(GradCAM):
    """HiResCAM (Draelos and Carin, 2020): ReLU(sum_k (d score / d A^k) * A^k), the gradient times
    the activation at each position, summed over channels (Grad-CAM averages the gradient first).

    On a GAP -> Dense head the gradient is W[k, c] / (h w) everywhere, so HiResCAM before its ReLU
    is CAM / (h w): the map is faithful to the score position by position.

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
        relu: apply the final ReLU (True, as Grad-CAM); False keeps negative evidence.
    """

    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        maps = tf.reduce_sum(grads * features, axis=-1)
        return tf.nn.relu(maps) if self.relu else maps


class XGradCAM(_FeatureMapExplainer):
    """XGradCAM (Fu et al., 2020): channel weights w_k = sum_ij (A_ij^k / sum_ab A_ab^k) g_ij^k,
    the gradient averaged with the activation's own weights, then ReLU(sum_k w_k A^k).

    Defined for non-negative features (after a ReLU); a channel whose activations sum to 0 gets
    weight 0. On a signed layer a channel whose sum is near 0 gets a huge weight and takes over
    the map (the references divide by the same sum plus 1e-6 or 1e-7, which does not help); a
    warning says the layer is signed.

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
    """

    assumes_nonnegative = True
    signed_note = "XGradCAM keeps its formula there: a channel's weights can change sign with its sum."

    def _maps(self, x, classes, score_fn):
        features, grads = self._gradients(x, classes, score_fn)
        axes = spatial_axes(features)
        total = tf.reduce_sum(features, axis=axes, keepdims=True)
        weights = tf.reduce_sum(tf.math.divide_no_nan(features, total) * grads, axis=axes)
        return tf.nn.relu(_weighted_sum(features, weights))


def _first_component(centred):
    """The projection (B, P) of each (P, K) matrix M on its first right singular vector v1, from
    the eigenvector of the largest eigenvalue of the smaller Gram matrix (M^T M, K x K, or
    M M^T, P x P): the Gram product in float32, the small eigenproblem in float64. A full SVD of
    M cost twice as much (14 ms against 7 ms for 32 maps of 256 positions x 64 channels)."""
    positions, channels = centred.shape[1], centred.shape[2]
    if positions is not None and channels is not None and positions < channels:
        _, u = tf.linalg.eigh(tf.cast(tf.matmul(centred, centred, transpose_b=True), tf.float64))
        v = tf.linalg.matvec(centred, tf.cast(u[:, :, -1], tf.float32), transpose_a=True)  # M^T u1 = s1 v1
        v = tf.math.divide_no_nan(v, tf.norm(v, axis=-1, keepdims=True))
    else:
        _, w = tf.linalg.eigh(tf.cast(tf.matmul(centred, centred, transpose_a=True), tf.float64))
        v = tf.cast(w[:, :, -1], tf.float32)
    return tf.linalg.matvec(centred, v)


class EigenCAM(_FeatureMapExplainer):
    """Eigen-CAM (Muhammad and Yeasin, 2020): the feature map's first principal component.

    The (positions, channels) matrix of the layer's activations, centred over positions, is
    projected on its first right singular vector; the sign is chosen so the map correlates
    positively with the channels' sum (the principal component's sign is arbitrary: uncorrected,
    pytorch-grad-cam's maps come out inverted on some machines). Centred over positions as
    pytorch-grad-cam does; no final ReLU (pytorch-grad-cam applies one to every method): the map
    is signed, negative where the component points away. Constant features give a zero map.
    Needs no gradient and no class: `target` is ignored (the maps are class-agnostic).

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
    """

    signed = True
    final_relu = False
    class_agnostic = True
    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)

    def _maps(self, x, classes, score_fn):
        features, _ = self._features(x)
        features = tf.cast(features, tf.float32)
        shape = tf.shape(features)
        flat = tf.reshape(features, tf.stack([shape[0], -1, shape[-1]]))  # (B, positions, K)
        centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
        projection = _first_component(centred)  # (B, positions)
        total = tf.reduce_sum(centred, axis=-1)
        sign = tf.where(tf.reduce_sum(projection * total, axis=-1, keepdims=True) < 0, -1.0, 1.0)
        return tf.reshape(projection * sign, shape[:-1])


class FEM(_FeatureMapExplainer):
    """FEM, the Feature Explanation Method (Fuad et al., 2020), as Xplique has it: each channel k
    of the layer is thresholded at its spatial mean plus `k` standard deviations (population),
    and the binary masks M_k = [A_k >= mean_k + k std_k] are summed weighted by the channel
    means: map = sum_k mean_k M_k.

    Needs no gradient and no class: `target` is ignored (class-agnostic, one forward pass). The
    paper's features follow a ReLU (non-negative means); on a signed layer a channel with a
    negative mean subtracts where it fires, and the method warns once. A channel constant over
    space sits on its threshold: float rounding of its mean and std decides whether its mask is
    empty or full (as in Xplique).

    Args:
        model: Keras model.
        layer, output, input: as for GradCAM.
        k: the threshold in standard deviations (the paper's and Xplique's 2).
    """

    final_relu = False
    class_agnostic = True
    assumes_nonnegative = True
    signed_note = "A channel with a negative mean then lowers the map where it fires."
    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)

    def __init__(self, model, layer=None, k=2.0, batch_size=128, output=None, input=None, jit_compile=None):
        if not (isinstance(k, (int, float, np.number)) and not isinstance(k, bool) and np.isfinite(k)):
            raise ValueError(f"k must be a finite number of standard deviations; received {k!r}.")
        super().__init__(model, layer, batch_size=batch_size, output=output, input=input, jit_compile=jit_compile)
        self.k = float(k)

    def _maps(self, x, classes, score_fn):
        features, _ = self._features(x)
        features = tf.cast(features, tf.float32)
        axes = list(range(1, len(features.shape) - 1))
        means = tf.reduce_mean(features, axis=axes, keepdims=True)
        stds = tf.math.reduce_std(features, axis=axes, keepdims=True)
        masks = tf.cast(features >= means + self.k * stds, tf.float32)
        return tf.reduce_sum(masks * means, axis=-1)


class AblationCAM(_FeatureMapExplainer, PerturbationExplainer):
    """Ablation-CAM (Desai and Ramaswamy, 2020): channel weights w_k = (S - S_k) / S, S the class
    score and S_k the score with channel k of the layer set to zero, then ReLU(sum_k w_k A^k).

    Needs no gradient. The ablated copies (one per channel and example) are streamed through the
    model in chunks of at most `batch_size` images, like Score-CAM's masked copies. The score is
    the pre-softmax logit, as in pytorch-grad-cam (the weights are relative to S, so a score near
    0 gives large weights, and a score of exactly 0 gives weights 0).

    Args:
        model: Keras model with a functional graph.
        layer, output, input: as for GradCAM.
        batch_size: most ablated images per forward pass.
    """

    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)

    def __init__(self, model, layer=None, batch_size=256, output=None, input=None, jit_compile=None):
        super().__init__(model, layer, batch_size=batch_size, output=output, input=input, jit_compile=jit_compile)
        if self.tokens is None and len(tree.flatten(self.site.nodes[-1].outputs)) != 1:
            raise ValueError(f"Ablation-CAM ablates a layer with one output; {self.layer!r} has several.")

    def _extra(self, x):
        count = self._channels
        return count, plan_chunks(count, batch_of(x), self._chunk_images(x, count))

    def _maps(self, x, classes, score_fn, count, per):
        native, logits = self._source(x)
        features = tf.cast(native if self.tokens is None else self.tokens.to_map(native), tf.float32)
        scores, classes = select_scores(logits, classes, score_fn)
        extra = 0 if self.tokens is None else self.tokens.extra  # class tokens are not ablated
        xi, others = self._split(x, self.input_index)
        batch, rank = tf.shape(xi)[0], len(native.shape)

        def chunk(state, _, ids):
            k = tf.shape(ids)[0]
            keep = tf.repeat(1.0 - tf.one_hot(ids, count), batch, axis=0)  # (k * B, K), k-major
            keep = tf.reshape(keep, tf.concat([[k * batch], tf.ones([rank - 2], tf.int32), [count]], 0))
            # The copies' features are the clean ones, tiled: the layer and what only feeds it are
            # not computed again for each copy (the compiled graph prunes them), so a copy costs
            # the rest of the network, the part after the layer.
            tiled = tf.tile(native, tf.concat([[k], tf.ones([rank - 1], tf.int32)], 0))

            def ablated(*args, **kwargs):
                if not extra:
                    return tiled * tf.cast(keep, tiled.dtype)
                return tf.concat([tiled[:, :extra], tiled[:, extra:] * tf.cast(keep, tiled.dtype)], axis=1)

            copies = tf.tile(xi, tf.concat([[k], tf.ones([len(xi.shape) - 1], tf.int32)], 0))
            full = copies if not others else [copies if o is None else tf.tile(o, [k] + [1] * (len(o.shape) - 1))
                                              for o in others]
            if self.tokens is None:
                logits_k = self.scorer.with_replaced({self.site.nodes: ablated})(full)
            else:
                logits_k = self.site.replaced_logits(ablated, full)
            ablated_scores, _ = select_scores(logits_k, tf.tile(classes, [k]), score_fn)
            return tf.tensor_scatter_nd_update(state, ids[:, None], tf.reshape(ablated_scores, (k, batch)))

        ablated_scores = tf.transpose(over_chunks(chunk, tf.zeros(tf.stack([count, batch])), count, per,
                                                  xla=self.tracing_xla()))
        weights = tf.math.divide_no_nan(scores[:, None] - ablated_scores, scores[:, None])
        return tf.nn.relu(_weighted_sum(features, weights))


def _walk_back(cursor, skip):
    """The first site at or before `cursor` whose operation is not skipped by `skip(op)`."""
    while True:
        site = cursor.producer()
        if site is None or not (skip(site.operation) and len(site.nodes[-1].input_tensors) == 1):
            return site
        cursor = Cursor.input_of(site)


def find_cam_head(model, output=0):
    """(feature Site, kernel (channels, classes), bias variable or None) of output `output`'s head.

    Accepts a CAMHead; GlobalAveragePooling1D/2D/3D -> (Dropout) -> Dense; or a class-map head,
    GlobalAveragePooling of a map with one channel per class (kernel: the identity); each
    optionally followed by a softmax or sigmoid (fused, a layer or an operation) and shape-only
    layers. The head may end a nested classifier.
    """
    hint = (
        f"Model {getattr(model, 'name', model)!r} does not end in global average pooling followed by a "
        "dense layer, in global average pooling of one map per class, or in a keras_interp.layers.CAMHead, "
        "so plain CAM does not apply. Use ki.GradCAM(model), which works for any convolutional network."
    )
    cursor = Cursor.at_output(model, output)
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
        if not isinstance(op, _GAP) or op.keepdims or op.data_format != "channels_last":
            raise ValueError(hint)
        feature = Cursor.input_of(gap).producer()
        kernel, bias = head.operation.kernel, head.operation.bias if head.operation.use_bias else None
    elif isinstance(head.operation, _GAP) and head.operation.data_format == "channels_last":
        # A class-map head (Network in Network, all-convolutional nets, mini-Xception): the pooled
        # map has one channel per class and its mean is the logit, so the class's channel is its
        # CAM: the identity as the head's kernel.
        feature = Cursor.input_of(head).producer()
        if feature is None:
            raise ValueError(hint)
        kernel, bias = tf.eye(feature.shape[-1], dtype=tf.float32), None
    else:
        raise ValueError(hint)
    if feature is None:
        raise ValueError(hint)
    return feature, kernel, bias


class CAM(_FeatureMapExplainer):
    """Class activation maps (Zhou et al., 2016) for a GAP -> Dense head, a class-map head or a CAMHead.

    map_c = sum_k W[k, c] A^k, without the bias, so mean_ij(map_c) + b_c equals logit_c.
    On a class-map head (a map with one channel per class, averaged into the logits: Network in
    Network, all-convolutional nets, mini-Xception) map_c is class c's channel itself, whose
    mean is logit_c. Maps are signed (negative where a region argues against the class). The
    head is found automatically; a model without one gets an error that points to GradCAM.

    Args:
        model: Keras model ending in GAP (1-D, 2-D or 3-D) -> (Dropout) -> Dense, in GAP of one
            map per class, or in a CAMHead.
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).
        input: the input the maps are drawn on (name or index), for a model with several.

    Example:
        >>> maps = ki.CAM(model).explain(images)                # (B, H, W)
    """

    signed = True  # the class's weighted feature sum, negative where features vote against it
    final_relu = False
    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)

    def __init__(self, model, output=None, input=None, jit_compile=None):
        # The scorer checks the model (a keras.Model, built) before the head is looked for.
        index = Scorer(model, output=output).output_index or 0
        site, self._kernel, self._bias = find_cam_head(model, index)
        super().__init__(model, site, output=output, input=input, jit_compile=jit_compile)

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
        return _weighted_sum(features, weights)


WEIGHTINGS = ("increase", "softmax", "probability")


class ScoreCAM(_FeatureMapExplainer, PerturbationExplainer):
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

    The paper's features are non-negative (after a ReLU). On a signed layer (no ReLU after it:
    PReLU, BatchNorm, a class-map head) a channel can be negative everywhere although its mask
    H^k, which was scored, keeps its highest region: the weighted sum of raw activations can
    then be negative everywhere, and the final ReLU would return an empty map even for a
    confident prediction. For such an example only, each channel with negative values enters
    the sum measured from its minimum, A^k - min A^k (its mask's zero, times its range); every
    other map is the paper's. A substantially signed layer gets one warning.

    Args:
        model: Keras model.
        layer: as for GradCAM.
        max_channels: None for all channels, or keep the channels with the highest spatial
            activation variance (chosen per image).
        baseline: X_b, what the masked-out part of the input becomes, in the model's input
            space: 0.0 (the paper: black), another scalar, an (H, W, C) image or one per example
            (e.g. blurred copies of the inputs).
        weighting: "increase", "softmax" or "probability" (see above).
        batch_size: most masked images per forward pass; below it the pass size is measured
            once per model and input shape (see Explainer._chunk_images).
        output: the output to explain (name or index), for a model with several.
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).
        input: the input that is masked (name or index), for a model with several; the others
            are kept as they are.

    Example:
        >>> maps = ki.ScoreCAM(model, max_channels=64).explain(images)
    """

    _probe = "forward"  # jit_compile="auto" times the forward pass (see Explainer)
    assumes_nonnegative = True
    signed_note = ("Where the weighted sum is negative everywhere, Score-CAM measures each channel with negative values "
                   "from its minimum (the zero of the mask that was scored), so the map still shows where the masks point.")

    def __init__(self, model, layer=None, max_channels=None, baseline=0.0, weighting="softmax", batch_size=256,
                 output=None, input=None, jit_compile=None):
        super().__init__(model, layer, batch_size=batch_size, output=output, input=input, jit_compile=jit_compile)
        if max_channels is not None and (not isinstance(max_channels, int) or max_channels < 1):
            raise ValueError(f"max_channels must be None or a positive int; received {max_channels!r}.")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}; received {weighting!r}.")
        self.max_channels = max_channels
        self.baseline = baseline
        self.weighting = weighting


    def _per_example(self, x):
        return (broadcast_baseline(self.baseline, self._split(x, self.input_index)[0]),)

    def _extra(self, x, baseline):
        channels = self._channels
        count = channels if self.max_channels is None else min(self.max_channels, channels)
        return baseline, count, plan_chunks(count, batch_of(x), self._chunk_images(x, count))

    def _confidence(self, logits, classes, score_fn):
        if self.weighting == "softmax":  # Algorithm 1: logits, softmax over channels later
            return select_scores(logits, classes, score_fn)[0]
        return self.scorer.confidence(logits, classes, score_fn)

    def _maps(self, x, classes, score_fn, baseline, count, per):
        features, logits = self._features(x)
        features = tf.cast(features, tf.float32)
        _, classes = select_scores(logits, classes, score_fn)
        axes = spatial_axes(features)
        last = len(features.shape) - 1
        if count < features.shape[-1]:
            variance = tf.math.reduce_variance(features, axis=axes)
            keep = tf.math.top_k(variance, k=count).indices
            features = tf.gather(features, keep, axis=last, batch_dims=1)
        xi, others = self._split(x, self.input_index)
        shape = tf.shape(xi)

        def chunk(state, _, ids):
            k = tf.shape(ids)[0]
            up = resize_nd(tf.gather(features, ids, axis=last), shape[1:-1])
            masked, varies = _masked_copies(up, xi, baseline)
            confidence = self._confidence(self._logits_with(masked, others), tf.tile(classes, [k]), score_fn)
            rows = (tf.reshape(confidence, (k, shape[0])), tf.cast(tf.transpose(varies), tf.float32))
            return tuple(tf.tensor_scatter_nd_update(t, ids[:, None], r) for t, r in zip(state, rows))

        # (channels, B) each: the channel's confidence and whether its map varies.
        empty = tf.zeros(tf.stack([count, shape[0]]))
        chunks = over_chunks(chunk, (empty, empty), count, per, xla=self.tracing_xla())
        scores, varying = (tf.transpose(t) for t in chunks)
        if self.weighting == "increase":
            at_baseline = self._confidence(self._logits_with(baseline, others), classes, score_fn)
            weights = (scores - at_baseline[:, None]) * varying
        elif self.weighting == "probability":
            weights = scores * varying
        else:
            weights = tf.nn.softmax(tf.where(varying > 0, scores, tf.float32.min), axis=-1) * varying
        return tf.nn.relu(self._combine(features, weights))

    @staticmethod
    def _combine(features, weights):
        """sum_k w_k A^k; where that is negative at every position of an example (possible only
        on a signed layer), the sum with each channel measured from its minimum (see above)."""
        axes = spatial_axes(features)
        raw = _weighted_sum(features, weights)
        lowest = tf.reduce_min(features, axis=axes, keepdims=True)
        shifted = _weighted_sum(features - tf.minimum(lowest, 0.0), weights)
        empty = tf.reduce_max(raw, axis=list(range(1, len(raw.shape))), keepdims=True) <= 0
        return tf.where(empty, shifted, raw)
