import keras
import numpy as np
import pytest

from conftest import tiny_cnn
from keras_interp.targets import Scorer, resolve_target


def _reference_logits(model, x):
    """NumPy: the GAP features times the Dense kernel plus bias."""
    features = keras.Model(model.inputs[0], model.get_layer("gap").output)(x).numpy()
    kernel, bias = model.get_layer("predictions").get_weights()
    return features @ kernel + bias


def _with_head(head_layers, name):
    base = tiny_cnn(activation=None)
    x = base.output
    for layer in head_layers:
        x = layer(x)
    return base, keras.Model(base.inputs[0], x, name=name)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_fused_activation_gives_logits(images, activation):
    model = tiny_cnn(activation=activation)
    scorer = Scorer(model)
    assert scorer.activation == activation
    np.testing.assert_allclose(scorer(images).numpy(), _reference_logits(model, images), rtol=1e-5, atol=1e-6)
    # Re-applying the squashing gives back the model's outputs.
    np.testing.assert_allclose(scorer.probabilities(scorer(images)).numpy(), model(images).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "head, kind",
    [
        (lambda: [keras.layers.Softmax()], "softmax"),
        (lambda: [keras.layers.Activation("softmax")], "softmax"),
        (lambda: [keras.layers.Activation("sigmoid")], "sigmoid"),
    ],
)
def test_separate_activation_layer_gives_logits(images, head, kind):
    base, model = _with_head(head(), "separate")
    scorer = Scorer(model)
    assert scorer.activation == kind
    np.testing.assert_allclose(scorer(images).numpy(), base(images).numpy(), rtol=1e-5, atol=1e-6)


def test_nested_and_sequential_models_give_logits(images):
    inner = tiny_cnn()
    expected = _reference_logits(inner, images)
    nested = keras.Sequential([keras.Input((12, 12, 3)), inner])
    functional = keras.Model(inner.inputs[0], inner(inner.inputs[0]))
    inp = keras.Input((12, 12, 3))
    wrapped = keras.Model(inp, inner(keras.layers.Identity()(inp)))
    for model in (nested, functional, wrapped):
        scorer = Scorer(model)
        assert scorer.activation == "softmax"
        np.testing.assert_allclose(scorer(images).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_scores_follow_live_weights_and_model_is_untouched(images):
    model = tiny_cnn()
    before = model(images).numpy()
    n_layers = len(model.layers)
    scorer = Scorer(model)
    assert model.get_layer("predictions").activation is keras.activations.softmax
    assert len(model.layers) == n_layers
    np.testing.assert_array_equal(model(images).numpy(), before)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 2, bias + 1])
    np.testing.assert_allclose(scorer(images).numpy(), _reference_logits(model, images), rtol=1e-5, atol=1e-6)


def test_subclassed_model_outputs_are_used_as_scores(images):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(self.flat(x))

    net = Net()
    net(images)
    scorer = Scorer(net)
    assert scorer.activation is None
    np.testing.assert_allclose(scorer(images).numpy(), net(images).numpy(), atol=1e-6)


def test_resolve_target_forms():
    classes, fn = resolve_target(None, 3, 5)
    assert fn is None and classes.tolist() == [-1, -1, -1]
    assert resolve_target(2, 3, 5)[0].tolist() == [2, 2, 2]
    assert resolve_target(np.int64(4), 2, 5)[0].tolist() == [4, 4]
    assert resolve_target([0, 4, 1], 3, 5)[0].tolist() == [0, 4, 1]
    fn = lambda y: y[:, 0]  # noqa: E731
    assert resolve_target(fn, 3, 5)[1] is fn


@pytest.mark.parametrize(
    "target, batch, error, message",
    [
        (5, 2, ValueError, r"target 5 is out of range: the model has 5 classes, so targets must lie in \[0, 4\]"),
        (-1, 2, ValueError, "out of range"),
        ([0, 1, 2], 2, ValueError, "target has 3 entries but the batch has 2 examples"),
        ([0.5, 1.0], 2, TypeError, "sequence of ints"),
        ("cat", 2, TypeError, "sequence of ints"),
        (True, 2, TypeError, "received True"),
    ],
)
def test_resolve_target_errors(target, batch, error, message):
    with pytest.raises(error, match=message):
        resolve_target(target, batch, 5)


def test_integer_target_needs_class_outputs():
    with pytest.raises(ValueError, match="callable target"):
        resolve_target(1, 2, None)


def test_several_inputs_are_scored_and_several_outputs_need_a_choice():
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    two_in = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))
    xa, xb = np.random.rand(3, 4, 4, 1).astype("float32"), np.random.rand(3, 4, 4, 1).astype("float32")
    np.testing.assert_allclose(Scorer(two_in)([xa, xb]), two_in([xa, xb]), rtol=1e-6)
    flat = keras.layers.Flatten()(a)
    two_out = keras.Model(a, [keras.layers.Dense(2, name="first")(flat), keras.layers.Dense(3, name="second")(flat)])
    with pytest.raises(ValueError, match=r"has 2 outputs \['first', 'second'\]; pass output="):
        Scorer(two_out)
    with pytest.raises(ValueError, match=r"no output named 'third'; its outputs are \['first', 'second'\]"):
        Scorer(two_out, output="third")
    with pytest.raises(ValueError, match="output=2 is out of range"):
        Scorer(two_out, output=2)
    np.testing.assert_allclose(Scorer(two_out, output="second")(xa), two_out(xa)[1], rtol=1e-6)
    np.testing.assert_allclose(Scorer(two_out, output=-2)(xa), two_out(xa)[0], rtol=1e-6)
    with pytest.raises(TypeError, match="Expected a keras.Model, received str"):
        Scorer("model.keras")


def test_unsupported_fused_activation_layer_is_refused():
    seq_in = keras.Input((3, 4))
    rnn = keras.layers.SimpleRNN(2, activation="softmax")(seq_in)
    with pytest.raises(ValueError, match="SimpleRNN.*applies softmax.*separate"):
        Scorer(keras.Model(seq_in, rnn))


# ---- Every common way of writing the final squashing (reference: the same weights, no squashing)

def _trunk(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x)


def _logit_reference(model, x, units=3):
    """Logits from a copy of the conv/GAP trunk and the head's kernel and bias, in NumPy."""
    conv = model.get_layer("conv") if "conv" in [l.name for l in model.layers] else None
    if conv is None:  # nested classifier
        inner = [l for l in model.layers if isinstance(l, keras.Model)][0]
        return _logit_reference(inner, x, units)
    trunk = keras.Model(model.inputs[0], model.get_layer("gap").output)
    kernel, bias = model.get_layer("head").get_weights()
    return trunk(x).numpy() @ kernel + bias


def _forms():
    import tensorflow as tf
    from keras import ops

    def fused_tf_softmax():
        i, g = _trunk()
        return keras.Model(i, keras.layers.Dense(3, activation=tf.nn.softmax, name="head")(g)), "softmax"

    def ops_softmax():
        i, g = _trunk()
        return keras.Model(i, ops.softmax(keras.layers.Dense(3, name="head")(g))), "softmax"

    def activations_softmax():
        i, g = _trunk()
        return keras.Model(i, keras.activations.softmax(keras.layers.Dense(3, name="head")(g))), "softmax"

    def activation_then_reshape():
        i, g = _trunk()
        y = keras.layers.Activation("softmax")(keras.layers.Dense(3, name="head")(g))
        return keras.Model(i, keras.layers.Flatten()(keras.layers.Reshape((3, 1))(y))), "softmax"

    def tf_softmax_activation_layer():
        i, g = _trunk()
        y = keras.layers.Activation(tf.nn.softmax)(keras.layers.Dense(3, name="head")(g))
        return keras.Model(i, keras.layers.Dropout(0.5)(y)), "softmax"

    def ops_sigmoid_multilabel():
        i, g = _trunk()
        return keras.Model(i, ops.sigmoid(keras.layers.Dense(3, name="head")(g))), "sigmoid"

    def nested_ops_softmax():
        inner, _ = ops_softmax()
        outer_in = keras.Input((12, 12, 3))
        y = inner(keras.layers.Identity()(outer_in))
        return keras.Model(outer_in, keras.layers.Reshape((3,))(y)), "softmax"

    def sequential_nested_fused():
        inner, _ = fused_tf_softmax()
        return keras.Sequential([keras.Input((12, 12, 3)), keras.layers.RandomFlip(), inner]), "softmax"

    return [fused_tf_softmax, ops_softmax, activations_softmax, activation_then_reshape,
            tf_softmax_activation_layer, ops_sigmoid_multilabel, nested_ops_softmax, sequential_nested_fused]


@pytest.mark.parametrize("form", _forms(), ids=lambda f: f.__name__)
def test_every_way_of_writing_softmax_gives_logits(images, form):
    model, kind = form()
    scorer = Scorer(model)
    assert scorer.activation == kind
    logits = scorer(images).numpy()
    np.testing.assert_allclose(logits, _logit_reference(model, images), rtol=1e-5, atol=1e-5)
    assert not np.allclose(logits.sum(axis=1), 1.0, atol=1e-2)
    np.testing.assert_allclose(scorer.probabilities(scorer(images)).numpy(), model(images, training=False).numpy(), atol=1e-6)


def _binary_model():
    i, g = _trunk(seed=4)
    return keras.Model(i, keras.layers.Flatten()(keras.layers.Dense(1, activation="sigmoid", name="head")(g)))


def test_binary_sigmoid_is_two_classes_with_the_sign_of_the_prediction(images):
    model = _binary_model()
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 50, bias])
    z = _logit_reference(model, images, units=1)[:, 0]
    head.set_weights([kernel * 50, bias - np.median(z)])  # logits of both signs
    scorer = Scorer(model)
    z = _logit_reference(model, images, units=1)[:, 0]
    assert scorer.binary and scorer.num_classes == 2 and (z > 0).any() and (z < 0).any()
    np.testing.assert_allclose(scorer(images).numpy(), np.stack([-z, z], axis=1), rtol=1e-5, atol=1e-5)
    p = scorer.probabilities(scorer(images)).numpy()
    np.testing.assert_allclose(p[:, 1], model(images).numpy()[:, 0], atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    import keras_interp as ki
    import tensorflow as tf

    # target=None explains the predicted class: +z where z > 0, -z where z < 0.
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        trunk = keras.Model(model.inputs[0], model.get_layer("gap").output)
        logit = tf.squeeze(trunk(x) @ head.kernel + head.bias, -1)
        score = tf.reduce_sum(tf.sign(logit) * logit)
    np.testing.assert_allclose(ki.Saliency(model).attribute(images), tape.gradient(score, x).numpy(), rtol=1e-4, atol=1e-6)
    assert np.allclose(ki.Saliency(model).attribute(images, target=1), -ki.Saliency(model).attribute(images, target=0))
    with pytest.raises(ValueError, match="out of range"):
        ki.Saliency(model).explain(images, target=2)


def test_hidden_softmax_warns_once_and_scores_are_outputs(images):
    import warnings as w

    i, g = _trunk()
    y = keras.layers.Dense(3, name="head")(g)
    model = keras.Model(i, keras.layers.Lambda(lambda t: keras.ops.softmax(t))(y))
    scorer = Scorer(model)
    assert scorer.activation is None
    import keras_interp as ki

    with pytest.warns(UserWarning, match=r"look like probabilities.*Lambda.*callable target"):
        ki.Saliency(model).explain(images)
    with w.catch_warnings():
        w.simplefilter("error")
        ki.Saliency(model).explain(images)  # once per model
    # A logit model is not warned about.
    with w.catch_warnings():
        w.simplefilter("error")
        ki.Saliency(keras.Model(i, y)).explain(images)


def test_subclassed_softmax_model_warns(images):
    import keras_interp as ki

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(self.flat(x))

    net = Net()
    net(images)
    with pytest.warns(UserWarning, match="look like probabilities"):
        ki.Saliency(net).explain(images)


def test_segmentation_output_needs_a_callable_target(images):
    import keras_interp as ki

    inputs = keras.Input((12, 12, 3))
    seg = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    with pytest.raises(ValueError, match=r"output has shape \(None, 12, 12, 2\), not \(batch, classes\).*callable target"):
        ki.Saliency(seg).explain(images)
    maps = ki.Saliency(seg).explain(images, target=lambda y: keras.ops.sum(y[..., 1], axis=(1, 2)))
    assert maps.shape == (4, 12, 12) and np.isfinite(maps).all()


def test_tfsm_layer_softmax_warns(images, tmp_path):
    import keras_interp as ki

    i, g = _trunk()
    exported = keras.Model(i, keras.layers.Dense(3, activation="softmax", name="head")(g))
    exported.export(str(tmp_path / "saved"), verbose=False)
    inputs = keras.Input((12, 12, 3))
    wrapped = keras.Model(inputs, keras.layers.TFSMLayer(str(tmp_path / "saved"), call_endpoint="serve")(inputs))
    with pytest.warns(UserWarning, match=r"look like probabilities.*TFSMLayer"):
        maps = ki.Saliency(wrapped).explain(images)
    assert maps.shape == (4, 12, 12)
