"""Guided Integrated Gradients against the values of PAIR's own tests and a NumPy Riemann sum, Blur
Integrated Gradients against a NumPy blur (np.convolve with zero padding) on a linear model and
completeness on a CNN, and FEM against NumPy's k-sigma masks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn


def _quadratic():
    """f(x) = (2 x1 + x2)^2 as a Keras model, the function of PAIR's Guided IG tests."""
    inputs = keras.Input((2,))
    linear = keras.layers.Dense(1, use_bias=False)
    out = keras.layers.Activation(keras.ops.square)(linear(inputs))
    model = keras.Model(inputs, out)
    linear.set_weights([np.array([[2.0], [1.0]], "float32")])
    return model


@pytest.fixture(scope="module")
def quadratic():
    return _quadratic()


# A left Riemann sum of 1000 steps: within 0.15 of the integrals (81 sums to 80.91).
@pytest.mark.parametrize("max_dist, check", [
    (0.0, lambda a: np.testing.assert_allclose(a, [54, 27], atol=0.15)),  # the straight line: IG
    (1.0, lambda a: np.testing.assert_allclose(a, [72, 9], atol=0.15)),  # x2 first (smaller gradient), then x1
    (0.2, lambda a: (55 < a[0] < 71) and (10 < a[1] < 26) or pytest.fail(f"{a}")),
])
def test_guided_ig_reproduces_pairs_tests(quadratic, max_dist, check):
    explainer = ki.GuidedIntegratedGradients(quadratic, steps=1000, fraction=0.1, max_dist=max_dist)
    attr, delta = explainer.attribute(np.array([[3.0, 3.0]]), target=0, return_delta=True)
    check(attr[0])
    np.testing.assert_allclose(attr.sum(), 81, atol=0.2)  # completeness: f(3, 3) - f(0, 0)
    assert abs(delta[0]) < 0.2


def test_guided_ig_reduces_to_ig_where_pairs_tests_say(quadratic):
    x = np.array([[3.0, 3.0]])
    # Every feature moved at every step (fraction 1): the straight line, whatever max_dist.
    attr = ki.GuidedIntegratedGradients(quadratic, steps=1000, fraction=1.0, max_dist=0.5).attribute(x, target=0)
    np.testing.assert_allclose(attr[0], [54, 27], rtol=0.01)
    # Independent partials, f = 2 x1^2 + x2^2: every path gives IG's (18, 9), both ways along it.
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False)
    independent = keras.Model(inputs, dense(keras.layers.Activation(keras.ops.square)(inputs)))
    dense.set_weights([np.array([[2.0], [1.0]], "float32")])
    explainer = ki.GuidedIntegratedGradients(independent, steps=1000, fraction=0.1, max_dist=0.4)
    np.testing.assert_allclose(explainer.attribute(x, target=0)[0], [18, 9], rtol=0.01)
    back = ki.GuidedIntegratedGradients(independent, steps=1000, fraction=0.1, max_dist=0.4, baseline=3.0)
    np.testing.assert_allclose(back.attribute(np.zeros((1, 2)), target=0)[0], [-18, -9], rtol=0.01)


def test_guided_ig_on_a_linear_function_is_ig_exactly():
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[2.0], [1.0]], "float32"), np.array([0.5], "float32")])
    explainer = ki.GuidedIntegratedGradients(model, steps=1000, fraction=0.1, max_dist=0.2, baseline=[-1.0, -3.0])
    np.testing.assert_allclose(explainer.attribute(np.array([[10.0, 5.0]]), target=0)[0], [22, 8], rtol=1e-5)


def test_guided_ig_with_max_dist_0_is_a_left_riemann_sum_on_a_cnn(cnn, images):
    steps, classes = 6, [0, 2, 1, 1]
    twin = tiny_cnn(activation=None, seed=9)
    twin.set_weights(cnn.get_weights())
    baseline = 0.25
    expected = np.zeros(images.shape)
    for s in range(steps):  # the gradient at the start of each step, times the step
        xs = tf.constant(baseline + s / steps * (images - baseline))
        with tf.GradientTape() as tape:
            tape.watch(xs)
            score = tf.reduce_sum(tf.gather(twin(xs), classes, axis=1, batch_dims=1))
        expected += (images - baseline) / steps * tape.gradient(score, xs).numpy()
    explainer = ki.GuidedIntegratedGradients(cnn, steps=steps, max_dist=0.0, baseline=baseline, batch_size=3)
    attr = explainer.attribute(images, target=classes)
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    # With the default guided path: completeness, the explained class the input's top class,
    # and each example walked on its own (a batch of one gives the same row).
    guided = ki.GuidedIntegratedGradients(cnn, steps=40, baseline=baseline)
    attr, delta = guided.attribute(images, return_delta=True)
    logits = twin(images).numpy()
    top = logits.argmax(axis=1)
    change = logits[np.arange(4), top] - twin(np.full_like(images, baseline)).numpy()[np.arange(4), top]
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), change, rtol=0.05, atol=0.02 * np.abs(change).max())
    np.testing.assert_allclose(delta, attr.sum(axis=(1, 2, 3)) - change, atol=1e-4 * np.abs(change).max())
    assert np.abs(attr - expected).max() > 1e-3  # the guided path is not the straight line
    np.testing.assert_allclose(guided.attribute(images[2:3]), attr[2:3], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(guided.explain(images), np.abs(attr.sum(axis=-1)), rtol=1e-5)
    with pytest.raises(ValueError, match="fraction must be a number in"):
        ki.GuidedIntegratedGradients(cnn, fraction=0)


def _numpy_blur(x, sigma):
    """x (B, H, W, C) blurred along H and W by a Gaussian of `sigma`, zero outside the image."""
    reach = int(np.ceil(8 * sigma)) + max(x.shape[1:3])
    t = np.arange(-reach, reach + 1)
    kernel = np.exp(-t ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()

    def along(v):  # "full" convolution, then the centred window: zero padding
        return np.convolve(v, kernel, mode="full")[reach:reach + len(v)]

    out = np.apply_along_axis(along, 1, x.astype(np.float64))
    return np.apply_along_axis(along, 2, out)


def test_blur_ig_on_a_linear_model_is_w_times_the_blurs_change(linear):
    model, w, b = linear
    x = np.random.default_rng(3).normal(size=(2, 6, 5, 2)).astype("float32")
    sigma = 3.0
    attr, delta = ki.BlurIntegratedGradients(model, max_sigma=sigma, steps=48).attribute(
        x, target=1, return_delta=True)
    # The gradient is w everywhere: -integral w * db/ds ds = w * (x - b(sigma)).
    expected = w[:, 1].reshape(6, 5, 2) * (x - _numpy_blur(x, sigma))
    np.testing.assert_allclose(attr, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(delta, 0, atol=1e-4 * np.abs(expected).sum())


def test_blur_ig_completeness_on_a_cnn(cnn, images):
    twin = tiny_cnn(activation=None, seed=9)
    twin.set_weights(cnn.get_weights())
    classes, sigma = [0, 2, 1, 1], 5.0
    attr, delta = ki.BlurIntegratedGradients(cnn, max_sigma=sigma, steps=96, batch_size=16).attribute(
        images, target=classes, return_delta=True)
    rows = np.arange(4)
    change = twin(images).numpy()[rows, classes] - twin(_numpy_blur(images, sigma)).numpy()[rows, classes]
    # The ReLUs' and max pooling's kinks make the integrand rough: 96 points close the gap to a
    # few percent (32 points: 5%); the reported gap is exactly that difference.
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), change, rtol=3e-2, atol=1e-2 * np.abs(change).max())
    np.testing.assert_allclose(delta, attr.sum(axis=(1, 2, 3)) - change, atol=1e-4 * np.abs(change).max())
    assert np.abs(change).min() > 1e-3
    with pytest.raises(ValueError, match="max_sigma must be a finite number > 0"):
        ki.BlurIntegratedGradients(cnn, max_sigma=0)


@pytest.mark.parametrize("k, layer", [(2.0, "conv2"), (0.5, "pool1")])
def test_fem_is_the_mean_weighted_k_sigma_masks(cnn, images, k, layer):
    a = keras.Model(cnn.inputs, cnn.get_layer(layer).output)(images).numpy().astype(np.float64)
    mean, std = a.mean(axis=(1, 2), keepdims=True), a.std(axis=(1, 2), keepdims=True)
    expected = ((a >= mean + k * std) * mean).sum(axis=-1)
    maps = ki.FEM(cnn, layer=layer, k=k).explain(images, upsample=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert expected.max() > 0 and (expected == 0).any()  # masks that select, not all or nothing
    np.testing.assert_allclose(ki.FEM(cnn, layer=layer, k=k).explain(images, target=2, upsample=False), maps)


def test_class_agnostic_maps_need_no_class_axis_and_bad_settings_are_refused(cnn, images):
    # A segmentation-style output (no class axis): Eigen-CAM and FEM read no score, so no target.
    inputs = keras.Input((12, 12, 3))
    features = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="features")(inputs)
    segmentation = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="mask")(features))
    a = keras.Model(inputs, features)(images).numpy().astype(np.float64)
    mean, std = a.mean(axis=(1, 2), keepdims=True), a.std(axis=(1, 2), keepdims=True)
    fem = ki.FEM(segmentation, layer="features").explain(images, upsample=False)
    np.testing.assert_allclose(fem, ((a >= mean + 2 * std) * mean).sum(-1), rtol=1e-4, atol=1e-7)
    assert ki.EigenCAM(segmentation, layer="features").explain(images).shape == (4, 12, 12)
    with pytest.raises(ValueError, match="no top class"):  # a class-specific method still needs one
        ki.GradCAM(segmentation, layer="features").explain(images)
    for bad in (lambda: ki.GuidedIntegratedGradients(cnn, fraction="a"),
                lambda: ki.GuidedIntegratedGradients(cnn, max_dist=True),
                lambda: ki.BlurIntegratedGradients(cnn, max_sigma=True),
                lambda: ki.FEM(cnn, k="a")):
        with pytest.raises(ValueError, match="must be a"):
            bad()
