"""Turn a model and a `target` into one pre-softmax score per example.

Explanations are computed on logits, not probabilities: the gradient of a softmax output
mixes in every other class and saturates for confident predictions. When the model ends in
softmax or sigmoid, either fused into its last layer (`Dense(..., activation="softmax")`) or as
a separate `Softmax` / `Activation` layer, `Scorer` computes the logits from the model's live
weights through a second Keras graph that shares the model's layers. The user's model is never
modified, not even temporarily, so another thread (or the training loop) never sees a change.
"""

import numbers

import numpy as np
import keras
from keras import ops

from keras_interp.graph import layer_node, output_node, resolve_layer

__all__ = ["Scorer", "resolve_target", "select_scores"]

_SQUASHING = {"softmax": "softmax", "log_softmax": "softmax", "sigmoid": "sigmoid"}


def _activation_kind(activation):
    """'softmax', 'sigmoid', None (identity) or 'other' for a Keras activation function."""
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or str(activation)
    if name == "linear":
        return None
    return _SQUASHING.get(name, "other")


def _layer_squashing(layer):
    """The squashing a layer applies on its own: (kind, fused) or (None, False)."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax", False
    if isinstance(layer, keras.layers.Activation):
        kind = _activation_kind(layer.activation)
        return (kind, False) if kind in ("softmax", "sigmoid") else (None, False)
    kind = _activation_kind(getattr(layer, "activation", None))
    if kind in ("softmax", "sigmoid"):
        return kind, True
    return None, False


def _pre_activation(layer, x):
    """`layer(x)` without its fused activation, computed from the layer's live variables.

    Layers of other types can take part by defining `pre_activation(inputs)`.
    """
    if callable(getattr(layer, "pre_activation", None)):
        return layer.pre_activation(x)
    if isinstance(layer, keras.layers.Dense):
        y = ops.matmul(x, layer.kernel)
        return y + layer.bias if layer.use_bias else y
    if isinstance(layer, keras.layers.EinsumDense):
        y = ops.einsum(layer.equation, x, layer.kernel)
        return y + layer.bias if layer.bias is not None else y
    if hasattr(layer, "convolution_op") and hasattr(layer, "kernel"):
        y = layer.convolution_op(x, layer.kernel)
        if layer.use_bias:
            if layer.data_format == "channels_first":
                y = y + ops.reshape(layer.bias, (1, -1) + (1,) * (len(y.shape) - 2))
            else:
                y = y + layer.bias
        return y
    raise ValueError(
        f"The model's output layer {layer.name!r} ({type(layer).__name__}) applies "
        f"{layer.activation.__name__} as its activation, and keras_interp can compute the "
        "pre-activation only for Dense, EinsumDense, convolution and CAMHead layers. Move the activation "
        "into a separate `keras.layers.Softmax()` / `Activation(...)` layer, or pass a callable "
        "`target` that computes the score you want from the model's outputs."
    )


def _identity(x):
    return x


def _logit_parts(model):
    """(trunk, head, kind, nested): logits = head(trunk tensor's value); kind is the squashing
    removed; nested is the inner model when the squashing sits inside a nested classifier.
    trunk is None for models without a graph (subclassed): their outputs are the scores."""
    operation, node = output_node(model)
    if operation is None or len(node.input_tensors) != 1:
        return None, None, None, None
    kind, fused = _layer_squashing(operation)
    if kind is None and isinstance(operation, keras.Model):
        inner = Scorer(operation)
        if inner.activation is not None:
            return node.input_tensors[0], inner._logits, inner.activation, operation
    if kind is None:
        return model.outputs[0], _identity, None, None
    if fused:
        _pre_activation(operation, node.input_tensors[0])  # fail now, not inside a trace
        return node.input_tensors[0], lambda t: _pre_activation(operation, t), kind, None
    return node.input_tensors[0], _identity, kind, None


def _submodel(inputs, outputs):
    """x -> outputs as a function of the graph tensor `inputs` (identity when they coincide)."""
    if outputs is inputs:
        return _identity
    sub = keras.Model(inputs, outputs)
    return lambda x: sub(x, training=False)


def _tapped_outputs(model, chain, out_tensor):
    """x -> (value of the layer at the end of `chain`, value of out_tensor) in model's graph."""
    _, layer = chain[0]
    node = layer_node(model, layer)
    if len(chain) == 1:
        both = keras.Model(model.inputs[0], [node.output_tensors[0], out_tensor])
        return lambda x: both(x, training=False)
    inner = _tapped_outputs(layer, chain[1:], layer.outputs[0])
    pre = _submodel(model.inputs[0], node.input_tensors[0])
    post = _submodel(node.output_tensors[0], out_tensor)

    def run(x):
        tap, y = inner(pre(x))
        return tap, post(y)

    return run


def _tapped_logits(model, chain):
    """x -> (features at the end of `chain`, logits)."""
    trunk, head, _, nested = _logit_parts(model)
    if trunk is None:
        raise ValueError(
            f"Model {model.name!r} has no functional graph (a subclassed model), so its inner "
            "layers cannot be read. Build it with the functional API or keras.Sequential."
        )
    if nested is not None and chain[0][1] is nested and len(chain) > 1:
        # The layer lies inside the nested classifier that also computes the logits.
        inner = _tapped_logits(nested, chain[1:])
        pre = _submodel(model.inputs[0], layer_node(model, nested).input_tensors[0])
        return lambda x: inner(pre(x))
    tapped = _tapped_outputs(model, chain, trunk)

    def run(x):
        features, t = tapped(x)
        return features, head(t)

    return run


class Scorer:
    """Pre-softmax scores of a single-input, single-output Keras model.

    Args:
        model: a built Keras model (Sequential, functional, nested or subclassed).

    Attributes:
        activation: the squashing removed from the output: "softmax", "sigmoid" or None.
        input_shape: the model's input shape with batch dimension, dims may be None.
        num_classes: size of the last output axis for (batch, classes) outputs, else None.

    Subclassed models have no graph to inspect, so their outputs are used as they are: return
    logits from `call`, or pass a callable target.
    """

    def __init__(self, model):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"Expected a keras.Model, received {type(model).__name__}. Load a saved model "
                "with keras_interp.load_model(path) first."
            )
        inputs = getattr(model, "inputs", None)
        if inputs is not None and len(inputs) != 1:
            raise ValueError(
                f"The model has {len(inputs)} inputs ({[t.name for t in inputs]}); keras_interp "
                "explains image models with a single input. Wrap the model in one that takes "
                "the image as its only input and fixes the others."
            )
        outputs = getattr(model, "outputs", None)
        if outputs is not None and len(outputs) != 1:
            raise ValueError(
                f"The model has {len(outputs)} outputs; keras_interp expects a single output. "
                "Build a keras.Model(model.inputs, model.outputs[i]) for the output to explain."
            )
        self.model = model
        trunk, head, self.activation, _ = _logit_parts(model)
        if trunk is None:
            self._logits = lambda x: model(x, training=False)
        else:
            trunk_model = _submodel(model.inputs[0], trunk)
            self._logits = lambda x: head(trunk_model(x))
        self.input_shape = tuple(inputs[0].shape) if inputs else None
        out_shape = tuple(outputs[0].shape) if outputs else None
        self.output_shape = out_shape
        self.num_classes = out_shape[-1] if out_shape is not None and len(out_shape) == 2 else None

    def __call__(self, x):
        """Logits (float32) for a batch of inputs, in inference mode."""
        return ops.cast(self._logits(x), "float32")

    def with_features(self, layer):
        """A function x -> (features of `layer`, logits), both float32, sharing live weights.

        `layer` is a layer name or a "nested/path"; see keras_interp.graph.resolve_layer.
        """
        tapped = _tapped_logits(self.model, resolve_layer(self.model, layer))

        def run(x):
            features, logits = tapped(x)
            return ops.cast(features, "float32"), ops.cast(logits, "float32")

        return run

    def probabilities(self, logits):
        """Re-apply the removed squashing to logits (identity when there was none)."""
        if self.activation == "softmax":
            return ops.softmax(logits, axis=-1)
        if self.activation == "sigmoid":
            return ops.sigmoid(logits)
        return logits


def resolve_target(target, batch_size, num_classes):
    """Normalise `target` to (classes, score_fn).

    classes is an int32 array (batch_size,), -1 meaning "the example's top predicted class";
    score_fn is the user's callable or None.
    """
    if callable(target):
        return np.full((batch_size,), -1, np.int32), target
    if target is None:
        return np.full((batch_size,), -1, np.int32), None
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be None, an int, a sequence of ints or a callable; received {target!r}.")
    if num_classes is None:
        raise ValueError(
            "An integer target needs a model with (batch, classes) outputs; this model's "
            "output is not 2-D. Pass a callable target that maps outputs to one score per example."
        )
    if isinstance(target, numbers.Integral):
        classes = np.full((batch_size,), int(target), np.int64)
    else:
        try:
            classes = np.asarray(target)
        except Exception as exc:  # pragma: no cover - numpy raises many types here
            raise TypeError(f"Could not read target {target!r} as a sequence of ints.") from exc
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
            raise TypeError(
                f"target must be None, an int, a 1-D sequence of ints or a callable; received "
                f"an array of shape {classes.shape} and dtype {classes.dtype}."
            )
        if len(classes) != batch_size:
            raise ValueError(
                f"target has {len(classes)} entries but the batch has {batch_size} examples; "
                "give one class per example, or a single int for all."
            )
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(
            f"target {int(bad[0])} is out of range: the model has {num_classes} classes, "
            f"so targets must lie in [0, {num_classes - 1}]."
        )
    return classes.astype(np.int32), None


def select_scores(logits, classes, score_fn=None):
    """One score per example: the chosen class's logit, or score_fn(logits).

    Returns (scores (B,), classes (B,)) where -1 entries of `classes` were replaced by the
    example's argmax. Runs inside compiled functions; shape errors are raised at trace time.
    """
    if score_fn is not None:
        scores = score_fn(logits)
        shape = tuple(scores.shape)
        batch = logits.shape[0]
        if len(shape) != 1 or (batch is not None and shape[0] is not None and shape[0] != batch):
            raise ValueError(
                f"The callable target must return one score per example, shape ({batch},); "
                f"it returned shape {shape}. Reduce other axes, e.g. "
                "`lambda y: ops.sum(y * mask, axis=(1, 2, 3))`."
            )
        return ops.cast(scores, "float32"), classes
    top = ops.cast(ops.argmax(logits, axis=-1), "int32")
    classes = ops.where(classes < 0, top, classes)
    scores = ops.take_along_axis(logits, classes[:, None], axis=-1)[:, 0]
    return scores, classes

