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


@pytest.mark.parametrize("cls", [ki.SquareGrad, ki.VarGrad])
def test_squaregrad_and_vargrad_over_smoothgrads_noise(cnn, images, cls):
    samples, noise, seed, classes = 6, 0.2, 3, [0, 2, 1, 1]
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
    np.testing.assert_allclose(attr, expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())
    assert expected.max() > 0 and (attr >= 0).all()
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
