"""Max pooling that records where each maximum came from, and the unpooling that uses it."""

import keras
import tensorflow as tf

# The last axis of the switches: row and column of the maximum in the pooled layer's input, and
# that input's height and width (repeated in every entry, so unpooling needs nothing else).
SWITCH_FIELDS = ("row", "col", "height", "width")


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ValueError(f"{name} must be a positive int or a pair of them; received {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_interp")
class MaxPoolingWithSwitches2D(keras.layers.Layer):
    """2-D max pooling that also returns its switches (where each maximum was).

    The pooled output, and the gradient through it, are those of `keras.layers.MaxPooling2D`
    with the same arguments (ties go to the first maximum in row-major order, as there). The
    switches let `MaxUnpooling2D` put a signal back where the maxima were: Zeiler and Fergus's
    deconvnet unpools this way.

    Args:
        pool_size: int or (rows, cols) window.
        strides: int or pair; None means `pool_size`.
        padding: "valid" or "same" (as MaxPooling2D: "same" never picks a padded position).
        **kwargs: standard layer arguments (name, dtype, ...).

    Call arguments:
        inputs: (batch, height, width, channels) channels-last tensor.

    Returns:
        `(pooled, switches)`: pooled (batch, out_rows, out_cols, channels) and int32 switches
        (batch, out_rows, out_cols, channels, 4) holding, for each pooled value, the row and
        column of its maximum in `inputs` and the height and width of `inputs`.

    Example:
        >>> pooled, switches = MaxPoolingWithSwitches2D(2)(features)
        >>> restored = MaxUnpooling2D()([pooled, switches])    # features' shape, zeros elsewhere
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'; received {padding!r}.")
        self.padding = padding
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        # One op gives both; its gradient routes to the same positions as MaxPooling2D's.
        pooled, argmax = tf.nn.max_pool_with_argmax(
            inputs, self.pool_size, self.strides, self.padding.upper(), include_batch_in_index=False
        )
        shape = tf.shape(inputs, out_type=tf.int64)
        width, channels = shape[2], shape[3]
        pixel = argmax // channels  # argmax is (row * width + col) * channels + channel
        size = tf.broadcast_to(tf.stack([shape[1], width]), tf.concat([tf.shape(argmax, tf.int64), [2]], 0))
        switches = tf.concat([tf.stack([pixel // width, pixel % width], -1), size], -1)
        return pooled, tf.cast(switches, "int32")

    def compute_output_shape(self, input_shape):
        batch, rows, cols, channels = input_shape
        out = []
        for n, k, s in zip((rows, cols), self.pool_size, self.strides):
            if n is None:
                out.append(None)
            elif self.padding == "same":
                out.append(-(-n // s))
            else:
                out.append((n - k) // s + 1)
        pooled = (batch, out[0], out[1], channels)
        return pooled, pooled + (len(SWITCH_FIELDS),)

    def compute_output_spec(self, inputs):
        pooled, switches = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(pooled, dtype=self.compute_dtype), keras.KerasTensor(switches, dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config


def _static_input_size(switches):
    """(height, width) of the pooled input when the graph says it (a symbolic switches tensor)."""
    history = getattr(switches, "_keras_history", None)
    if history is None:
        return None, None
    operation, node_index, _ = history
    if not isinstance(operation, MaxPoolingWithSwitches2D):
        return None, None
    shape = operation._inbound_nodes[node_index].input_tensors[0].shape
    return shape[1], shape[2]


@keras.saving.register_keras_serializable(package="keras_interp")
class MaxUnpooling2D(keras.layers.Layer):
    """Puts each pooled value back where its maximum was, zeros elsewhere.

    The output has the pooled layer's input shape exactly (odd sizes and "same" padding
    included: the switches carry it). Where overlapping windows share a maximum, their values
    add up, so unpooling a signal is the gradient of the max pooling that made the switches.

    Call arguments:
        inputs: `[pooled, switches]`: pooled (batch, rows, cols, channels), any signal of the
            pooled shape, and the switches `MaxPoolingWithSwitches2D` returned for it.

    Output shape:
        (batch, height, width, channels) of the input the switches were recorded on.

    Example:
        >>> pooled, switches = MaxPoolingWithSwitches2D(3, strides=2, padding="same")(x)
        >>> up = MaxUnpooling2D()([pooled, switches])          # x's shape
    """

    def call(self, inputs):
        pooled, switches = self._split(inputs)
        switches = tf.cast(switches, tf.int64)
        shape = tf.shape(pooled, out_type=tf.int64)
        batch, channels = shape[0], shape[3]
        height, width = switches[0, 0, 0, 0, 2], switches[0, 0, 0, 0, 3]
        b = tf.range(batch, dtype=tf.int64)[:, None, None, None]
        c = tf.range(channels, dtype=tf.int64)
        flat = ((b * height + switches[..., 0]) * width + switches[..., 1]) * channels + c
        total = batch * height * width * channels
        values = tf.scatter_nd(tf.reshape(flat, [-1, 1]), tf.reshape(pooled, [-1]), total[None])
        return tf.reshape(values, tf.stack([batch, height, width, channels]))

    @staticmethod
    def _split(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "MaxUnpooling2D takes [pooled, switches] as returned by MaxPoolingWithSwitches2D; "
                f"received {type(inputs).__name__} {getattr(inputs, 'shape', '')}."
            )
        pooled, switches = inputs
        p, s = tuple(pooled.shape), tuple(switches.shape)
        fits = len(p) == 4 and len(s) == 5 and s[4] == len(SWITCH_FIELDS) and all(
            a is None or b is None or a == b for a, b in zip(p, s[:4])
        )
        if not fits:
            raise ValueError(
                "MaxUnpooling2D expects pooled (batch, rows, cols, channels) and switches of shape "
                f"(batch, rows, cols, channels, {len(SWITCH_FIELDS)}) from MaxPoolingWithSwitches2D; "
                f"received pooled {p} and switches {s}."
            )
        return pooled, switches

    def compute_output_shape(self, input_shape):
        pooled_shape, _ = input_shape
        return (pooled_shape[0], None, None, pooled_shape[3])

    def compute_output_spec(self, inputs):
        pooled, switches = self._split(inputs)
        height, width = _static_input_size(switches)
        return keras.KerasTensor((pooled.shape[0], height, width, pooled.shape[3]), dtype=pooled.dtype)
