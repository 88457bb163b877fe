"""CAMHead: global average pooling and a dense classifier that can also return class maps."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_interp")
class CAMHead(keras.layers.Layer):
    """Global average pooling followed by a dense layer, with class activation maps on request.

    Because averaging and the dense layer are both linear, applying the dense kernel to every
    spatial position first gives maps whose spatial mean plus the bias is exactly the logit:
    mean_hw(cams[..., c]) + bias[c] == logits[c] (Zhou et al., 2016).

    Args:
        num_classes: number of output classes.
        activation: activation applied to the logits (e.g. "softmax"); the class maps are
            never activated.
        use_bias: whether the dense layer has a bias.
        kernel_initializer: initializer of the (channels, num_classes) kernel.
        bias_initializer: initializer of the bias.
        **kwargs: standard layer arguments (name, dtype, ...).

    Call arguments:
        features: (batch, height, width, channels) feature maps; also (batch, length, channels)
            for 1-D models and (batch, depth, height, width, channels) for 3-D ones.
        return_cams: when True, also return the class maps.

    Input shape:
        (batch, *spatial, channels) with 1 to 3 spatial axes.

    Output shape:
        (batch, num_classes), and with return_cams=True also (batch, *spatial, num_classes).

    Example:
        >>> x = keras.Input((64, 64, 3))
        >>> f = keras.layers.Conv2D(32, 3, activation="relu")(x)
        >>> model = keras.Model(x, CAMHead(10, activation="softmax")(f))
        >>> probs, cams = model.layers[-1](features, return_cams=True)
    """

    def __init__(
        self,
        num_classes,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; received {num_classes!r}.")
        self.num_classes = num_classes
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=3, max_ndim=5)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"CAMHead needs a known channel dimension; received input shape {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=(channels, self.num_classes), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.num_classes,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def pre_activation(self, features):
        """The logits, before `activation` (keras_interp explains these)."""
        logits = ops.matmul(ops.mean(features, axis=tuple(range(1, len(features.shape) - 1))), self.kernel)
        return logits + self.bias if self.bias is not None else logits

    def call(self, features, return_cams=False):
        outputs = self.activation(self.pre_activation(features))
        if not return_cams:
            return outputs
        return outputs, ops.einsum("b...c,ck->b...k", features, self.kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, features, return_cams=False):
        dtype = self.compute_dtype
        outputs = keras.KerasTensor(self.compute_output_shape(features.shape), dtype=dtype)
        if not return_cams:
            return outputs
        return outputs, keras.KerasTensor(tuple(features.shape[:-1]) + (self.num_classes,), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
