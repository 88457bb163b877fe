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


# MaCo without the redirected ReLU steps: the same engine, one trace fewer (suite time); fourier
# runs both phases (its default 16 redirected steps, then plain ones).
@pytest.mark.parametrize("recipe, redirect", [("fourier", None), ("maco", 0)])
def test_recipes_raise_the_class_logit_and_the_channel(recipe, redirect):
    model = tiny_cnn((16, 16, 3), activation=None)
    generator = ki.ClassModelVisualization(model, recipe=recipe, redirect_relu_steps=redirect)
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
    for steps in (-1, 2.5, True):
        with pytest.raises(ValueError, match="redirect_relu_steps must be an int >= 0"):
            ki.ClassModelVisualization(model, recipe="fourier", redirect_relu_steps=steps)
    with pytest.raises(ValueError, match="redirect_relu_steps belongs to the Adam recipes"):
        ki.FeatureVisualization(model, "conv2", redirect_relu_steps=16)
    with pytest.raises(ValueError, match="step_size is the pixel recipe's"):
        ki.ClassModelVisualization(model, recipe="fourier", step_size=0.1)
    # The class models' default is Lucid's recipe; the pixel recipe's arguments pick the pixel recipe.
    assert ki.ClassModelVisualization(model).recipe == "fourier"
    assert ki.ClassModelVisualization(model, regularizers=[]).recipe == "yosinski"
    assert ki.ClassModelVisualization(model, step_size=0.1).recipe == "yosinski"
    assert ki.FeatureVisualization(model, "conv2").recipe == "yosinski"


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


def test_fourier_recipe_rotates_by_the_degrees_asked_and_is_the_named_recipe_at_ten():
    from keras_interp.visualize.parameterization import robustness

    # -180 and 180 are one rotation, drawn once.
    for degrees, angles in ((10, list(range(-10, 11)) + 5 * [0]), (180, list(range(-179, 181)) + 5 * [0])):
        (affine,) = robustness(64, degrees)
        np.testing.assert_allclose(affine.cos.numpy(), np.cos(np.radians(angles)), atol=1e-6)
        np.testing.assert_allclose(affine.sin.numpy(), np.sin(np.radians(angles)), atol=1e-6)
    for bad in (181, -1, True, 2.5):
        with pytest.raises(ValueError, match=r"degrees must be an int in \[0, 180\]"):
            ki.visualize.fourier_recipe(bad)
    model = tiny_cnn((16, 16, 3), activation=None)
    named = ki.ClassModelVisualization(model, recipe="fourier", redirect_relu_steps=0).visualize([1], steps=4)
    same = ki.ClassModelVisualization(model, recipe=ki.visualize.fourier_recipe(10),
                                      redirect_relu_steps=0).visualize([1], steps=4)
    np.testing.assert_array_equal(named, same)
    for bad in (180, [1]):
        with pytest.raises(ValueError, match="or a callable shape"):
            ki.ClassModelVisualization(model, recipe=bad)
    with pytest.raises(ValueError, match=r"recipe fourier_recipe\(180\) has its own transforms"):
        ki.ClassModelVisualization(model, recipe=ki.visualize.fourier_recipe(180), regularizers=[])
    with pytest.raises(ValueError, match="must return \\(parameterization, transforms, learning rate\\)"):
        ki.ClassModelVisualization(model, recipe=lambda shape: 3).visualize([0], steps=2)


class _Given:
    """A parameterization that is the images themselves (the gradient w.r.t. the images)."""

    def __init__(self, images):
        self.images = np.asarray(images, np.float32)

    def initial(self, n, shape, seed):
        return self.images

    def __call__(self, params, low, high):
        return params


def _redirected_rule(z, g):
    """Lucid's redirected ReLU gradient in NumPy, per image: the plain gradient 1[z > 0] g where
    any of it is non-zero, else g except where an off unit (z < 0) is pushed down (g < 0)."""
    plain = g * (z > 0)
    dead = ~plain.reshape(len(z), -1).any(axis=1)
    plain[dead] = np.where((z[dead] < 0) & (g[dead] < 0), 0, g[dead])
    return plain


def test_the_redirected_relu_gradient_against_numpy_then_the_plain_gradient_exactly():
    import keras

    from keras_interp.visualize.redirect import gradients, redirected_relu_gradient, redirected_relus

    # A fused relu and a ReLU layer: x (3) -> relu(x W1) -> ReLU(h W2 + b2) -> . w3.
    w1 = np.array([[1.0, 0.5], [0.5, 1.0], [0.2, 0.3]], "float32")
    w2, b2 = np.array([[1.0, -2.0], [-0.5, 0.7]], "float32"), np.array([-0.5, -0.5], "float32")
    w3 = np.array([[2.0], [-1.0]], "float32")
    inputs = keras.Input((3,))
    h = keras.layers.Dense(2, activation="relu", name="d1")(inputs)
    h = keras.layers.ReLU(name="r2")(keras.layers.Dense(2, name="d2")(h))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="d3")(h))
    for name, weights in (("d1", [w1, np.zeros(2, "float32")]), ("d2", [w2, b2]), ("d3", [w3])):
        model.get_layer(name).set_weights(weights)
    # Image 0 has live units in both ReLUs; image 1 has every unit of both off.
    x = np.array([[2.0, 2.0, 2.0], [-2.0, -2.0, -2.0]], "float32")
    before = [w.copy() for w in model.get_weights()]
    ascent = ParameterizedAscent(lambda v: model(v)[:, 0], _Given(x), [], (0.0, 1.0), redirect_relu_steps=2)

    z1 = x @ w1
    z2 = np.maximum(z1, 0) @ w2 + b2
    g2 = np.broadcast_to(w3[:, 0], z2.shape).copy()
    want = _redirected_rule(z1, _redirected_rule(z2, g2) @ w2.T) @ w1.T
    with tf.GradientTape() as tape:
        v = tf.constant(x)
        tape.watch(v)
        plain = tape.gradient(tf.reduce_sum(model(v)), v).numpy()
    assert np.abs(plain[0]).sum() > 0 and not plain[1].any()  # image 1: no plain gradient at all
    np.testing.assert_allclose(want[1], [2.0, 1.0, 0.4], rtol=1e-6)  # worked by hand: only d1's unit 0 passes

    # The switch as a tensor of the step, in one compiled function: redirected, then plain bit for bit.
    @tf.function
    def switched(v, step):
        with redirected_relus(step < 2):
            scores = model(v)[:, 0]
            return scores, gradients(scores, v)

    scores, redirected = switched(tf.constant(x), tf.constant(0))
    np.testing.assert_allclose(scores.numpy(), model(x).numpy()[:, 0], rtol=1e-6)  # the forward is unchanged
    np.testing.assert_allclose(redirected.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(redirected.numpy()[0], plain[0])  # a live image keeps its plain gradient
    for step in (2, 5):
        np.testing.assert_array_equal(switched(tf.constant(x), tf.constant(step))[1].numpy(), plain)
    # The engine's redirected phase gives the same gradient.
    engine = tf.function(lambda p: ascent._gradient(p, tf.constant(0), tf.constant(0), redirect=True))
    np.testing.assert_allclose(engine(tf.constant(x))[1].numpy(), want, rtol=1e-6)

    # A run: the dead image moves only with the redirected steps; each phase is traced once.
    result = ascent.run(2, (3,), steps=4, seed=0)
    assert result.history.shape == (4, 2) and not np.allclose(result.images[1], x[1])
    traces = ascent.trace_count
    ascent.run(2, (3,), steps=3, seed=1)
    assert traces == 2 and ascent.trace_count == traces
    stuck = ParameterizedAscent(lambda v: model(v)[:, 0], _Given(x), [], (0.0, 1.0)).run(2, (3,), steps=4, seed=0)
    np.testing.assert_array_equal(stuck.images[1], x[1])
    # The model is not changed: same weights, and a graph gradient taken outside the rule is plain.
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    outside = tf.function(lambda v: tf.gradients(tf.reduce_sum(model(v)), v)[0])
    np.testing.assert_array_equal(outside(tf.constant(x)).numpy(), plain)

    # Relu6 (ReLU(6.)): an off unit above 6 passes only what pushes it down; a tensor without a
    # batch axis is decided whole.
    z = tf.constant([[-1.0, 7.0, 8.0], [3.0, 7.0, -2.0]])
    g = tf.constant([[1.0, -1.0, 2.0], [1.0, 1.0, 1.0]])
    plain6 = tf.raw_ops.Relu6Grad(gradients=g, features=z)
    np.testing.assert_array_equal(redirected_relu_gradient(z, g, plain6, high=6.0).numpy(),
                                  [[1.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(redirected_relu_gradient(z[0], g[0], tf.zeros(3)).numpy(), [1.0, -1.0, 2.0])


def test_the_affine_transforms_gradient_is_tensorflows_own_without_the_matrix_inverse():
    from keras_interp.visualize.parameterization import RandomAffine

    x = tf.constant(np.random.default_rng(0).uniform(size=(2, 9, 11, 3)).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=(2, 9, 11, 3)).astype("float32"))
    transform = RandomAffine(2, [0.9, 1.1], [-10, 7, 20])
    for step in range(4):
        key = tf.constant([5, step])
        forward, _ = transform.transforms(x, key)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = transform(x, key, centre=0.5)
            # The raw op with TensorFlow's registered gradient (which inverts the matrix itself).
            theirs = tf.raw_ops.ImageProjectiveTransformV3(images=x, transforms=forward, output_shape=[9, 11],
                                                           interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.5)
            scores = tf.reduce_sum(weights * ours), tf.reduce_sum(weights * theirs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        np.testing.assert_allclose(tape.gradient(scores[0], x).numpy(), tape.gradient(scores[1], x).numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="RandomAffine takes pixels >= 0"):
        RandomAffine(2, [], [0])
