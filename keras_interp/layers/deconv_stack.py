"""DeconvStack: Zeiler and Fergus's deconvnet as a Keras model that mirrors a network's layers."""

import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_interp import graph
from keras_interp.compat import relu_classes
from keras_interp.layers.switch_pooling import MaxPoolingWithSwitches2D, MaxUnpooling2D

__all__ = ["DeconvStack", "resolve_channels", "strongest_activation"]


def resolve_channels(target, batch, channels, layer):
    """Channel indices (B,) int32, -1 meaning "the example's most active channel"."""
    if target is None:
        return np.full((batch,), -1, np.int32)
    hint = f"With layer={layer!r}, target is a channel index of that layer (0..{channels - 1})"
    if callable(target) or isinstance(target, (bool, np.bool_)):
        raise TypeError(f"{hint}, one per example, or None; received {target!r}.")
    if isinstance(target, numbers.Integral):
        chosen = np.full((batch,), int(target), np.int64)
    else:
        chosen = np.asarray(target)
        if chosen.ndim != 1 or not np.issubdtype(chosen.dtype, np.integer):
            raise TypeError(f"{hint}; received an array of shape {chosen.shape} and dtype {chosen.dtype}.")
        if len(chosen) != batch:
            raise ValueError(f"{hint}: target has {len(chosen)} entries but the batch has {batch} examples.")
    bad = chosen[(chosen < 0) | (chosen >= channels)]
    if bad.size:
        raise ValueError(f"{hint}; received channel {int(bad[0])}, out of range: the layer has {channels} channels.")
    return chosen.astype(np.int32)


def strongest_activation(features, channels):
    """Zeiler and Fergus's starting signal: each example's channel keeps its single largest
    activation in place, everything else is zeroed. features (B, ..., C) float32; channels (B,)
    with -1 for the example's most active channel (largest single activation)."""
    shape = tf.shape(features)
    count = features.shape[-1]
    flat = tf.reshape(features, [shape[0], -1, count])
    top = tf.cast(tf.argmax(tf.reduce_max(flat, axis=1), -1), tf.int32)
    channels = tf.where(channels < 0, top, channels)
    column = tf.gather(flat, channels, axis=2, batch_dims=1)  # (B, positions)
    peak = tf.one_hot(tf.argmax(column, axis=1), tf.shape(column)[1]) * tf.reduce_max(column, axis=1)[:, None]
    signal = peak[:, :, None] * tf.one_hot(channels, count)[:, None, :]
    return tf.reshape(signal, shape), channels


# Layers that are the identity at inference: the signal passes unchanged.
_IDENTITY = tuple(
    getattr(keras.layers, name)
    for name in (
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
        "AlphaDropout", "Identity", "InputLayer", "RandomFlip", "RandomRotation", "RandomZoom",
        "RandomTranslation", "RandomContrast", "RandomBrightness",
    )
    if hasattr(keras.layers, name)
)


def _is_plain_relu(op):
    """A ReLU without slope or threshold (max_value None or 6), in any of Keras's forms."""
    Relu, ReluOp = relu_classes()
    if isinstance(op, Relu):
        return True
    if isinstance(op, (keras.layers.ReLU, ReluOp)):
        return not op.negative_slope and not op.threshold and op.max_value in (None, 6)
    return isinstance(op, keras.layers.Activation) and op.activation is keras.activations.relu


class _TiedConv2DTranspose(keras.layers.Conv2DTranspose):
    """Conv2DTranspose whose kernel is a Conv2D's own kernel variable (live, not a copy).

    A Conv2D kernel (kh, kw, in, out) is already laid out as Conv2DTranspose wants it for a map
    from `out` channels back to `in`: the same strides, padding and dilation give the transpose
    of the convolution, which is its gradient. Several input sizes pool to one output size
    (odd sizes, "same" padding), and Keras's `output_padding` cannot name all of them (it must
    stay below the stride), so the output size is given to the op directly.
    """

    def __init__(self, conv, output_size, **kwargs):
        super().__init__(
            filters=conv.kernel.shape[2], kernel_size=conv.kernel_size, strides=conv.strides,
            padding=conv.padding, dilation_rate=conv.dilation_rate, use_bias=False, dtype=conv.dtype_policy,
            **kwargs,
        )
        self.output_size = tuple(int(n) for n in output_size)
        self.kernel = conv.kernel
        self.built = True

    def call(self, inputs):
        shape = tf.stack([tf.shape(inputs)[0], *self.output_size, self.filters])
        kernel = tf.cast(self.kernel, inputs.dtype)
        return tf.nn.conv2d_transpose(
            inputs, kernel, shape, self.strides, self.padding.upper(), dilations=self.dilation_rate
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, self.filters)


class _LinearPart(keras.layers.Layer):
    """Multiplies the signal by a layer's per-channel scale, read live from its variables."""

    def __init__(self, scale_fn, **kwargs):
        super().__init__(**kwargs)
        self._scale_fn = scale_fn

    def call(self, signal):
        return signal * tf.cast(self._scale_fn(), signal.dtype)


def _linear_scale(op):
    """The scale of a per-channel affine layer (its transpose), or None when `op` is not one."""
    if isinstance(op, keras.layers.BatchNormalization) and op.axis in (-1, 3):
        def scale():
            s = tf.math.rsqrt(tf.cast(op.moving_variance, tf.float32) + op.epsilon)
            return s * tf.cast(op.gamma, tf.float32) if op.scale else s
        return scale
    if isinstance(op, keras.layers.Normalization) and not op.invert:
        return lambda: 1.0 / tf.maximum(tf.sqrt(tf.cast(op.variance, tf.float32)), keras.backend.epsilon())
    if isinstance(op, keras.layers.Rescaling):
        return lambda: tf.cast(op.scale, tf.float32)
    return None


def _mirror_kind(op):
    """How the deconvnet undoes `op`: 'conv', 'pool', 'crop', 'relu', 'scale', 'identity' or None."""
    if isinstance(op, keras.layers.Conv2D):
        plain = op.groups == 1 and op.data_format == "channels_last" and not getattr(op, "lora_enabled", False)
        activation_ok = op.activation is keras.activations.linear or op.activation is keras.activations.relu
        return "conv" if plain and activation_ok else None
    if isinstance(op, (keras.layers.MaxPooling2D, MaxPoolingWithSwitches2D)):
        return "pool" if getattr(op, "data_format", "channels_last") == "channels_last" else None
    if isinstance(op, keras.layers.ZeroPadding2D):
        return "crop" if op.data_format == "channels_last" else None
    if _is_plain_relu(op):
        return "relu"
    if _linear_scale(op) is not None:
        return "scale"
    if isinstance(op, _IDENTITY):
        return "identity"
    return None


def _chain(model, site):
    """Sites from the model's input up to `site`, following each node's single input."""
    sites, unsupported, current = [], [], site
    while current is not None:
        node = current.nodes[-1]
        if _mirror_kind(node.operation) is None or len(node.input_tensors) != 1:
            unsupported.append(f"{current.path} ({type(node.operation).__name__})")
        sites.append(current)
        current = graph.Cursor.input_of(current).producer()
    if unsupported:
        raise ValueError(
            f"DeconvStack cannot mirror the path from {model.name!r}'s input to {site.path!r}: unsupported "
            f"layers {unsupported[::-1]}. It supports a chain of Conv2D (linear or ReLU activation, groups=1), "
            "MaxPooling2D, ZeroPadding2D, ReLU (ReLU, Activation('relu'), ops.relu), BatchNormalization, "
            "Dropout and preprocessing layers. For any model, use ki.Deconvnet(model, layer=...), which projects "
            "through every layer by its gradient with the deconvnet rule at each ReLU."
        )
    return sites[::-1]


class _Forward:
    """The forward pass a stack needs: features at the site and the switches of each pooling.
    Kept outside Keras's tracking so the stack does not own the user's model."""

    def __init__(self, model, site, pools):
        self.model, self.site, self.pools = model, site, pools
        self.taps = [site] + [graph.Cursor.input_of(p).producer() for p in pools]
        self.function = tf.function(self._record)

    def _record(self, x):
        _, values = graph.run(self.model, x, [t for t in self.taps if t is not None])
        values = iter(values)
        features = next(values)
        switches = []
        for pool, tap in zip(self.pools, self.taps[1:]):
            op = pool.operation
            pooled_input = x if tap is None else next(values)
            switches.append(MaxPoolingWithSwitches2D(op.pool_size, op.strides, op.padding)(pooled_input)[1])
        return features, switches


class DeconvStack(keras.Model):
    """A deconvnet (Zeiler and Fergus, 2014) mirroring a network from its input up to `layer`.

    Build it with `DeconvStack.from_model(model, layer)`. Going down from `layer`, each Conv2D
    becomes a Conv2DTranspose using the same kernel variable (live: it follows training), each
    max pooling an unpooling fed by the switches recorded in a forward pass, each ReLU (fused,
    `ReLU`, `Activation("relu")`, `ops.relu`) rectifies the signal. BatchNormalization
    (inference), Normalization and Rescaling apply their per-channel scale, the transpose of
    their linear part (offsets are dropped like convolution biases), so the stack gives exactly
    `ki.Deconvnet(model, layer)`'s image; ZeroPadding2D crops the border it added; Dropout and
    augmentation layers pass the signal unchanged. Any other layer on the path gets a
    ValueError naming it. The stack reads the source model's kernels live and is not saved
    on its own: save the model and rebuild the stack.

    Call arguments:
        inputs: `[signal, *switches]`: a signal shaped like `layer`'s output (batch, h, w,
            channels), usually the features with all but one activation zeroed, and the
            switches of each max pooling on the path, input side first, as `record` returns.

    Returns:
        The projection (batch, height, width, channels) in the model's input space.

    Example:
        >>> stack = ki.layers.DeconvStack.from_model(model, "conv3")
        >>> features, switches = stack.record(images)         # forward pass, switches recorded
        >>> image = stack([features_with_one_activation, *switches])
        >>> image = stack.project(images, channel=5)           # the two steps in one
    """

    def get_config(self):
        raise NotImplementedError(
            "A DeconvStack shares the live kernels of the model it mirrors and is not saved on its own: "
            "save that model and rebuild the stack with DeconvStack.from_model(model, layer)."
        )

    @classmethod
    def from_model(cls, model, layer):
        """The deconvnet of `model` from `layer` (a name, "nested/path") down to the input."""
        site = graph.find_site(model, layer) if isinstance(layer, str) else layer
        if len(site.shape) != 4:
            raise ValueError(f"DeconvStack needs a spatial layer (batch, h, w, channels); {site.path!r} "
                             f"has output shape {site.shape}.")
        chain = _chain(model, site)
        pools = [s for s in chain if _mirror_kind(s.operation) == "pool"]
        signal_in = keras.Input(site.shape[1:], name="signal")
        switch_ins = [keras.Input(tuple(p.shape[1:]) + (4,), dtype="int32", name=f"switches_{i}")
                      for i, p in enumerate(pools)]
        signal, pending = signal_in, list(switch_ins)
        for s in reversed(chain):
            op, kind, name = s.operation, _mirror_kind(s.operation), s.path.replace("/", "_")
            if kind in ("relu", "conv") and (kind == "relu" or op.activation is keras.activations.relu):
                signal = keras.layers.ReLU(name=f"{name}_rectify")(signal)
            if kind == "conv":
                size = s.nodes[-1].input_tensors[0].shape[1:3]
                if None in size:
                    raise ValueError(f"DeconvStack needs known input sizes; {s.path!r} takes {size}.")
                signal = _TiedConv2DTranspose(op, size, name=f"{name}_transpose")(signal)
            elif kind == "pool":
                signal = MaxUnpooling2D(name=f"{name}_unpool")([signal, pending.pop()])
            elif kind == "crop":  # the transpose of padding with zeros drops the border
                signal = keras.layers.Cropping2D(op.padding, name=f"{name}_crop")(signal)
            elif kind == "scale":
                signal = _LinearPart(_linear_scale(op), name=f"{name}_scale")(signal)
        stack = cls(inputs=[signal_in, *switch_ins], outputs=signal, name=f"deconv_{site.path.replace('/', '_')}")
        stack._forward = _Forward(model, site, pools)
        stack.layer = site.path
        return stack

    def record(self, inputs):
        """Forward pass of the source model: (features at `layer`, [switches, input side first])."""
        features, switches = self._forward.function(self._images(inputs))
        return features, list(switches)

    def _images(self, inputs):
        from keras_interp.checks import check_images

        return tf.constant(check_images(inputs, self._forward.model.inputs[0].shape))

    def _project(self, x, channels):
        features, switches = self._forward._record(x)
        signal, _ = strongest_activation(tf.cast(features, tf.float32), channels)
        return tf.cast(self([signal, *switches]), tf.float32)

    def project(self, inputs, channel=None):
        """Zeiler-Fergus projection: record, keep the channel's strongest activation, project down.

        Args:
            inputs: images (B, H, W, C) as the source model takes them.
            channel: an int, one per example, or None for each image's most active channel.

        Returns:
            (B, H, W, C) float32 numpy projections.
        """
        x = self._images(inputs)
        channels = resolve_channels(channel, x.shape[0], self._forward.site.shape[-1], self.layer)
        if getattr(self, "_compiled_project", None) is None:
            self._compiled_project = tf.function(self._project)
        return self._compiled_project(x, tf.constant(channels)).numpy()
