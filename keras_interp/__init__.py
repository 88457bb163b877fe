"""keras-interp: make Keras 3 / TensorFlow image models explain themselves.

Importing the package is cheap: TensorFlow, Keras and OpenCV are imported the first time a
public name is used, and nothing is written to disk.

    import keras_interp as ki
    maps = ki.Saliency(model).explain(images)      # (B, H, W) float32
"""

import importlib

__version__ = "0.1.0"

from keras_interp.registry import METHODS as _METHODS  # noqa: E402  (imports nothing heavy)

# Public name -> module that defines it. Explicit, so `dir(ki)` and `__all__` list the API; every
# method of the registry is exported under its class name.
_EXPORTS = {
    "Explainer": "keras_interp.explainers.base",
    **{entry.cls: entry.module for entry in _METHODS.values()},
    "Scorer": "keras_interp.targets",
    "ClassModelVisualization": "keras_interp.visualize.class_model",
    "FeatureVisualization": "keras_interp.visualize.class_model",
    "DeepDream": "keras_interp.visualize.deep_dream",
    "ExplanationLogger": "keras_interp.callbacks",
    "conv_matrix": "keras_interp.conv_matrix",
    "load_model": "keras_interp.models",
    "reference_cnn": "keras_interp.models",
    "receptive_field": "keras_interp.search",
    "DatasetSearch": "keras_interp.search",
    "localize": "keras_interp.metrics.localize",
    "evaluate": "keras_interp.evaluation",
    "Evaluation": "keras_interp.evaluation",
}
_SUBMODULES = ("callbacks", "checks", "datasets", "explainers", "images", "layers", "metrics", "models", "registry",
               "search", "summary", "tags", "targets", "visualize")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_interp.{name}")
    else:
        raise AttributeError(f"module 'keras_interp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
