"""Turn a model and a `target` into one pre-softmax score per example.

Explanations are computed on logits, not probabilities: the gradient of a softmax output
mixes in every other class and saturates for confident predictions. `Scorer` finds the
squashing at the end of the model however it is written: fused into the last layer
(`activation="softmax"`, `tf.nn.softmax`, "sigmoid"), a `Softmax` / `Activation` layer, or a
`keras.ops.softmax` / `keras.activations.sigmoid` operation node; followed by shape-only layers
(Reshape, Flatten, Identity, Dropout) or not; at the end of a nested classifier or not.
Activations are recognised by identity, not by name. The logits are then computed by running
the model's own graph with that one node replaced (see keras_interp.graph.run), from the live
weights; the user's model is never modified, not even temporarily.

A single sigmoid unit (binary classifier) is scored as two classes with logits [-z, z]: class 1
is the positive unit's logit z, class 0 is -z, so `target=None` explains the predicted class
with the sign of the prediction, and the sigmoid of each column is that class's probability.
"""

import numbers
import warnings
import weakref

import numpy as np
import keras
import tensorflow as tf
from keras import ops

from keras_interp.compat import ops_class
from keras_interp.graph import Cursor, find_site, graph_of, run

__all__ = ["Scorer", "inner_scorer", "resolve_target", "select_scores", "squashing", "is_shape_only", "SOFTMAX_FUNCTIONS", "SIGMOID_FUNCTIONS"]


def _existing(*candidates):
    return tuple(c for c in candidates if c is not None)


def _ops_class(name):
    return ops_class(name)


# Recognised by identity: `tf.nn.softmax.__name__` is "softmax_v2", and a user function called
# "softmax" need not be one.
SOFTMAX_FUNCTIONS = _existing(
    keras.activations.softmax, keras.activations.log_softmax, keras.ops.softmax, keras.ops.log_softmax,
    tf.nn.softmax, tf.nn.log_softmax, tf.math.softmax, tf.math.log_softmax,
)
SIGMOID_FUNCTIONS = _existing(keras.activations.sigmoid, keras.ops.sigmoid, tf.nn.sigmoid, tf.math.sigmoid)
_LINEAR_FUNCTIONS = _existing(keras.activations.linear, None)
_SOFTMAX_OPS = _existing(_ops_class("Softmax"), _ops_class("LogSoftmax"))
_SIGMOID_OPS = _existing(_ops_class("Sigmoid"))
# Layers and operations that only move values around: the squashing may sit before them.
_SHAPE_ONLY = _existing(
    keras.layers.Reshape, keras.layers.Flatten, keras.layers.Identity, keras.layers.Dropout,
    keras.layers.ActivityRegularization, _ops_class("Reshape"), _ops_class("Squeeze"),
    _ops_class("ExpandDims"),
)
# Where the logits cannot be reached from outside.
_OPAQUE = _existing(keras.layers.Lambda, getattr(keras.layers, "TFSMLayer", None))


def _activation_kind(activation):
    """'softmax', 'sigmoid', None (identity) or 'other' for an activation function."""
    if any(activation is f for f in _LINEAR_FUNCTIONS):
        return None
    if any(activation is f for f in SOFTMAX_FUNCTIONS):
        return "softmax"
    if any(activation is f for f in SIGMOID_FUNCTIONS):
        return "sigmoid"
    return "other"


def is_shape_only(operation):
    """A layer or operation that only moves values (Reshape, Flatten, Identity, Dropout...)."""
    return isinstance(operation, _SHAPE_ONLY)


def squashing(operation):
    """The squashing an operation applies: (kind, fused) or (None, False)."""
    if isinstance(operation, keras.layers.Softmax) or isinstance(operation, _SOFTMAX_OPS):
        return "softmax", False
    if isinstance(operation, _SIGMOID_OPS):
        return "sigmoid", False
    if isinstance(operation, keras.layers.Activation):
        kind = _activation_kind(operation.activation)
        return (kind, False) if kind in ("softmax", "sigmoid") else (None, False)
    if not isinstance(operation, keras.Model):
        kind = _activation_kind(getattr(operation, "activation", None))
        if kind in ("softmax", "sigmoid"):
            return kind, True
    return None, False


def _unsupported_activation(layer):
    return ValueError(
        f"The model's output layer {layer.name!r} ({type(layer).__name__}) applies "
        f"{getattr(layer.activation, '__name__', layer.activation)} as its activation, and keras_interp "
        "can compute the pre-activation only for Dense, EinsumDense, convolution and CAMHead layers. "
        "Move the activation into a separate `keras.layers.Softmax()` / `Activation(...)` layer, or "
        "pass a callable `target` that computes the score you want from the model's outputs."
    )


def _pre_activation(layer, x):
    """`layer(x)` without its fused activation, computed from the layer's live variables.

    Runs in the layer's compute dtype (float16 under mixed precision), as the layer itself
    would. Layers of other types can take part by defining `pre_activation(inputs)`.
    """
    if callable(getattr(layer, "pre_activation", None)):
        return layer.pre_activation(x)
    dtype = layer.compute_dtype
    x = ops.cast(x, dtype)

    def var(v):
        return ops.cast(v, dtype)

    if isinstance(layer, keras.layers.Dense):
        y = ops.matmul(x, var(layer.kernel))
        return y + var(layer.bias) if layer.use_bias else y
    if isinstance(layer, keras.layers.EinsumDense):
        y = ops.einsum(layer.equation, x, var(layer.kernel))
        return y + var(layer.bias) if layer.bias is not None else y
    if _is_convolution(layer):
        y = layer.convolution_op(x, var(layer.kernel))
        if layer.use_bias:
            if layer.data_format == "channels_first":
                y = y + ops.reshape(var(layer.bias), (1, -1) + (1,) * (len(y.shape) - 2))
            else:
                y = y + var(layer.bias)
        return y
    raise _unsupported_activation(layer)


class _Squashing:
    """Where the final softmax/sigmoid is and how to compute the node without it."""

    def __init__(self, site, kind, fused):
        self.site, self.kind, self.fused = site, kind, fused

    def replacement(self):
        layer = self.site.operation
        if self.fused:
            return lambda *args, **kwargs: _pre_activation(layer, args[0])
        return lambda *args, **kwargs: args[0]


def find_squashing(model, output=0):
    """(_Squashing or None, opaque): the final softmax/sigmoid of output number `output`,
    walking back over shape-only layers and into nested models; `opaque` is the operation that
    hides the logits, if any."""
    cursor = Cursor.at_output(model, output)
    if cursor is None:
        return None, model
    while True:
        site = cursor.producer()
        if site is None:
            return None, None
        operation = site.operation
        if is_shape_only(operation) and len(site.nodes[-1].input_tensors) == 1:
            cursor = Cursor.input_of(site)
            continue
        kind, fused = squashing(operation)
        if kind is not None:
            if fused:
                _check_pre_activation(operation)  # fail now, not inside a trace
            return _Squashing(site, kind, fused), None
        return None, (operation if _opaque(operation) else None)


def _opaque(operation):
    """Whether an output operation may hide a softmax: a Lambda, a TFSMLayer, a subclassed
    model, or a layer keras_interp does not know (Keras's own linear layers cannot)."""
    if isinstance(operation, _OPAQUE):
        return True
    if isinstance(operation, keras.Model):
        return graph_of(operation) is None
    return not type(operation).__module__.startswith("keras.")


def _check_pre_activation(layer):
    """Fail at construction, not inside a trace, for fused activations we cannot undo."""
    if not (callable(getattr(layer, "pre_activation", None)) or _is_convolution(layer)
            or isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))):
        raise _unsupported_activation(layer)


def _is_convolution(layer):
    return hasattr(layer, "convolution_op") and hasattr(layer, "kernel")


_WARNED = weakref.WeakSet()
_PROBED = weakref.WeakKeyDictionary()  # model -> output shape seen on a first batch
_PROBABILITY_OUTPUTS = weakref.WeakSet()  # models whose unreachable softmax was seen in their outputs


def _warn_once(model, message):
    try:
        if model in _WARNED:
            return
        _WARNED.add(model)
    except TypeError:  # pragma: no cover - models are weak-referenceable
        pass
    warnings.warn(message, stacklevel=4)


def _keys_of(struct, tensors):
    """The dict keys a functional model was built with, in the order of `tensors` (its flat
    inputs or outputs, the order its graph uses), or None when it was not built from a dict."""
    if isinstance(struct, dict):
        keys = {id(t): k for k, t in struct.items()}
        if all(id(t) in keys for t in tensors):
            return [keys[id(t)] for t in tensors]
    return None


def input_names(model):
    """Names of the model's inputs in `model.inputs` order: the keys of a dict of inputs, else
    the Input layers' names."""
    return _keys_of(getattr(model, "_inputs_struct", None), model.inputs) or [t.name for t in model.inputs]


def output_names(model):
    """Names of a functional model's outputs in `model.outputs` order, or None."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None
    keys = _keys_of(getattr(model, "_outputs_struct", None), outputs)
    if keys:
        return keys
    names = getattr(model, "output_names", None)
    if names and len(names) == len(outputs):
        return list(names)
    return [t._keras_history[0].name for t in outputs]


def choose_output(model, output, names):
    """The index of the output to explain: `output` as an index or a name; None stands for the
    only output (an error lists the outputs when there are several)."""
    count = None if names is None else len(names)
    if output is None:
        if count is not None and count > 1:
            raise ValueError(
                f"Model {model.name!r} has {count} outputs {names}; pass output= (a name or an index) "
                f"to choose the one to explain, e.g. output=0 or output={names[0]!r}."
            )
        return None
    if isinstance(output, (bool, np.bool_)) or not isinstance(output, (numbers.Integral, str)):
        raise TypeError(f"output must be an output name or index; received {output!r}.")
    if isinstance(output, str):
        if names is None or output not in names:
            raise ValueError(
                f"Model {model.name!r} has no output named {output!r}; its outputs are {names}."
                if names is not None else
                f"Model {model.name!r} does not declare output names (a subclassed model); pass "
                "output= as an index into what it returns."
            )
        if names.count(output) > 1:
            raise ValueError(
                f"Model {model.name!r} has {names.count(output)} outputs named {output!r} (one layer ends several "
                f"heads): {names}; pass output= as an index."
            )
        return names.index(output)
    index = int(output)
    if count is not None and not -count <= index < count:
        raise ValueError(f"output={index} is out of range: model {model.name!r} has {count} outputs {names}.")
    return index % count if count is not None else index


def inner_scorer(model, output=None):
    """A Scorer for work that reads an inner layer and scores no output (a channel's projection
    or image, Deep Dream on given layers): `output` when given, else the model's first output,
    so a model with several outputs needs no output= there."""
    if output is None and isinstance(model, keras.Model) and len(output_names(model) or ()) > 1:
        output = 0
    return Scorer(model, output=output)


class Scorer:
    """Pre-softmax scores of one output of a Keras model.

    Args:
        model: a built Keras model (Sequential, functional, nested or subclassed), with one or
            several inputs; the scorer is called with a list of them in `model.inputs` order.
        output: which output to score, a name or an index; required when the model has several.
            The softmax or sigmoid removed is that output's own.

    Attributes:
        activation: the squashing removed from the output: "softmax", "sigmoid" or None.
        binary: True for a single sigmoid unit, scored as two classes [-z, z].
        input_shape: the model's input shape with batch dimension, dims may be None (None for
            a model with several inputs: see input_shapes and input_names).
        output_index: the explained output's index, None for a single-output model.
        num_classes: number of classes of a (batch, classes) output (2 for a binary sigmoid
            unit, 1 for a (batch,) output), else None.

    Where the logits cannot be reached (a subclassed model, a Lambda or a TFSMLayer at the end
    of the model) the outputs are used as they are; if a first batch shows rows that sum to 1,
    a warning says so once: return logits from the model, or pass a callable target.
    """

    def __init__(self, model, output=None):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"Expected a keras.Model, received {type(model).__name__}. Load a saved model "
                "with keras_interp.load_model(path) first."
            )
        inputs = getattr(model, "inputs", None)
        outputs = getattr(model, "outputs", None)
        if isinstance(model, keras.Sequential) and graph_of(model) is None:
            raise ValueError(
                f"The Sequential model {model.name!r} is not built yet, so its layers have no graph. "
                "Start it with keras.Input(shape), call model.build((None, height, width, channels)), "
                "or call it once on a batch."
            )
        self.output_names = output_names(model)
        self.output_index = choose_output(model, output, self.output_names)
        self.model = model
        self._graph = graph_of(model)
        squashing, self._opaque = find_squashing(model, self.output_index or 0)
        self.activation = squashing.kind if squashing is not None else None
        self._replace = {squashing.site.nodes: squashing.replacement()} if squashing is not None else {}
        self.input_shapes = [tuple(t.shape) for t in inputs] if inputs else None
        self.input_names = input_names(model) if inputs else None
        # The single input's shape; None for a model with several inputs (see input_shapes).
        self.input_shape = self.input_shapes[0] if inputs and len(inputs) == 1 else None
        self._set_output_shape(tuple(outputs[self.output_index or 0].shape) if outputs else _PROBED.get(model))
        # Outputs that may be probabilities in disguise are looked at once per model.
        self._probed = self.activation is not None or self._opaque is None or model in _PROBED

    def _set_output_shape(self, out_shape):
        self.output_shape = out_shape
        rank = None if out_shape is None else len(out_shape)
        self.binary = self.activation == "sigmoid" and (rank == 1 or (rank == 2 and out_shape[-1] == 1))
        if self.binary:
            self.num_classes = 2
        elif rank == 2:
            self.num_classes = out_shape[-1]
        elif rank == 1:
            self.num_classes = 1
        else:
            self.num_classes = None

    def logits_shape(self):
        """The shape of what __call__ returns (and a callable target receives), batch None."""
        if self.output_shape is None:
            return None
        if self.binary:
            return (None, 2)
        if len(self.output_shape) == 1:
            return (None, 1)
        return self.output_shape

    def signature(self):
        """What a compiled function built on this scorer depends on, beyond the weights.

        A Sequential model whose layers change gets a new inner graph, hence a new signature.
        """
        graph = None if self._graph is None else ("self" if self._graph is self.model else self._graph)
        nodes = tuple(map(id, next(iter(self._replace), ())))
        return (graph, nodes, self.activation, self.binary, self.num_classes, self.output_shape, self.output_index)

    def _as_logits(self, output):
        logits = ops.cast(output, "float32")
        if len(logits.shape) == 1:
            logits = logits[:, None]
        if self.binary:
            logits = ops.concatenate([-logits, logits], axis=-1)
        return logits

    def _pick(self, outputs):
        """The explained output among a multi-output model's outputs.

        A functional model's graph gives them as a list in `output_names` order; a subclassed
        model (which declares no names) may return a list, a tuple or a dict, indexed in its order."""
        if not isinstance(outputs, (list, tuple, dict)):
            return outputs
        keys = list(outputs) if isinstance(outputs, dict) else None
        values = list(outputs.values()) if keys is not None else outputs
        if self.output_index is not None:
            return values[self.output_index]
        if len(values) != 1:
            raise ValueError(
                f"Model {self.model.name!r} returns {len(values)} outputs; pass output= (an index"
                f"{', or one of ' + str(keys) if keys else ''}) to choose the one to explain."
            )
        return values[0]

    def _run(self, x, taps=()):
        if isinstance(x, (list, tuple)) and len(x) == 1:
            x = x[0]
        if self._graph is None:
            return self._pick(self.model(x, training=False)), []
        output, found = run(self.model, x, taps, self._replace)
        return self._pick(output), found

    def __call__(self, x):
        """Logits (float32) for a batch of inputs, in inference mode."""
        return self._as_logits(self._run(x)[0])

    def with_replaced(self, replace):
        """A function x -> logits (float32) with the nodes of `replace` ({site.nodes: fn(*args,
        **kwargs)}) computed by fn, besides the scorer's own replacement (the squashing removed);
        for a functional model."""

        def logits(x):
            if isinstance(x, (list, tuple)) and len(x) == 1:
                x = x[0]
            output, _ = run(self.model, x, (), {**self._replace, **replace})
            return self._as_logits(self._pick(output))

        return logits

    def site(self, layer):
        """A graph Site from a layer name, a "nested/path" or a Site."""
        return layer if hasattr(layer, "nodes") else find_site(self.model, layer)

    def with_features(self, layer):
        """A function x -> (features of `layer`, logits) sharing the model's live weights.

        The features are the graph's own tensor, in the layer's dtype (float16 under mixed
        precision), so gradients can be taken with respect to them; logits are float32.
        """
        site = self.site(layer)

        def features_and_logits(x):
            output, (features,) = self._run(x, [site])
            return features, self._as_logits(output)

        return features_and_logits

    def probabilities(self, logits):
        """The class probabilities the logits stand for: the removed squashing re-applied; the
        outputs themselves when a first batch showed them to be probabilities behind a softmax
        that could not be removed (a subclassed model, a Lambda); the softmax for a logit model
        with several classes; None when they are not defined (one unsquashed score per example,
        or no class axis)."""
        if self.activation == "softmax":
            return ops.softmax(logits, axis=-1)
        if self.activation == "sigmoid":
            return ops.sigmoid(logits)
        if self.model in _PROBABILITY_OUTPUTS:  # a softmax we could not remove: outputs are probabilities
            return logits
        if logits.shape[-1] is not None and logits.shape[-1] > 1 and len(logits.shape) == 2:
            return ops.softmax(logits, axis=-1)
        return None

    def confidence(self, logits, classes, score_fn=None):
        """The target's confidence per example, as faithfulness measures and Score-CAM read it:
        the callable target's value, else the class's probability (see `probabilities`), or
        its logit when the outputs define no probabilities (one unsquashed score per example).

        `classes` holds a class per example (no -1 entries: resolve them first, see
        `select_scores`). Runs inside compiled functions.
        """
        if score_fn is not None:
            return select_scores(logits, classes, score_fn)[0]
        probabilities = self.probabilities(logits)
        if probabilities is None:
            probabilities = logits
        return ops.take_along_axis(probabilities, ops.cast(classes, "int32")[:, None], axis=-1)[:, 0]

    def check_outputs(self, x):
        """Look once per model at the outputs of a first batch when they may hide a softmax:
        learn the output shape of a model that does not declare it (subclassed), and warn once
        when rows of non-negative values sum to 1 although no softmax could be removed."""
        if self._probed:
            return
        self._probed = True
        y = np.asarray(self._as_logits(self._run(x)[0]))
        raw_rank = len(self.output_shape) if self.output_shape is not None else y.ndim
        if self.output_shape is None:
            self._set_output_shape((None,) + y.shape[1:raw_rank])
        try:
            _PROBED[self.model] = self.output_shape
        except TypeError:  # pragma: no cover - models are weak-referenceable
            pass
        if y.ndim == 2 and y.shape[1] > 1 and (y >= 0).all() and np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
            try:
                _PROBABILITY_OUTPUTS.add(self.model)
            except TypeError:  # pragma: no cover - models are weak-referenceable
                pass
            where = f"a {type(self._opaque).__name__}"
            _warn_once(self.model, (
                f"The outputs of model {self.model.name!r} look like probabilities (each row sums to 1), "
                f"but the softmax is inside {where}, so keras_interp cannot compute the logits and will "
                "explain probabilities, which saturate. Return logits from the model (move the softmax "
                "into a separate keras.layers.Softmax layer at the end), or pass a callable target, e.g. "
                "`target=lambda p: keras.ops.log(p[:, k])` for class k."
            ))


def resolve_target(target, batch_size, num_classes, output_shape=None):
    """Normalise `target` to (classes, score_fn).

    classes is an int32 array (batch_size,), -1 meaning "the example's top predicted class";
    score_fn is the user's callable or None. `output_shape`, when known, lets target=None be
    refused for outputs that have no class axis (segmentation maps).
    """
    if callable(target):
        return np.full((batch_size,), -1, np.int32), target
    if target is None:
        if num_classes is None and output_shape is not None:
            raise ValueError(
                f"The model's output has shape {tuple(output_shape)}, not (batch, classes), so there is "
                "no top class to explain. Pass a callable target that maps the outputs to one score "
                "per example, e.g. `target=lambda y: keras.ops.sum(y[..., k] * mask, axis=(1, 2))`."
            )
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



def top_classes(scorer, x, batch_size=128):
    """(B,) int64: each example's top class under `scorer` (its logits' argmax), run on slices of
    at most `batch_size` examples; None when the outputs have no class axis (B, classes). Fixing
    target=None to these lets a measure keep the clean input's class on perturbed copies."""
    logits = np.concatenate([np.asarray(scorer(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])
    return logits.argmax(axis=1).astype(np.int64) if logits.ndim == 2 else None
