"""Keras layers of keras_interp, registered for `.keras` serialization under "keras_interp"."""

__all__ = []
