"""Deconvnet (Zeiler and Fergus, 2014) and guided backpropagation (Springenberg et al., 2015).

Both are the gradient with one change at every ReLU. Where the gradient passes
1[x > 0] * upstream, the deconvnet passes ReLU(upstream) (the forward mask is ignored: the
signal is rectified on its way down, as in a stack of unpooling, rectification and transposed
convolution) and guided backprop passes 1[x > 0] * ReLU(upstream). Max pooling routes the signal
to the recorded maxima and a convolution applies its transpose, which is what the gradient
already does, so nothing else changes.

The rule is put on the ReLU operations themselves (TensorFlow's `Relu` and `Relu6`, which every
Keras ReLU form runs: a fused `activation="relu"`, `ReLU()` layers, `Activation("relu")`,
`keras.ops.relu`, also inside subclassed models) through the graph's gradient override map, in
the compiled function only, around the model's forward pass (not a callable target's). The
user's model is not cloned or modified. Every such op counts, also the ones Keras builds other
functions from: `hard_sigmoid` and `hard_silu` (MobileNetV3's hard-swish) and a `ReLU` with both
a negative slope and a max value or threshold are made of `Relu`/`Relu6` ops, so they get the
rule too. A model that runs its ReLUs inside a nested `tf.function` (a decorated `call`, a
SavedModel) cannot be reached and is refused with a ValueError rather than given the gradient.
"""

import tensorflow as tf

from keras_interp.explainers.chunks import batch_of
from keras_interp.explainers.gradients import GradientExplainer
from keras_interp.layers.deconv_stack import resolve_channels, strongest_activation
from keras_interp.targets import output_names, select_scores

__all__ = ["Deconvnet", "GuidedBackprop", "RELU_RULES", "relu_rule"]


def _deconvnet_relu(op, grad):
    return tf.nn.relu(grad)


def _guided_relu(op, grad):
    return tf.raw_ops.ReluGrad(gradients=tf.nn.relu(grad), features=op.outputs[0])


def _guided_relu6(op, grad):
    return tf.raw_ops.Relu6Grad(gradients=tf.nn.relu(grad), features=op.inputs[0])


# rule -> {TensorFlow op type: registered gradient name}. Relu6 (MobileNet's ReLU(6.)) keeps its
# own forward mask 1[0 < x < 6] under guided backprop.
RELU_RULES = {
    "gradient": {},
    "deconvnet": {"Relu": "KerasInterpDeconvnetRelu", "Relu6": "KerasInterpDeconvnetRelu"},
    "guided": {"Relu": "KerasInterpGuidedRelu", "Relu6": "KerasInterpGuidedRelu6"},
}
for _name, _fn in (
    ("KerasInterpDeconvnetRelu", _deconvnet_relu),
    ("KerasInterpGuidedRelu", _guided_relu),
    ("KerasInterpGuidedRelu6", _guided_relu6),
):
    try:
        tf.RegisterGradient(_name)(_fn)
    except KeyError:  # registered by an earlier import of this module (a reload)
        pass


def _functions_called(node_def):
    """Names of the functions a node runs (a nested tf.function, a SavedModel's, a loop body)."""
    names = []
    for value in node_def.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names += [f.name for f in value.list.func]
    return names


def _refuse_hidden_relus(graph, ops, model):
    """Raise if a ReLU runs inside a function called from `ops`: the override map cannot reach
    it there, and the map would silently be the plain gradient."""
    pending = [name for op in ops for name in _functions_called(op.node_def)]
    if not pending:
        return
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        for node in library[name].node_def:
            if node.op in RELU_RULES["guided"]:
                raise ValueError(
                    f"Model {model.name!r} runs ReLUs inside a nested tf.function or SavedModel function "
                    f"({name!r}), where the deconvnet / guided-backprop rule cannot be applied: the result "
                    "would silently be the plain gradient. Remove the @tf.function decorator from the "
                    "model's call (Keras compiles it anyway), or rebuild the model from Keras layers."
                )
            pending += _functions_called(node)


def relu_rule(rule):
    """Context manager, inside a compiled function: ReLUs built under it backpropagate by `rule`.

    Only `tf.gradients` honours it (a GradientTape looks gradients up by op type).
    """
    return tf.compat.v1.get_default_graph().gradient_override_map(RELU_RULES[rule])


class _ReluRuleExplainer(GradientExplainer):
    """The gradient with `rule` at every ReLU, from a class score or one channel of `layer`."""

    rule = "gradient"

    def __init__(self, model, layer=None, batch_size=128, output=None, jit_compile=None):
        if layer is not None and output is None and len(output_names(model) or ()) > 1:
            output = 0  # a channel of `layer` is projected, not an output's score: any output runs it
        super().__init__(model, batch_size=batch_size, output=output, jit_compile=jit_compile)
        self.site = None if layer is None else self.scorer.site(layer)
        self.layer = None if self.site is None else self.site.path
        if self.site is not None:
            self._channels = self.site.shape[-1]
            if len(self.site.shape) < 2 or self._channels is None:
                raise ValueError(
                    f"Layer {self.layer!r} has output shape {self.site.shape}; projecting a channel "
                    "needs outputs of shape (batch, ..., channels) with a known channel count."
                )
            self._features = self.scorer.with_features(self.site)


    def _prepare(self, inputs, target):
        if self.site is None:
            return super()._prepare(inputs, target)
        x = self._check(inputs)
        return x, resolve_channels(target, batch_of(x), self._channels, self.layer), None

    def _attribution(self, x, chosen, score_fn):
        graph = tf.compat.v1.get_default_graph()
        first = len(graph.get_operations())
        # Only the model runs under the rule: a callable target's own relu keeps its gradient.
        with relu_rule(self.rule):
            start = self.scorer(x) if self.site is None else self._features(x)[0]
        _refuse_hidden_relus(graph, graph.get_operations()[first:], self.model)
        if self.site is None:
            start, _ = select_scores(start, chosen, score_fn)
            signal = None
        else:
            signal, _ = strongest_activation(tf.cast(start, tf.float32), chosen)
            signal = tf.cast(signal, start.dtype)
        grads = tf.gradients(start, tf.nest.flatten(x), grad_ys=signal, unconnected_gradients="zero")
        return (tuple(grads) if isinstance(x, tuple) else grads[0],)


_DOC = """{title}

    At every ReLU the signal is {rule_text}. Every ReLU form counts (fused `activation="relu"`,
    `ReLU` layers, `Activation("relu")`, `keras.ops.relu`, ReLU6), in any model the gradient
    explainers take; other activations pass their ordinary gradient. With no ReLU in the model
    the result is the plain gradient.

    `layer=None`: from the pre-softmax score of `target` (None, an int, one per example or a
    callable, as for every explainer). `layer="conv3"` (or "backbone/conv3"): from one channel of
    that layer, `target` being its index (an int, one per example, or None for each image's most
    active channel); as in Zeiler and Fergus, the channel's single strongest activation is kept,
    everything else zeroed, and that is projected down to the input. A channel that never fires
    on an image gives a zero projection; on a layer without a ReLU the strongest activation is
    the largest signed value.

    `attribute` gives the signed projection (B, H, W, C), or (B, L, C) and (B, D, H, W, C)
    for signals and volumes, one per input for several inputs; `explain` its max |.| over
    channels.

    Args:
        model: Keras model.
        layer: None, or the layer (name or "nested/path") whose channel to project.
        batch_size: most images per forward pass.
        output: the output to explain (name or index), for a model with several; not needed
            with `layer` (a channel is projected, not an output's score).
        jit_compile: None, True, False or "auto" (XLA; see keras_interp.explainers.base.Explainer).

    Example:
        >>> maps = ki.{name}(model).explain(images)                    # from the top class
        >>> proj = ki.{name}(model, layer="conv2").attribute(images, target=5)
    """


class Deconvnet(_ReluRuleExplainer):
    rule = "deconvnet"
    __doc__ = _DOC.format(
        title="Deconvnet projection (Zeiler and Fergus, 2014).",
        rule_text="rectified, ReLU(upstream), whatever the forward pass did there (the forward mask "
        "is ignored)",
        name="Deconvnet",
    )


class GuidedBackprop(_ReluRuleExplainer):
    rule = "guided"
    __doc__ = _DOC.format(
        title="Guided backpropagation (Springenberg et al., 2015).",
        rule_text="rectified and masked by the forward pass, 1[x > 0] * ReLU(upstream) (for ReLU6 "
        "the mask is 1[0 < x < 6])",
        name="GuidedBackprop",
    )
