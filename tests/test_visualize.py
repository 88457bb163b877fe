"""Gradient ascent: the objective rises, pixels stay in range, regularizers do what they say."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import graph
from keras_interp.visualize import ClipContribution, ClipNorm, GaussianBlur, GradientAscent, Jitter, L2Decay, State


@pytest.fixture(scope="module")
def trained():
    """The reference CNN (width 8) trained briefly on 24x24 shapes, and its training images."""
    keras.utils.set_random_seed(0)
    data = ki.datasets.shapes(800, image_size=24, seed=0)
    model = ki.reference_cnn((24, 24, 3), num_classes=len(data.class_names), width=8)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(data.images, data.labels, epochs=10, batch_size=32, verbose=0)
    return model, data.images


# The default (Lucid's "fourier") and the pixel recipe.
@pytest.mark.parametrize("recipe", [None, "yosinski"])
def test_class_models_beat_every_training_image_and_the_objective_rises_for_each(trained, recipe):
    model, images = trained
    generator = ki.ClassModelVisualization(model, recipe=recipe)
    pictures = generator.visualize(steps=200, seed=0)
    assert pictures.shape == (4, 24, 24, 3) and pictures.dtype == np.float32
    logits = ki.Scorer(model)(pictures).numpy()
    best_real = ki.Scorer(model)(images).numpy().max(axis=0)
    assert (np.diag(logits) > best_real).all(), (np.diag(logits), best_real)
    history = generator.history
    assert history.shape == (200, 4)
    assert (history[-10:].mean(axis=0) > history[0]).all()  # every class, not on average
    assert pictures.min() >= 0.0 and pictures.max() <= 1.0


def test_pixels_stay_in_the_value_range_and_the_range_can_come_from_data():
    model = tiny_cnn()
    for value_range, want in (((0.2, 0.7), (0.2, 0.7)), (np.linspace(-1, 1, 12 * 12 * 3).reshape(1, 12, 12, 3), (-1, 1))):
        generator = ki.ClassModelVisualization(model, value_range=value_range, step_size=0.2)
        pictures = generator.visualize([0, 2], steps=20)
        assert generator.value_range == want
        assert pictures.min() >= want[0] - 1e-6 and pictures.max() <= want[1] + 1e-6
        assert np.isclose(pictures, want[1]).any() or np.isclose(pictures, want[0]).any()  # the clip is reached


def _total_variation(x):
    return np.abs(np.diff(x, axis=1)).sum() + np.abs(np.diff(x, axis=2)).sum()


def test_blur_lowers_total_variation_and_same_seed_gives_same_image():
    model = tiny_cnn()
    plain = ki.ClassModelVisualization(model, regularizers=[]).visualize(steps=40, seed=3)
    blurred = ki.ClassModelVisualization(model, regularizers=[GaussianBlur(1.0, every=4)]).visualize(steps=40, seed=3)
    assert _total_variation(blurred) < 0.8 * _total_variation(plain)
    generator = ki.ClassModelVisualization(model, regularizers=[Jitter(2), L2Decay(1e-3)])
    a, b = generator.visualize(steps=10, seed=5), generator.visualize(steps=10, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generator.visualize(steps=10, seed=6))


def test_one_trace_per_shape():
    generator = ki.ClassModelVisualization(tiny_cnn())
    generator.visualize([0, 1], steps=5)
    generator.visualize([2, 0], steps=5, seed=9)
    assert generator.trace_count == 1
    generator.visualize([0, 1, 2], steps=5)  # a batch of 3: a new shape
    assert generator.trace_count == 2


def _state(grad=None, step=0, steps=100):
    return State(grad, tf.constant(step), tf.constant(steps), tf.constant(0), 0.0, 1.0)


def test_regularizers_against_references():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 9, 11, 3)).astype("float32")
    np.testing.assert_allclose(L2Decay(0.1)(tf.constant(x), _state()), x - 0.1 * (x - 0.5), rtol=1e-6)
    # Blur: OpenCV's Gaussian blur (9x9 for sigma 1: truncated at 4 sigma as scipy's, Yosinski's;
    # border reflected without the edge pixel).
    want = np.stack([cv2.GaussianBlur(img, (9, 9), 1.0, borderType=cv2.BORDER_REFLECT_101) for img in x])
    blur = GaussianBlur(1.0, every=4)
    np.testing.assert_allclose(blur(tf.constant(x), _state(step=3)), want, atol=1e-5)
    np.testing.assert_array_equal(blur(tf.constant(x), _state(step=2)), x)  # not due: unchanged
    np.testing.assert_array_equal(blur(tf.constant(x), _state(step=3, steps=4)), x)  # never on the last step
    # Jitter rolls by at most `pixels` in each direction.
    rolled = Jitter(2)(tf.constant(x), _state(step=7)).numpy()
    assert any(np.array_equal(rolled, np.roll(x, (dy, dx), axis=(1, 2))) for dy in range(-2, 3) for dx in range(-2, 3))
    # Clipping resets the lowest 30% of pixels (by norm, or by contribution) to the centre.
    clipped = ClipNorm(30)(tf.constant(x), _state()).numpy()
    norm = np.linalg.norm(x - 0.5, axis=-1)
    reset = np.all(clipped == 0.5, axis=-1)
    assert np.allclose(reset.mean(axis=(1, 2)), 0.3, atol=0.02)
    for i in range(2):  # the threshold is per image
        assert norm[i][reset[i]].max() <= norm[i][~reset[i]].min()
    grad = rng.normal(size=x.shape).astype("float32")
    clipped = ClipContribution(30)(tf.constant(x), _state(tf.constant(grad))).numpy()
    contribution = np.abs(((x - 0.5) * grad).sum(-1))
    reset = np.all(clipped == 0.5, axis=-1)
    for i in range(2):
        assert contribution[i][reset[i]].max() <= contribution[i][~reset[i]].min()


def test_jitter_is_undone_in_the_gradient():
    """With a translation-equivariant objective, jitter must not move where the gradient lands."""
    weight = np.zeros((1, 8, 8, 1), np.float32)
    weight[0, 2, 5, 0] = 1.0
    objective = lambda x: tf.reduce_sum(x * weight, axis=[1, 2, 3])  # noqa: E731 - one pixel's value
    ascent = GradientAscent(objective, [Jitter(3)], (0.0, 1.0), step_size=0.1)
    out = ascent.run(np.full((1, 8, 8, 1), 0.5, np.float32), steps=1, seed=1).images
    changed = np.argwhere(out[0, ..., 0] != 0.5)
    assert len(changed) == 1  # one pixel moved, wherever the jitter rolled the view to


def test_feature_visualization_optimizes_the_pre_activation_of_dead_channels():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    conv = keras.layers.Conv2D(3, 3, activation="relu", name="conv")
    h = conv(inputs)
    backbone = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="top")(h), name="backbone")
    outer_in = keras.Input((12, 12, 3))
    model = keras.Model(outer_in, keras.layers.Dense(2)(keras.layers.Flatten()(backbone(outer_in))))
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, np.array([0.0, -50.0, 0.0], np.float32)])  # channel 1 is off everywhere
    for objective in ("mean", "center"):
        generator = ki.FeatureVisualization(model, "backbone/conv", objective=objective)
        assert generator.layer == "backbone/conv"
        generator.visualize([0, 1, 2], steps=30)
        assert (generator.history[-1] > generator.history[0]).all(), generator.history[[0, -1]]
    relu_layer = ki.FeatureVisualization(model, "backbone/top").visualize(1, steps=5)
    assert relu_layer.shape == (1, 12, 12, 3)


def _features_norm(model, layer, x):
    site = graph.find_site(model, layer)
    _, (f,) = graph.run(model, tf.constant(x), [site], stop_after_taps=True)
    return float(tf.reduce_mean(tf.square(f)))


def test_deep_dream_raises_the_norm_keeps_shape_and_range_on_a_larger_photo():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same", name="c2")(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h)))  # fixed-size head
    photos, _ = ki.datasets.photos(image_size=48, names=("coffee",))
    photo = np.asarray(photos[0][:40] * 0.6 + 0.2, np.float32)  # 40x48, the model takes 12x12
    dream = ki.DeepDream(model, layers=["c1", "c2"])
    out = dream.dream(photo, octaves=3, steps=8, tile_size=16, seed=0)
    assert out.shape == photo.shape and out.dtype == np.float32
    assert out.min() >= photo.min() - 1e-6 and out.max() <= photo.max() + 1e-6
    before = _features_norm(model, "c2", photo[None]) + _features_norm(model, "c1", photo[None])
    after = _features_norm(model, "c2", out[None]) + _features_norm(model, "c1", out[None])
    assert after > 1.2 * before
    np.testing.assert_array_equal(out, dream.dream(photo, octaves=3, steps=8, tile_size=16, seed=0))
    # Tiles change the memory, not the result's kind: one big tile also raises the norm.
    whole = dream.dream(photo[None], octaves=1, steps=4, tile_size=512)
    assert whole.shape == (1,) + photo.shape


def test_bad_arguments():
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"class 7 is out of range: the model has 3 classes"):
        ki.ClassModelVisualization(model).visualize([7])
    for bad in ([], True, [1.5]):
        with pytest.raises(TypeError, match="classes must be an int or a non-empty sequence of ints"):
            ki.ClassModelVisualization(model).visualize(bad)
    with pytest.raises(TypeError, match="Expected a keras.Model"):
        ki.ClassModelVisualization("model.keras")
    with pytest.raises(ValueError, match="percentile in"):
        ClipNorm(150)
    with pytest.raises(ValueError, match="channel 9 is out of range: layer 'conv2' has 6 channels"):
        ki.FeatureVisualization(model, "conv2").visualize([9])
    with pytest.raises(ValueError, match="objective must be 'mean' or 'center'"):
        ki.FeatureVisualization(model, "conv2", objective="max")
    with pytest.raises(ValueError, match="low < high"):
        ki.ClassModelVisualization(model, value_range=(1, 0))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ki.ClassModelVisualization(model).visualize(steps=0)
    with pytest.raises(TypeError, match="regularizer must be a callable"):
        GradientAscent(lambda x: x[:, 0, 0, 0], ["blur"])
    with pytest.raises(ValueError, match=r"Expected the photo as an \(H, W, C\) image or an \(N, H, W, C\) batch"):
        ki.DeepDream(model).dream(np.zeros((12, 12)))
    with pytest.raises(ValueError, match="tile_size must be an int >= 1"):
        ki.DeepDream(model).dream(np.zeros((12, 12, 3)), tile_size=0)


def test_a_model_giving_nan_gets_nan_images_and_the_last_step_counts():
    model = tiny_cnn()
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.full_like(bias, np.nan)])
    assert np.isnan(ki.ClassModelVisualization(model).visualize([0, 1], steps=5)).all()
    # A single step without regularizers: the image after it scores higher, so it is returned.
    fresh = tiny_cnn()
    generator = ki.ClassModelVisualization(fresh, regularizers=[])
    image = generator.visualize([0], steps=1, seed=0)
    assert ki.Scorer(fresh)(image).numpy()[0, 0] > generator.history[0, 0]


def test_subclassed_models_take_size():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3)
            self.head = keras.layers.Dense(4)

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    net = Net()
    net(np.zeros((1, 10, 10, 3), "float32"))
    with pytest.raises(ValueError, match=r"pass size=\(height, width, channels\)"):
        ki.ClassModelVisualization(net)
    generator = ki.ClassModelVisualization(net, size=(10, 10, 3))
    images = generator.visualize(steps=10)
    assert images.shape == (4, 10, 10, 3) and (generator.history.max(axis=0) > generator.history[0]).all()
