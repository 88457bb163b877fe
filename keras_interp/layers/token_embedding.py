"""Class tokens and learned positions for a small Vision Transformer (ki.models.reference_vit)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_interp")
class TokenEmbedding(keras.layers.Layer):
    """Prepends `class_tokens` learned tokens to a sequence of patch tokens and adds a learned
    position embedding to every token, as ViT does (Dosovitskiy et al., 2021).

    Args:
        class_tokens: learned tokens put in front (1: ViT's class token; 0: none, for a model
            that pools all tokens).
        **kwargs: base Layer arguments.

    Call arguments:
        inputs: (batch, patches, dim) patch tokens.

    Input shape: (batch, patches, dim). Output shape: (batch, class_tokens + patches, dim).

    Example:
        >>> tokens = keras.layers.Reshape((-1, 64))(keras.layers.Conv2D(64, 8, strides=8)(images))
        >>> tokens = TokenEmbedding(class_tokens=1)(tokens)   # (batch, 1 + patches, 64)
    """

    def __init__(self, class_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(class_tokens, bool) or not isinstance(class_tokens, int) or class_tokens < 0:
            raise ValueError(f"class_tokens must be a non-negative int; received {class_tokens!r}.")
        self.class_tokens = class_tokens

    def build(self, input_shape):
        patches, dim = input_shape[1], input_shape[2]
        if patches is None or dim is None:
            raise ValueError(f"TokenEmbedding needs a known number of patches and width; received {input_shape}.")
        if self.class_tokens:
            self.tokens = self.add_weight(name="class_tokens", shape=(1, self.class_tokens, dim),
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.positions = self.add_weight(name="positions", shape=(1, self.class_tokens + patches, dim),
                                         initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        if self.class_tokens:
            tokens = ops.tile(ops.cast(self.tokens, inputs.dtype), (ops.shape(inputs)[0], 1, 1))
            inputs = ops.concatenate([tokens, inputs], axis=1)
        return inputs + ops.cast(self.positions, inputs.dtype)

    def compute_output_shape(self, input_shape):
        count = None if input_shape[1] is None else input_shape[1] + self.class_tokens
        return (input_shape[0], count, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "class_tokens": self.class_tokens}
