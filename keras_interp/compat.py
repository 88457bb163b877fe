"""Keras's private names that keras_interp reads, in one place: a Keras upgrade that moves
them means one file to fix.

Keras 3 has no public classes for the operations a functional graph records (`a + b`,
`keras.ops.softmax(t)`, `keras.ops.transpose(t)`): recognising them in a graph needs
`keras.src.ops`. The other lookups: ConvNeXt's LayerScale layer, the ReLU operation classes of
`keras.activations`, and the global seed generator (kept unchanged while a model is cloned).
Every lookup tolerates a name that is missing (an empty tuple, or None).
"""

__all__ = ["ops_classes", "ops_class", "application_layer", "relu_classes", "global_state", "progress_bar"]


def progress_bar(total, unit_name="step", stateful_metrics=None):
    """keras.utils.Progbar, drawn in place on a terminal; where stdout is not one (a log file, a
    pipe) one plain line when done (verbose=2). Keras itself counts every POSIX system as a
    terminal, so redirected output would fill with carriage returns and colour codes."""
    import sys

    import keras

    terminal = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(total, verbose=1 if terminal else 2, stateful_metrics=stateful_metrics,
                               unit_name=unit_name)


def _ops_modules():
    from keras.src.ops import core, nn
    from keras.src.ops import numpy as knp

    return {"nn": nn, "numpy": knp, "core": core}


def ops_classes(module, *names):
    """The operation classes `names` of keras.src.ops.<module> ("nn", "numpy", "core") that exist."""
    source = _ops_modules()[module]
    return tuple(getattr(source, n) for n in names if hasattr(source, n))


def ops_class(name):
    """The operation class `name` from keras.src.ops.nn or .numpy, or None."""
    modules = _ops_modules()
    return getattr(modules["nn"], name, None) or getattr(modules["numpy"], name, None)


def application_layer(module, name):
    """A layer class defined inside keras.applications (e.g. convnext's LayerScale), or None."""
    try:
        return getattr(__import__(f"keras.src.applications.{module}", fromlist=[name]), name)
    except (ImportError, AttributeError):  # pragma: no cover - another Keras layout
        return None


def relu_classes():
    """(the ReLU operation of keras.ops, the ReLU activation class of keras.activations)."""
    from keras.src.activations.activations import ReLU as ReluActivation
    from keras.src.ops.nn import Relu

    return Relu, ReluActivation


def global_state():
    """Keras's global-state module (the global seed generator lives there), or None."""
    try:
        from keras.src.backend.common import global_state as state
    except ImportError:  # pragma: no cover - another Keras layout
        return None
    return state
