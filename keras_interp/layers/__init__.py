"""Keras layers of keras_interp, registered for `.keras` serialization under "keras_interp"."""

from keras_interp.layers.cam_head import CAMHead

__all__ = ["CAMHead"]
