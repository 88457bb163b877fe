"""What a network has learned, by gradient ascent: class models, channel images, Deep Dream.

All three run on one engine (`GradientAscent`) with regularizers as small callables
`r(x, state) -> x`: `L2Decay`, `GaussianBlur`, `Jitter`, `ClipNorm`, `ClipContribution`, or
your own.
"""

from keras_interp.visualize.class_model import ClassModelVisualization, FeatureVisualization, fourier_recipe
from keras_interp.visualize.deep_dream import DeepDream
from keras_interp.visualize.engine import (
    Ascent,
    ClipContribution,
    ClipNorm,
    GaussianBlur,
    GradientAscent,
    Jitter,
    L2Decay,
    State,
    yosinski_defaults,
)

__all__ = [
    "Ascent",
    "ClassModelVisualization",
    "ClipContribution",
    "ClipNorm",
    "DeepDream",
    "FeatureVisualization",
    "GaussianBlur",
    "GradientAscent",
    "Jitter",
    "L2Decay",
    "State",
    "fourier_recipe",
    "yosinski_defaults",
]
