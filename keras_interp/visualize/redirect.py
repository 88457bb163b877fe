"""The redirected ReLU gradient of Lucid (Olah et al., 2017), for the first steps of an ascent.

A start image (grey, or a spectrum of small noise) can leave whole ReLU maps off for an image:
the plain gradient through them is zero, and the units behind them never move. For an image
whose plain gradient through a ReLU is all zero, the redirected rule passes the upstream
gradient where the unit is on (x >= 0) or where it would push the unit up (the gradient of the
score, which the ascent climbs, is > 0 there), and blocks only what would push an off unit
further down. An image with any plain gradient through that ReLU keeps the plain one. Relu6
(MobileNet's ReLU(6.)) gets the same rule at both ends: an off unit above 6 passes what pushes it
down.

The rule is put on TensorFlow's `Relu` and `Relu6` operations, which every Keras ReLU form runs
(a fused `activation="relu"`, `ReLU()` layers, `Activation("relu")`, `keras.ops.relu`, also in
nested and subclassed models), by the graph's gradient override map while the forward pass is
built (as Deconvnet and guided backprop do, see keras_interp.explainers.deconv): the user's
model is neither cloned nor changed, and nothing is replaced node by node. Whether the rule is on
is fixed when the gradient is built (True), or a boolean tensor (e.g. `step < 16`) that
switches a conditional at every ReLU; when it is off the gradient is TensorFlow's own
`ReluGrad` / `Relu6Grad`, bit for bit. `ParameterizedAscent` runs its redirected steps and its
plain ones as two compiled loops instead: on the reference CNN the conditionals measured up to
a fifth of a forward+backward's CPU time even while off (roughly: the machine was busy).

Only `tf.gradients` honours the override map (a GradientTape looks gradients up by op type), so
engines call `gradients(...)` below inside `redirected_relus(switch)`. A ReLU that runs inside a
nested tf.function (a decorated `call`, a SavedModel's function) is out of the map's reach and
keeps its plain gradient: the ascent then behaves as without the rule.
"""

import contextlib
import threading

import tensorflow as tf

__all__ = ["redirected_relus", "gradients", "redirected_relu_gradient"]

_STATE = threading.local()


def _any_per_image(values):
    """(N,) bool: whether each image's slice of `values` (N, ...) has any non-zero entry."""
    nonzero = tf.not_equal(values, 0)
    return tf.reduce_any(nonzero, axis=list(range(1, len(values.shape)))) if len(values.shape) > 1 else nonzero


def redirected_relu_gradient(x, grad, plain, high=None):
    """The redirected gradient of relu (or of relu6 with `high=6`) at pre-activation `x` for the
    upstream `grad` (of a score being maximized), given the plain gradient `plain`.

    Per image (axis 0): the plain gradient if any of it is non-zero, else `grad` with the
    entries that would push an off unit further off set to zero."""
    def redirected():
        # An off unit below 0 passes only what pushes it up (max(grad, 0)); above `high`, only
        # what pushes it down.
        passed = tf.where(x < 0, tf.maximum(grad, 0), grad)
        return passed if high is None else tf.where(x > high, tf.minimum(grad, 0), passed)

    if len(x.shape) < 2:  # no batch axis to decide per image on: decide on the whole tensor
        return tf.where(tf.reduce_any(tf.not_equal(plain, 0)), plain, redirected())
    alive = _any_per_image(plain)
    # Where every image has some plain gradient (the usual case once a model sees anything),
    # the redirected gradient is not computed at all (built inside the branch, not captured by it).
    return tf.cond(tf.reduce_all(alive), lambda: plain, lambda: tf.where(
        tf.reshape(alive, [-1] + [1] * (len(x.shape) - 1)), plain, redirected()))


def _switch():
    return getattr(_STATE, "switch", None)


def _rule(op, grad, plain, high=None):
    switch = _switch()
    if switch is None or op.inputs[0].shape.rank is None:
        return plain
    if switch is True:
        return redirected_relu_gradient(op.inputs[0], grad, plain, high)
    # A cond, not a where: while the switch is off only the plain gradient is computed.
    return tf.cond(switch, lambda: redirected_relu_gradient(op.inputs[0], grad, plain, high), lambda: plain)


def _relu_grad(op, grad):
    return _rule(op, grad, tf.raw_ops.ReluGrad(gradients=grad, features=op.outputs[0]))


def _relu6_grad(op, grad):
    return _rule(op, grad, tf.raw_ops.Relu6Grad(gradients=grad, features=op.inputs[0]), high=6.0)


_OVERRIDES = {"Relu": "KerasInterpRedirectedRelu", "Relu6": "KerasInterpRedirectedRelu6"}
for _name, _fn in (("KerasInterpRedirectedRelu", _relu_grad), ("KerasInterpRedirectedRelu6", _relu6_grad)):
    try:
        tf.RegisterGradient(_name)(_fn)
    except KeyError:  # registered by an earlier import of this module (a reload)
        pass


@contextlib.contextmanager
def redirected_relus(switch=True):
    """Context manager, inside a compiled function: the ReLUs built under it, and the gradients
    taken under it with `gradients`, follow the redirected rule: always (switch=True), or while
    the boolean scalar tensor `switch` is true and the plain gradient otherwise (a conditional
    at every ReLU, traced once). The forward values are unchanged."""
    if tf.executing_eagerly():
        raise RuntimeError("redirected_relus works inside a tf.function (the gradient override map is a graph's).")
    previous = _switch()
    _STATE.switch = True if switch is True else tf.convert_to_tensor(switch, tf.bool)
    try:
        with tf.compat.v1.get_default_graph().gradient_override_map(_OVERRIDES):
            yield
    finally:
        _STATE.switch = previous


def gradients(ys, xs):
    """tf.gradients of sum(ys) w.r.t. `xs` (one tensor), zero where unconnected (the rule is read
    from the ops' override attribute, which only tf.gradients honours)."""
    return tf.gradients(ys, xs, unconnected_gradients="zero")[0]
