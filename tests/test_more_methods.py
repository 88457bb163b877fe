"""SquareGrad, VarGrad, HiResCAM, XGradCAM and Eigen-CAM against references written here from the
papers: NumPy over the same noise draws, features and logit gradients from a tap model, and
NumPy's SVD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn


def _twin_logits(model):
    twin = tiny_cnn(activation=None, seed=123)
    twin.set_weights(model.get_weights())
    return twin


def _features_and_gradients(model, layer, x, classes):
    """(A, d logit_c / d A, logits) in float64 from this file's own tap of the pre-softmax twin."""
    twin = _twin_logits(model)
    tap = keras.Model(twin.inputs, [twin.get_layer(layer).output, twin.outputs[0]])
    with tf.GradientTape() as tape:
        a, logits = tap(tf.constant(x))
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return a.numpy().astype(np.float64), tape.gradient(score, a).numpy().astype(np.float64), logits.numpy()


@pytest.mark.parametrize("cls, noise", [(ki.SquareGrad, 0.2), (ki.VarGrad, 0.2), (ki.VarGrad, 0.001)])
def test_squaregrad_and_vargrad_over_smoothgrads_noise(cnn, images, cls, noise):
    # noise 0.001: E[g^2] - E[g]^2 in float32 would cancel to nothing; VarGrad shifts by the clean gradient.
    samples, seed, classes = 6, 3, [0, 2, 1, 1]
    twin = _twin_logits(cnn)
    sigma = noise * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))[:, None, None, None]
    grads = []
    for i in range(samples):  # the draws SmoothGrad documents: stateless, seeded with (seed, sample)
        draw = tf.random.stateless_normal(images.shape[1:], seed=[seed, i]).numpy()
        xs = tf.constant(images + sigma * draw[None])
        with tf.GradientTape() as tape:
            tape.watch(xs)
            score = tf.reduce_sum(tf.gather(twin(xs), classes, axis=1, batch_dims=1))
        grads.append(tape.gradient(score, xs).numpy().astype(np.float64))
    grads = np.stack(grads)
    expected = (grads ** 2).mean(axis=0) if cls is ki.SquareGrad else grads.var(axis=0)
    attr = cls(cnn, samples=samples, noise=noise, seed=seed, batch_size=8).attribute(images, target=classes)
    np.testing.assert_allclose(attr, expected, rtol=1e-3 if noise > 0.01 else 2e-2, atol=1e-3 * np.abs(expected).max())
    assert expected.max() > 0 and (attr >= 0).all()
    if cls is ki.VarGrad:
        with pytest.raises(ValueError, match="samples >= 2"):
            ki.VarGrad(cnn, samples=1)
    # SmoothGrad with the same draws is their mean: the three share one noise stream.
    mean = ki.SmoothGrad(cnn, samples=samples, noise=noise, seed=seed).attribute(images, target=classes)
    np.testing.assert_allclose(mean, grads.mean(axis=0), rtol=1e-3, atol=1e-6 * np.abs(grads).max())


def test_hirescam_is_gradient_times_activation_and_cam_over_hw_on_a_gap_head(cnn, images):
    classes = [0, 2, 1, 1]
    a, g, _ = _features_and_gradients(cnn, "conv2", images, classes)
    maps = ki.HiResCAM(cnn, layer="conv2").explain(images, target=classes, upsample=False)
    np.testing.assert_allclose(maps, np.maximum((g * a).sum(-1), 0), rtol=1e-4, atol=1e-7)
    signed = ki.HiResCAM(cnn, relu=False).explain(images, target=classes, upsample=False)
    cam = ki.CAM(cnn).explain(images, target=classes, upsample=False)
    h, w = cam.shape[1:]
    np.testing.assert_allclose(signed, cam / (h * w), rtol=1e-4, atol=1e-7)
    # Not Grad-CAM: the gradient is not averaged first (it varies over positions here).
    grad_cam = ki.GradCAM(cnn, layer="pool1").explain(images, target=classes, upsample=False)
    hires = ki.HiResCAM(cnn, layer="pool1").explain(images, target=classes, upsample=False)
    assert np.abs(grad_cam / grad_cam.max() - hires / hires.max()).max() > 0.05


def test_xgradcam_weights_gradients_by_the_activations_share(cnn, images):
    classes = [1, 0, 2, 0]
    a, g, _ = _features_and_gradients(cnn, "pool1", images, classes)
    total = a.sum(axis=(1, 2), keepdims=True)
    weights = (np.divide(a, total, out=np.zeros_like(a), where=total != 0) * g).sum(axis=(1, 2))
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, weights), 0)
    maps = ki.XGradCAM(cnn, layer="pool1").explain(images, target=classes, upsample=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())
    unnormalised = np.maximum(np.einsum("bhwk,bk->bhw", a, (a * g).sum(axis=(1, 2))), 0)
    assert np.abs(unnormalised / unnormalised.max() - expected / expected.max()).max() > 0.05


def test_eigencam_is_the_first_principal_component(cnn, images):
    tap = keras.Model(cnn.inputs, cnn.get_layer("conv2").output)
    a = tap(images).numpy().astype(np.float64)
    b, h, w, k = a.shape
    expected = []
    for features in a.reshape(b, h * w, k):
        centred = features - features.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        expected.append(projection if projection @ centred.sum(axis=1) >= 0 else -projection)
    expected = np.stack(expected).reshape(b, h, w)
    maps = ki.EigenCAM(cnn).explain(images, upsample=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())
    # Class-agnostic: the target does not matter.
    np.testing.assert_allclose(ki.EigenCAM(cnn).explain(images, target=2, upsample=False), maps)
    # Fewer positions than channels (a small map of a wide layer) takes the other Gram matrix.
    from keras_interp.explainers.cam import _first_component

    for p, k in ((9, 40), (40, 9)):
        m = np.random.default_rng(p).normal(size=(3, p, k)).astype("float32")
        got = _first_component(tf.constant(m)).numpy()
        for row, mi in zip(got, m.astype(np.float64)):
            _, _, vt = np.linalg.svd(mi, full_matrices=False)
            np.testing.assert_allclose(np.abs(row), np.abs(mi @ vt[0]), rtol=1e-4, atol=1e-5)


def test_expected_gradients_over_its_documented_draws(cnn, images):
    baselines = np.random.default_rng(7).uniform(size=(5, 12, 12, 3)).astype("float32")
    samples, seed, classes = 7, 2, [0, 2, 1, 1]
    rng = np.random.default_rng(seed)  # the draws ExpectedGradients documents
    indices, alphas = rng.integers(0, 5, samples), rng.uniform(0.0, 1.0, samples)
    twin = _twin_logits(cnn)
    expected = np.zeros(images.shape)
    for j, a in zip(indices, alphas):
        reference = baselines[j][None]
        xs = tf.constant(reference + a * (images - reference))
        with tf.GradientTape() as tape:
            tape.watch(xs)
            score = tf.reduce_sum(tf.gather(twin(xs), classes, axis=1, batch_dims=1))
        expected += (images - reference) * tape.gradient(score, xs).numpy() / samples
    explainer = ki.ExpectedGradients(cnn, baselines, samples=samples, seed=seed, batch_size=8)
    attr = explainer.attribute(images, target=classes)
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    # A batch of one gives the same draws: results do not depend on the batch.
    np.testing.assert_allclose(explainer.attribute(images[1:2], target=classes[1]), attr[1:2], rtol=1e-5, atol=1e-8)


def test_expected_gradients_on_a_linear_model(linear):
    model, w, b = linear
    x = np.random.default_rng(3).normal(size=(2, 6, 5, 2)).astype("float32")
    baselines = np.random.default_rng(4).normal(size=(4, 6, 5, 2)).astype("float32")
    samples, seed = 400, 0
    indices = np.random.default_rng(seed).integers(0, 4, samples)
    drawn_mean = baselines[indices].mean(axis=0)  # E[x'] over the draws
    attr = ki.ExpectedGradients(model, baselines, samples=samples, seed=seed).attribute(x, target=1)
    np.testing.assert_allclose(attr, (x - drawn_mean) * w[:, 1].reshape(6, 5, 2), rtol=1e-4, atol=1e-5)
    # Completeness in expectation: the attribution sums to f(x) - E[f(x')].
    logits = x.reshape(2, -1) @ w + b
    at_baselines = (baselines[indices].reshape(samples, -1) @ w + b).mean(axis=0)
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), logits[:, 1] - at_baselines[1], rtol=1e-4)
    with pytest.raises(ValueError, match="Baselines height is 4 but the model expects 6"):
        ki.ExpectedGradients(model, np.zeros((3, 4, 4, 2)))


def test_ablation_cam_weights_by_the_score_lost_without_each_channel(cnn, images):
    classes = [0, 2, 1, 1]
    twin = _twin_logits(cnn)
    a, _, logits = _features_and_gradients(cnn, "conv2", images, classes)
    score = logits[np.arange(4), classes]
    kernel, bias = twin.get_layer("conv2").get_weights()
    weights = []
    for k in range(kernel.shape[-1]):  # channel k off: its filter and bias zeroed in a copy
        ablated = _twin_logits(cnn)
        kernel_k, bias_k = kernel.copy(), bias.copy()
        kernel_k[..., k], bias_k[k] = 0.0, 0.0
        ablated.get_layer("conv2").set_weights([kernel_k, bias_k])
        weights.append((score - ablated(images).numpy()[np.arange(4), classes]) / score)
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, np.stack(weights, axis=1)), 0)
    maps = ki.AblationCAM(cnn, batch_size=8).explain(images, target=classes, upsample=False)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert expected.max() > 0
