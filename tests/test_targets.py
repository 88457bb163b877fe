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


def test_several_inputs_or_outputs_are_refused():
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    two_in = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))
    with pytest.raises(ValueError, match="The model has 2 inputs"):
        Scorer(two_in)
    flat = keras.layers.Flatten()(a)
    two_out = keras.Model(a, [keras.layers.Dense(2)(flat), keras.layers.Dense(3)(flat)])
    with pytest.raises(ValueError, match="The model has 2 outputs"):
        Scorer(two_out)
    with pytest.raises(TypeError, match="Expected a keras.Model, received str"):
        Scorer("model.keras")


def test_unsupported_fused_activation_layer_is_refused():
    seq_in = keras.Input((3, 4))
    rnn = keras.layers.SimpleRNN(2, activation="softmax")(seq_in)
    with pytest.raises(ValueError, match="SimpleRNN.*applies softmax.*separate"):
        Scorer(keras.Model(seq_in, rnn))
