"""Deconvnet, guided backprop and DeconvStack against hand-derived references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp.layers import DeconvStack

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4, 4, 2)).astype("float32")


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.h = keras.layers.Dense(6, name="h")
        self.o = keras.layers.Dense(3, name="o")

    def call(self, x):
        return self.o(keras.ops.relu(self.h(self.flat(x))))


def _two_layer(form):
    """x -> Dense W -> ReLU (in the given form) -> Dense V: score_k = V_k . relu(W x + b)."""
    keras.utils.set_random_seed(0)
    if form == "subclassed":
        model = SubclassedNet()
        model(X)
        return model, model.h, model.o
    inputs = keras.Input((4, 4, 2))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(6, activation="relu" if form == "fused" else None, name="h")
    h = dense(flat)
    h = {
        "fused": lambda t: t,
        "layer": keras.layers.ReLU(),
        "activation": keras.layers.Activation("relu"),
        "op": keras.ops.relu,
        "relu6": keras.layers.ReLU(max_value=6.0),
        "none": lambda t: t,
    }[form](h)
    head = keras.layers.Dense(3, activation="softmax", name="o")
    return keras.Model(inputs, head(h)), dense, head


@pytest.mark.parametrize("form", ["fused", "layer", "activation", "op", "subclassed", "relu6"])
def test_three_relu_rules_against_hand_computation(form):
    model, dense, head = _two_layer(form)
    w, b = dense.get_weights()
    w = w * 4 if form == "relu6" else w  # some units above 6, so ReLU6's upper gate matters
    dense.set_weights([w, b])
    v = head.get_weights()[0][:, 1][None]  # upstream signal at the ReLU for class 1
    pre = X.reshape(3, -1) @ w + b
    on = (pre > 0) & (pre < 6) if form == "relu6" else pre > 0
    assert on.any() and (~on).any() and (v < 0).any() and (v > 0).any()
    want = {
        ki.Deconvnet: np.maximum(v, 0) @ w.T,  # W^T ReLU(v)
        ki.GuidedBackprop: (np.maximum(v, 0) * on) @ w.T,  # W^T (ReLU(v) 1[Wx > 0])
        ki.Saliency: (v * on) @ w.T,  # W^T (v 1[Wx > 0]): the gradient
    }
    for cls, expected in want.items():
        got = cls(model).attribute(X, target=1).reshape(3, -1)
        np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), atol=1e-5, err_msg=cls.__name__)
    assert not np.allclose(want[ki.Deconvnet], want[ki.GuidedBackprop])


def test_without_relu_all_three_equal_the_gradient():
    model, _, _ = _two_layer("none")
    grad = ki.Saliency(model).attribute(X)
    for cls in (ki.Deconvnet, ki.GuidedBackprop):
        np.testing.assert_allclose(cls(model).attribute(X), grad, atol=1e-6)


def _features(t):
    t = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(t)
    t = keras.layers.MaxPooling2D(3, 2, padding="same", name="p1")(t)
    t = keras.layers.Conv2D(5, (2, 3), strides=2, padding="same", name="c2")(t)
    t = keras.layers.BatchNormalization(name="bn")(t)
    t = keras.layers.ReLU(name="r2")(t)
    t = keras.layers.Dropout(0.5)(t)
    t = keras.layers.ZeroPadding2D(((1, 0), (0, 2)), name="pad")(t)
    t = keras.layers.Conv2D(6, 2, name="c3")(t)
    t = keras.layers.Activation("relu", name="r3")(t)
    return keras.layers.MaxPooling2D(2, name="p3")(t)


def _conv_net(nested=False):
    """conv-relu, 3/2 'same' pooling, strided even-kernel conv, BN, ReLU, conv, pool; nested:
    behind a Rescaling layer inside a "backbone" model."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((13, 11, 3))
    if nested:
        backbone_in = keras.Input((13, 11, 3))
        f = keras.Model(backbone_in, _features(backbone_in), name="backbone")(keras.layers.Rescaling(0.5)(inputs))
    else:
        f = _features(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(f)))
    bn = model.get_layer("backbone").get_layer("bn") if nested else model.get_layer("bn")
    bn.set_weights([RNG.uniform(0.5, 2, 5), RNG.normal(size=5), RNG.normal(size=5), RNG.uniform(0.5, 2, 5)])
    return model


IMAGES = RNG.uniform(size=(4, 13, 11, 3)).astype("float32")


@pytest.mark.parametrize("layer", ["backbone/c1", "backbone/p1", "backbone/c2", "backbone/r2", "backbone/r3"])
def test_deconv_stack_equals_deconvnet_from_a_channel(layer):
    model = _conv_net(nested=True)
    stack = DeconvStack.from_model(model, layer)
    for channel in (1, None, [0, 1, 2, 3]):
        got = stack.project(IMAGES, channel=channel)
        want = ki.Deconvnet(model, layer=layer).attribute(IMAGES, target=channel)
        assert got.shape == IMAGES.shape and np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max())


def test_deconv_stack_call_with_features_and_switches_and_live_kernels():
    model = _conv_net(nested=True)
    stack = DeconvStack.from_model(model, "backbone/r3")
    features, switches = stack.record(IMAGES)
    assert features.shape == (4, 4, 4, 6) and len(switches) == 1  # p1 only; p3 is above r3
    image = stack([features, *switches])
    assert image.shape == IMAGES.shape
    # Kernels are shared, not copied: a change to the model shows in the stack.
    conv = model.get_layer("backbone").get_layer("c1")
    conv.kernel.assign(conv.kernel * 2.0)
    np.testing.assert_allclose(stack([features, *switches]), 2.0 * np.asarray(image), rtol=1e-5, atol=1e-6)
    assert any(w is conv.kernel for w in stack.weights)


def test_zeiler_fergus_signal_is_the_single_strongest_activation():
    """With no ReLU below the layer, the projection is value * d f[peak, c] / d x."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6, 6, 2))
    features = keras.layers.Conv2D(3, 3, name="c")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(features)))
    x = tf.constant(IMAGES[:2, :6, :6, :2])
    f = keras.Model(inputs, features)(x).numpy()
    for channel in (None, 2):
        got = ki.Deconvnet(model, layer="c").attribute(x.numpy(), target=channel)
        for i in range(2):
            c = int(f[i].reshape(-1, 3).max(0).argmax()) if channel is None else channel
            r, q = np.unravel_index(f[i, ..., c].argmax(), f[i, ..., c].shape)
            with tf.GradientTape() as tape:
                tape.watch(x)
                unit = model.get_layer("c")(x)[i, r, q, c]
            want = f[i, r, q, c] * tape.gradient(unit, x)[i]
            np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_batch_of_two_equals_two_single_calls_and_explain_reduction():
    model = _conv_net()
    for explainer in (ki.GuidedBackprop(model), ki.Deconvnet(model, layer="c2")):
        both = explainer.attribute(IMAGES[:2])
        singles = np.concatenate([explainer.attribute(IMAGES[i:i + 1]) for i in range(2)])
        np.testing.assert_allclose(both, singles, atol=1e-6)
        np.testing.assert_allclose(explainer.explain(IMAGES[:2]), np.abs(both).max(-1), atol=1e-6)


def _snapshot(model):
    layers = [model] + [l for l in model._flatten_layers(include_self=False)]
    return [w.copy() for w in model.get_weights()], [(l.name, len(l._inbound_nodes)) for l in layers]


def test_user_model_is_unchanged():
    model = _conv_net(nested=True)
    before = _snapshot(model)
    DeconvStack.from_model(model, "backbone/r3").project(IMAGES[:1])
    ki.Deconvnet(model).attribute(IMAGES[:1])
    ki.GuidedBackprop(model, layer="backbone/c2").attribute(IMAGES[:1])
    after = _snapshot(model)
    assert before[1] == after[1]
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    # The model still backpropagates ordinary gradients afterwards.
    np.testing.assert_allclose(ki.Saliency(model).attribute(IMAGES[:1]), _plain_gradient(model, IMAGES[:1]), atol=1e-6)


def _plain_gradient(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = ki.Scorer(model)(x)
        score = tf.gather(logits, tf.argmax(logits, -1), axis=1, batch_dims=1)
    return tape.gradient(score, x).numpy()


def test_unsupported_layers_are_named():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(3, 3, padding="same", name="a")(inputs)
    d = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    s = keras.layers.Add(name="res")([d, a])
    c = keras.layers.Conv2D(2, 3, name="top", activation="tanh")(s)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(c))
    with pytest.raises(ValueError, match=r"unsupported layers .*'dw \(DepthwiseConv2D\)'.*'res \(Add\)'.*'top \(Conv2D\)'"):
        DeconvStack.from_model(model, "top")
    # The explainers take any model: the gradient carries the signal through these layers.
    assert np.isfinite(ki.Deconvnet(model, layer="top").attribute(np.ones((1, 8, 8, 3), "float32"))).all()


def test_deconv_stack_is_not_saved_on_its_own(tmp_path):
    stack = DeconvStack.from_model(_conv_net(), "c3")
    with pytest.raises(NotImplementedError, match="rebuild the stack with DeconvStack.from_model"):
        stack.save(tmp_path / "stack.keras")


def test_relus_hidden_in_a_nested_tf_function_are_refused_not_ignored():
    class CompiledCall(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3, activation="relu")
            self.head = keras.layers.Dense(2)

        @tf.function
        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    model = CompiledCall()
    model(X)
    with pytest.raises(ValueError, match="nested tf.function.*plain gradient"):
        ki.GuidedBackprop(model).attribute(X)
    assert np.isfinite(ki.Saliency(model).attribute(X)).all()


def test_a_callable_targets_own_relu_keeps_its_gradient():
    model, _, _ = _two_layer("none")
    logits = ki.Scorer(model)(X).numpy()
    target = lambda y: keras.ops.relu(y[:, 0] - y[:, 1])  # noqa: E731
    for cls in (ki.Deconvnet, ki.GuidedBackprop):
        got = cls(model).attribute(X, target=target)
        np.testing.assert_allclose(got, ki.Saliency(model).attribute(X, target=target), atol=1e-6)
        off = logits[:, 0] < logits[:, 1]
        assert off.any() and not got[off].any()  # relu off: zero, as the gradient says


def test_bad_channels_and_layers():
    model = _conv_net()
    with pytest.raises(ValueError, match=r"channel 7, out of range: the layer has 6 channels"):
        ki.Deconvnet(model, layer="c3").attribute(IMAGES, target=7)
    with pytest.raises(ValueError, match="target has 2 entries but the batch has 4"):
        ki.GuidedBackprop(model, layer="c3").attribute(IMAGES, target=[1, 2])
    with pytest.raises(TypeError, match="target is a channel index"):
        ki.Deconvnet(model, layer="c3").attribute(IMAGES, target=lambda y: y[:, 0])
    with pytest.raises(ValueError, match="No layer or operation named 'c9'"):
        ki.Deconvnet(model, layer="c9")
    with pytest.raises(ValueError, match="channel 9, out of range"):
        DeconvStack.from_model(model, "c3").project(IMAGES, channel=9)
    with pytest.raises(ValueError, match="class"):
        ki.Deconvnet(model).attribute(IMAGES, target=5)
