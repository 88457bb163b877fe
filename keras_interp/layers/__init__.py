"""Keras layers of keras_interp, registered for `.keras` serialization under "keras_interp"."""

from keras_interp.layers.cam_head import CAMHead
from keras_interp.layers.deconv_stack import DeconvStack
from keras_interp.layers.switch_pooling import MaxPoolingWithSwitches2D, MaxUnpooling2D
from keras_interp.layers.token_embedding import TokenEmbedding

__all__ = ["CAMHead", "DeconvStack", "MaxPoolingWithSwitches2D", "MaxUnpooling2D", "TokenEmbedding"]
