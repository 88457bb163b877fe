"""Lucid's Fourier image, MaCo's phase-only spectrum, the robustness transforms and Adam, against
NumPy and hand-derived identities; the recipes of the class-model and channel generators."""

import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp.visualize.parameterization import (
    COLOR_CORRELATION, Crop, FourierImage, MaCoImage, Pad, ParameterizedAscent, PixelImage, RandomRotate,
    RandomScale,
)


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


def test_the_fourier_image_is_the_scaled_spectrum_transformed_back():
    shape = (6, 5, 3)
    fourier = FourierImage(sd=0.5, decay=1.0).for_shape(shape)
    params = fourier.initial(2, shape, seed=0)
    fy, fx = np.fft.fftfreq(6)[:, None], np.fft.rfftfreq(5)[None, :]
    scale = np.sqrt(6 * 5) / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1 / 6)  # 1/f, floored at one cycle per image
    spatial = np.fft.irfft2((params[0] + 1j * params[1]) * scale, s=(6, 5)).transpose(0, 2, 3, 1) / 4
    want = 0.2 + 0.6 * _sigmoid(spatial @ COLOR_CORRELATION.T)  # decorrelated colours, value range [0.2, 0.8]
    np.testing.assert_allclose(fourier(tf.constant(params), 0.2, 0.8).numpy(), want, rtol=1e-5, atol=1e-6)
    grey = FourierImage(decorrelate=True).for_shape((6, 5, 1))  # one channel: no colour matrix
    p = grey.initial(1, (6, 5, 1), 0)
    np.testing.assert_allclose(grey(tf.constant(p), 0.0, 1.0).numpy(), _sigmoid(grey.spatial(p, 6, 5).numpy()),
                               rtol=1e-6)


def test_maco_keeps_its_magnitude_whatever_the_phase():
    shape = (8, 8, 3)
    images = np.random.default_rng(0).uniform(size=(5,) + shape).astype("float32")
    magnitude = MaCoImage.magnitude_of(images)
    assert magnitude.shape == (3, 8, 5)
    maco = MaCoImage(magnitude).for_shape(shape)
    for seed in (0, 1):
        phase = tf.constant(maco.initial(1, shape, seed))
        spectrum = tf.complex(magnitude * tf.cos(phase), magnitude * tf.sin(phase))
        spatial = tf.signal.irfft2d(spectrum, fft_length=[8, 8]).numpy()
        # Columns 1..3 are free of rfft's Hermitian constraint: their magnitude is exactly the one fixed.
        np.testing.assert_allclose(np.abs(np.fft.rfft2(spatial))[..., 1:4], magnitude[None, ..., 1:4], rtol=1e-4,
                                   atol=1e-5)
        out = maco(phase, 0.0, 1.0).numpy()
        assert out.shape == (1,) + shape and 0 < out.min() and out.max() < 1
    with pytest.raises(ValueError, match="MaCo's magnitude has shape"):
        MaCoImage(np.ones((4, 3))).for_shape(shape)


def test_transforms_against_numpy():
    x = tf.constant(np.random.default_rng(0).uniform(size=(2, 7, 7, 3)).astype("float32"))
    key = tf.constant([3, 4])
    # A quarter turn about the centre of a square image is numpy's rot90 (counter-clockwise).
    np.testing.assert_allclose(RandomRotate([90])(x, key).numpy(), np.rot90(x.numpy(), k=1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(RandomRotate([0])(x, key).numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(RandomScale([1.0])(x, key).numpy(), x.numpy(), atol=1e-6)
    padded = Pad(2)(x, key, centre=0.5).numpy()
    assert padded.shape == (2, 11, 11, 3) and (padded[:, :2] == 0.5).all()
    np.testing.assert_allclose(padded[:, 2:-2, 2:-2], x.numpy(), atol=1e-6)
    cropped = Crop(3)(tf.constant(padded), key).numpy()
    assert cropped.shape == (2, 8, 8, 3)
    assert any(np.array_equal(cropped, padded[:, i:i + 8, j:j + 8]) for i in range(4) for j in range(4))


def test_adams_first_step_moves_every_parameter_by_the_rate_along_its_gradients_sign():
    weights = tf.constant(np.random.default_rng(1).normal(size=(1, 4, 4, 1)).astype("float32"))
    ascent = ParameterizedAscent(lambda x: tf.reduce_sum(x * weights, axis=[1, 2, 3]), PixelImage(sd=0.3), [],
                                 (0.0, 1.0), learning_rate=0.05)
    start = PixelImage(sd=0.3).initial(2, (4, 4, 1), seed=3)
    result = ascent.run(2, (4, 4, 1), steps=1, seed=3)
    moved = np.log(result.images / (1 - result.images)) - start  # back through the sigmoid
    np.testing.assert_allclose(moved, np.broadcast_to(0.05 * np.sign(weights.numpy()), moved.shape), atol=1e-4)
    assert result.history.shape == (1, 2)
    np.testing.assert_allclose(result.history[0], (_sigmoid(start) * weights.numpy()).sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("recipe", ["fourier", "maco"])
def test_recipes_raise_the_class_logit_and_the_channel(recipe):
    model = tiny_cnn((16, 16, 3), activation=None)
    generator = ki.ClassModelVisualization(model, recipe=recipe)
    images = generator.visualize([0, 2], steps=32, seed=0)
    assert images.shape == (2, 16, 16, 3) and np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    logits = model.predict(images, verbose=0)
    start = model.predict(np.full((1, 16, 16, 3), 0.5, "float32"), verbose=0)[0]
    assert logits[0, 0] > start[0] and logits[1, 2] > start[2]
    assert generator.history.shape == (32, 2) and generator.history[-8:].mean() > generator.history[:8].mean()
    features = ki.FeatureVisualization(model, "conv2", recipe=recipe).visualize([1], steps=8)
    assert features.shape == (1, 16, 16, 3) and np.isfinite(features).all()


def test_recipe_errors():
    model = tiny_cnn((16, 16, 3))
    with pytest.raises(ValueError, match="recipe must be one of"):
        ki.ClassModelVisualization(model, recipe="lucid2")
    with pytest.raises(ValueError, match="regularizers are the pixel recipe's"):
        ki.ClassModelVisualization(model, recipe="fourier", regularizers=[ki.visualize.L2Decay()])


def test_deep_dream_on_a_class_boosts_it_and_stays_a_version_of_the_photo():
    model = tiny_cnn((16, 16, 3), activation=None)  # GAP head: runs on any size
    photo = np.random.default_rng(0).uniform(0.2, 0.8, size=(24, 32, 3)).astype("float32")
    scorer = ki.targets.Scorer(model)
    before = scorer(photo[None]).numpy()[0]
    dreams = {c: ki.DeepDream(model, target=c).dream(photo, octaves=2, steps=10, step_size=0.01, tile_size=16, seed=0)
              for c in (0, 2)}
    after = {c: scorer(d[None]).numpy()[0] for c, d in dreams.items()}
    # Each dream raises its own class, and more than the other class's dream does.
    assert after[2][2] > before[2] and after[0][0] > before[0]
    assert after[2][2] > after[0][2] and after[0][0] > after[2][0]
    for dream in dreams.values():
        assert dream.shape == photo.shape and np.abs(dream - photo).mean() < 0.1 * np.ptp(photo)
    flat = ki.models.reference_cnn((16, 16, 3), 3, head="flatten")  # a fixed-size head
    with pytest.raises(ValueError, match="whose head needs 16x16 inputs"):
        ki.DeepDream(flat, target=1).dream(photo, steps=1)
    assert ki.DeepDream(flat, target=1).dream(photo[:16, :16], octaves=1, steps=2).shape == (16, 16, 3)
    for kwargs, message in (({"target": 3}, r"class index in \[0, 3\)"), ({"target": 1, "layers": ["conv1"]}, "not both")):
        with pytest.raises(ValueError, match=message):
            ki.DeepDream(model, **kwargs)


def test_diversity_gives_a_channel_images_that_differ():
    from keras_interp import graph
    from keras_interp.visualize.class_model import gram_similarity

    maps = np.random.default_rng(0).normal(size=(4, 3, 5, 2)).astype("float32")
    flat = maps.reshape(4, -1, 2) - maps.reshape(4, -1, 2).mean(axis=1, keepdims=True)
    grams = np.stack([(f.T @ f).ravel() for f in flat])
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    cosine = grams @ grams.T
    want = [cosine[0, 1], cosine[0, 1], cosine[2, 3], cosine[3, 2]]  # groups of 2: (0, 1), (2, 3)
    np.testing.assert_allclose(gram_similarity(tf.constant(maps), 2).numpy(), want, rtol=1e-5)

    model = tiny_cnn((16, 16, 3))
    generator = ki.FeatureVisualization(model, "conv2")
    seeds = np.concatenate([generator.visualize([1], steps=48, seed=s) for s in range(3)])
    diverse = generator.visualize([1, 4], steps=48, seed=0, diversity=3)
    assert diverse.shape == (6, 16, 16, 3) and np.isfinite(diverse).all()

    def similarity(images):
        _, (features,) = graph.run(model, tf.constant(images), [generator._site], stop_after_taps=True)
        return float(np.mean(gram_similarity(features, 3)))

    assert similarity(diverse[:3]) < similarity(seeds) - 0.05
    with pytest.raises(ValueError, match="diversity must be an int >= 1"):
        generator.visualize([1], diversity=0)


def test_the_composed_affine_transform_is_the_rotation_scale_and_shift_it_draws():
    from keras_interp.visualize.parameterization import RandomAffine

    x = tf.constant(np.random.default_rng(0).uniform(size=(1, 9, 9, 2)).astype("float32"))
    key = tf.constant([1, 2])
    np.testing.assert_allclose(RandomAffine(0, [1.0], [90])(x, key).numpy(), np.rot90(x.numpy(), 1, axes=(1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(RandomAffine(0, [1.0], [0])(x, key).numpy(), x.numpy(), atol=1e-6)
    # A shift by whole pixels moves the image and fills the border with the centre of the range.
    shifted = RandomAffine(1, [1.0], [0])(x, key, centre=0.5).numpy()
    found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
             if np.allclose(shifted[0, max(0, -dy):9 - max(0, dy), max(0, -dx):9 - max(0, dx)],
                            x.numpy()[0, max(0, dy):9 + min(0, dy), max(0, dx):9 + min(0, dx)], atol=1e-5)]
    assert len(found) == 1
    dy, dx = found[0]
    if dy or dx:
        border = shifted[0, -1] if dy > 0 else shifted[0, 0] if dy < 0 else shifted[0, :, -1] if dx > 0 else shifted[0, :, 0]
        np.testing.assert_allclose(border, 0.5)
