"""Explainers: one class per method, each built once per model and called many times.

The methods are listed once, in keras_interp.registry; this package exports each under its
class name (with the shared bases).
"""

from keras_interp import registry
from keras_interp.explainers.base import Explainer
from keras_interp.explainers.gradients import GradientExplainer

__all__ = ["Explainer", "GradientExplainer"] + sorted(entry.cls for entry in registry.METHODS.values())


def __getattr__(name):
    for entry in registry.METHODS.values():
        if entry.cls == name:
            value = globals()[name] = entry.load()
            return value
    raise AttributeError(f"module 'keras_interp.explainers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
