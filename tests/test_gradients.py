import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn


def _logit_gradient(model, x, classes):
    """Reference: gradient of the Dense pre-activation, via a twin model with linear output."""
    twin = tiny_cnn(activation=None, seed=123)
    twin.set_weights(model.get_weights())
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = twin(x)
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return tape.gradient(score, x).numpy()


def test_linear_saliency_is_the_weight(linear):
    model, w, _ = linear
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 2)).astype("float32")
    sal = ki.Saliency(model)
    attr = sal.attribute(x, target=1)
    expected = np.broadcast_to(w[:, 1].reshape(6, 5, 2), attr.shape)
    np.testing.assert_allclose(attr, expected, rtol=1e-6)
    np.testing.assert_allclose(sal.explain(x, target=1), np.abs(expected).max(-1), rtol=1e-6)


def test_linear_integrated_gradients_is_exact(linear):
    model, w, b = linear
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 5, 2)).astype("float32")
    baseline = rng.normal(size=(6, 5, 2)).astype("float32")
    ig = ki.IntegratedGradients(model, steps=8, baseline=baseline)
    attr, delta = ig.attribute(x, target=[0, 1, 2], return_delta=True)
    wk = w.T.reshape(3, 6, 5, 2)[[0, 1, 2]]
    np.testing.assert_allclose(attr, (x - baseline) * wk, rtol=1e-4, atol=1e-5)
    f = lambda z: z.reshape(len(z), -1) @ w + b  # noqa: E731
    gap = f(x)[np.arange(3), [0, 1, 2]] - f(np.broadcast_to(baseline, x.shape))[np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), gap, rtol=1e-4)
    np.testing.assert_allclose(delta, 0.0, atol=1e-3)
    np.testing.assert_allclose(ig.explain(x, target=[0, 1, 2]), np.abs(attr.sum(-1)), rtol=1e-5, atol=1e-6)


def test_linear_smoothgrad_is_the_weight_whatever_the_noise(linear):
    model, w, _ = linear
    x = np.random.default_rng(2).normal(size=(2, 6, 5, 2)).astype("float32")
    attr = ki.SmoothGrad(model, samples=7, noise=0.5).attribute(x, target=2)
    np.testing.assert_allclose(attr, np.broadcast_to(w[:, 2].reshape(6, 5, 2), attr.shape), rtol=1e-5)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_midpoint", "riemann_trapezoid"])
def test_integrated_gradients_completeness_on_a_cnn(cnn, images, method):
    ig = ki.IntegratedGradients(cnn, steps=64, method=method)
    attr, delta = ig.attribute(images, return_delta=True)
    logits = ki.Scorer(cnn)(images).numpy()
    top = logits.argmax(1)
    at_zero = ki.Scorer(cnn)(np.zeros_like(images)).numpy()[np.arange(len(images)), top]
    gap = logits[np.arange(len(images)), top] - at_zero
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), gap, rtol=0.01, atol=1e-4 * np.abs(gap).max())
    np.testing.assert_allclose(delta, attr.sum(axis=(1, 2, 3)) - gap, atol=1e-5)


def test_saliency_uses_logits_not_probabilities(cnn, images):
    classes = np.array([0, 1, 2, 1])
    attr = ki.Saliency(cnn).attribute(images, target=classes)
    np.testing.assert_allclose(attr, _logit_gradient(cnn, images, classes), rtol=1e-4, atol=1e-7)
    # The probability gradient is a different thing: make sure the test can tell them apart.
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        p = tf.reduce_sum(tf.gather(cnn(x), classes, axis=1, batch_dims=1))
    assert not np.allclose(tape.gradient(p, x).numpy(), attr, rtol=1e-2)


def test_target_none_explains_the_top_class(cnn, images):
    top = ki.Scorer(cnn)(images).numpy().argmax(1)
    sal = ki.Saliency(cnn)
    np.testing.assert_array_equal(sal.attribute(images), sal.attribute(images, target=top))


def test_callable_target(cnn, images):
    sal = ki.Saliency(cnn)
    by_callable = sal.attribute(images, target=lambda logits: logits[:, 2])
    np.testing.assert_allclose(by_callable, sal.attribute(images, target=2), rtol=1e-6)


def test_callable_target_of_the_wrong_shape_is_refused(cnn, images):
    with pytest.raises(ValueError, match=r"one score per example, shape \(4,\); it returned shape \(4, 3\)"):
        ki.Saliency(cnn).explain(images, target=lambda logits: logits)


def _explainers(model):
    return [
        ki.Saliency(model),
        ki.SmoothGrad(model, samples=5, batch_size=8),
        ki.IntegratedGradients(model, steps=6, batch_size=8),
        ki.Occlusion(model, patch_size=4, stride=3, batch_size=16),
    ]


def test_batch_of_two_equals_two_single_calls(cnn, images):
    for explainer in _explainers(cnn):
        together = explainer.explain(images[:2])
        apart = np.concatenate([explainer.explain(images[i:i + 1]) for i in range(2)])
        np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-7, err_msg=type(explainer).__name__)


def test_ten_calls_trace_once(cnn, images):
    for explainer in _explainers(cnn):
        explainer.explain(images)
        first = explainer.trace_count
        for _ in range(9):
            explainer.explain(images, target=[0, 1, 2, 0])
            explainer.explain(images)
        assert explainer.trace_count == first, type(explainer).__name__
        assert first == 1  # one compiled function per input shape


def test_chunk_size_does_not_change_results(cnn, images):
    for make in (
        lambda bs: ki.SmoothGrad(cnn, samples=7, batch_size=bs),
        lambda bs: ki.IntegratedGradients(cnn, steps=7, batch_size=bs),
    ):
        np.testing.assert_allclose(make(1).attribute(images), make(1000).attribute(images), rtol=1e-4, atol=1e-7)


def test_smoothgrad_noise_is_seeded_and_relative_to_value_range(cnn, images):
    a = ki.SmoothGrad(cnn, samples=4, seed=3).attribute(images)
    np.testing.assert_array_equal(a, ki.SmoothGrad(cnn, samples=4, seed=3).attribute(images))
    assert not np.allclose(a, ki.SmoothGrad(cnn, samples=4, seed=4).attribute(images))
    np.testing.assert_allclose(
        ki.SmoothGrad(cnn, samples=3, noise=0.0).attribute(images), ki.Saliency(cnn).attribute(images), rtol=1e-5, atol=1e-8
    )
    # Scaling a [0, 1] image to [0, 255] behind a Rescaling layer gives the same attribution x 1/255.
    scaled = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255.0), cnn])
    np.testing.assert_allclose(
        ki.SmoothGrad(scaled, samples=4, seed=3).attribute(images * 255) * 255, a, rtol=1e-3, atol=1e-6
    )


def test_smoothgrad_leaves_global_random_state_alone(cnn, images):
    tf.random.set_seed(7)
    expected = tf.random.uniform((3,)).numpy()
    tf.random.set_seed(7)
    ki.SmoothGrad(cnn, samples=3).explain(images)
    np.testing.assert_array_equal(tf.random.uniform((3,)).numpy(), expected)


def test_sequential_functional_and_nested_models_agree(images):
    functional = tiny_cnn(seed=5)
    sequential = keras.Sequential([keras.Input((12, 12, 3))] + functional.layers[1:])
    nested = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Identity(), functional])
    expected = ki.Saliency(functional).explain(images)
    for model in (sequential, nested):
        np.testing.assert_allclose(ki.Saliency(model).explain(images), expected, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(
            ki.IntegratedGradients(model, steps=8).explain(images),
            ki.IntegratedGradients(functional, steps=8).explain(images),
            rtol=1e-4,
            atol=1e-7,
        )


def test_mixed_precision_model_gives_float32_maps(images):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", dtype="mixed_float16")(inputs)
    x = keras.layers.GlobalAveragePooling2D(dtype="mixed_float16")(x)
    x = keras.layers.Dense(3, dtype="mixed_float16")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    for explainer in _explainers(model):
        maps = explainer.explain(images)
        assert maps.dtype == np.float32 and maps.shape == (4, 12, 12)
        assert np.isfinite(maps).all() and maps.max() > 0, type(explainer).__name__


def test_inference_mode_dropout_off(images):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dropout(0.9)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    sal = ki.Saliency(model)
    np.testing.assert_array_equal(sal.attribute(images), sal.attribute(images))
    w = model.layers[-1].get_weights()[0][:, 0].reshape(12, 12, 3)
    np.testing.assert_allclose(sal.attribute(images, target=0)[0], w, rtol=1e-6)


@pytest.mark.parametrize(
    "inputs, message",
    [
        (np.zeros((12, 12, 3)), r"received shape \(12, 12, 3\). For a single image pass image\[None\]"),
        (np.zeros((2, 12, 12, 3, 1)), r"Expected a batch of images of shape \(batch, height, width, channels\)"),
        (np.zeros((0, 12, 12, 3)), "empty batch"),
        (np.zeros((1, 16, 12, 3)), "Image height is 16 but the model expects 12"),
        (np.zeros((1, 12, 12, 1)), "Image channels is 1 but the model expects 3"),
        (np.full((1, 12, 12, 3), np.nan), r"contain 432 NaN or infinite values \(first at index \(0, 0, 0, 0\)\)"),
        (np.pad(np.full((1, 1, 1, 1), np.inf), ((0, 0), (3, 8), (2, 9), (1, 1))), r"1 NaN .* \(0, 3, 2, 1\)"),
    ],
)
def test_bad_inputs_are_refused(cnn, inputs, message):
    for explainer in _explainers(cnn):
        with pytest.raises(ValueError, match=message):
            explainer.explain(inputs)


def test_bad_arguments_are_refused(cnn):
    with pytest.raises(ValueError, match="samples must be a positive int; received 0"):
        ki.SmoothGrad(cnn, samples=0)
    with pytest.raises(ValueError, match="noise must be"):
        ki.SmoothGrad(cnn, noise=-1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ki.IntegratedGradients(cnn, steps=0)
    with pytest.raises(ValueError, match="Unknown integration method 'simpson'"):
        ki.IntegratedGradients(cnn, method="simpson")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ki.SmoothGrad(cnn, batch_size=0)
    with pytest.raises(ValueError, match=r"baseline of shape \(5,\) cannot be broadcast"):
        ki.IntegratedGradients(cnn, baseline=np.zeros(5)).explain(np.zeros((1, 12, 12, 3)))


def test_gradient_input_is_the_input_times_the_gradient(linear, cnn, images):
    model, w, b = linear
    x = np.random.default_rng(3).normal(size=(3, 6, 5, 2)).astype("float32")
    explainer = ki.GradientInput(model)
    attr = explainer.attribute(x, target=[0, 2, 1])
    expected = x * w[:, [0, 2, 1]].T.reshape(3, 6, 5, 2)  # x * w, by the identity of a linear model
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    maps = explainer.explain(x, target=[0, 2, 1])
    assert explainer.signed and (maps < 0).any()
    logits = x.reshape(3, -1) @ w + b
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), logits[np.arange(3), [0, 2, 1]] - b[[0, 2, 1]], rtol=1e-4)
    # On a CNN: exactly the input times the saliency gradient.
    np.testing.assert_allclose(ki.GradientInput(cnn).attribute(images, target=1),
                               images * ki.Saliency(cnn).attribute(images, target=1), rtol=1e-6, atol=1e-9)


def test_a_registry_entry_reaches_the_logger_and_the_cli():
    from keras_interp import callbacks, cli, registry

    assert registry.METHODS["gradient_input"].load() is ki.GradientInput
    assert "gradient_input" in callbacks.METHODS and "gradient_input" in cli._METHOD_NAMES
    assert "GradientInput" in ki.__all__ and ki.explainers.GradientInput is ki.GradientInput
