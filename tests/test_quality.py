"""Deletion / insertion curves and the randomization check, against NumPy references."""

import cv2
import keras
import numpy as np
import pytest

import keras_interp as ki
from conftest import linear_model, tiny_cnn
from keras_interp import metrics
from keras_interp.metrics.randomization import _randomize


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _reference_curve(w, b, x, map_, substrate, cls, steps, inserting):
    """One image's curve, pixel by pixel in NumPy: f(x) = softmax(W.flatten(x) + b)[cls]."""
    height, width = map_.shape
    n = height * width
    order = np.argsort(-map_.ravel(), kind="stable")
    curve = []
    for i in range(steps + 1):
        moved = np.zeros(n, bool)
        moved[order[: int(np.floor(i * n / steps + 0.5))]] = True
        moved = moved.reshape(height, width)[..., None]
        image = np.where(moved, x, substrate) if inserting else np.where(moved, substrate, x)
        curve.append(_softmax(image.ravel() @ w + b)[cls])
    return np.array(curve)


@pytest.mark.parametrize("inserting", [False, True])
@pytest.mark.parametrize("substrate", ["zero", "mean", "blur", "array"])
def test_curves_match_a_numpy_reference(linear, inserting, substrate):
    model, w, b = linear
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 5, 2)).astype("float32")
    maps = rng.normal(size=(3, 6, 5)).astype("float32")
    if substrate == "zero":
        subs = np.zeros_like(x)
    elif substrate == "mean":
        subs = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    elif substrate == "blur":
        subs = np.stack([np.dstack([cv2.GaussianBlur(np.ascontiguousarray(im[..., c]), (11, 11), 5.0,
                                                     borderType=cv2.BORDER_REFLECT) for c in range(2)]) for im in x])
    else:
        subs = substrate = rng.normal(size=(6, 5, 2)).astype("float32")
        subs = np.broadcast_to(subs, x.shape)
    curve = metrics.insertion_curve if inserting else metrics.deletion_curve
    got = curve(model, x, maps, steps=8, substrate=substrate)
    top = (x.reshape(3, -1) @ w + b).argmax(axis=1)
    want = np.stack([_reference_curve(w, b, x[i], maps[i], subs[i], top[i], 8, inserting) for i in range(3)])
    assert got.shape == (3, 9) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    area = (metrics.insertion_auc if inserting else metrics.deletion_auc)(model, x, maps, steps=8, substrate=substrate)
    np.testing.assert_allclose(area, np.trapezoid(want, dx=1 / 8, axis=1), rtol=1e-5)


def test_targets_softmax_head_chunking_and_step_count(cnn, images):
    maps = np.random.default_rng(2).normal(size=(4, 12, 12))
    probabilities = cnn.predict(images, verbose=0)
    curves = metrics.deletion_curve(cnn, images, maps, steps=6)
    # Point 0 is the model's own softmax probability of the top class: no second softmax.
    np.testing.assert_allclose(curves[:, 0], probabilities.max(axis=1), rtol=1e-5)
    fixed = metrics.deletion_curve(cnn, images, maps, target=[2, 0, 1, 2], steps=6)
    np.testing.assert_allclose(fixed[:, 0], probabilities[np.arange(4), [2, 0, 1, 2]], rtol=1e-5)
    # Small chunks and split batches change nothing.
    np.testing.assert_allclose(metrics.deletion_curve(cnn, images, maps, steps=6, batch_size=3), curves, atol=1e-6)
    single = np.concatenate([metrics.deletion_curve(cnn, images[i:i + 1], maps[i:i + 1], steps=6) for i in range(4)])
    np.testing.assert_allclose(single, curves, atol=1e-6)
    # A callable target's value is followed as it is: here ten times a logit (the full image last).
    scaled = metrics.insertion_curve(cnn, images, maps, target=lambda y: y[:, 1] * 10.0, steps=6)
    np.testing.assert_allclose(scaled[:, -1], 10.0 * np.asarray(ki.Scorer(cnn)(images))[:, 1], rtol=1e-5)
    # At most one step per pixel.
    assert metrics.deletion_curve(cnn, images[:1], maps[:1], steps=1000).shape == (1, 145)


def _region_model():
    """Two classes on 8x8 grey images: logit_0 = 2 * sum of the bottom-right 4x4 block, logit_1 = 0."""
    region = np.zeros((8, 8), bool)
    region[4:, 4:] = True
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    kernel = np.zeros((64, 2), "float32")
    kernel[region.ravel(), 0] = 2.0 / 16
    model.layers[-1].set_weights([kernel, np.zeros(2, "float32")])
    return model, region


def test_oracle_beats_random_beats_constant_on_every_metric():
    model, region = _region_model()
    x = np.ones((6, 8, 8, 1), "float32")
    masks = np.repeat(region[None], 6, axis=0)
    rng = np.random.default_rng(0)
    oracle = masks.astype("float32") + rng.uniform(0, 0.01, masks.shape)
    random = rng.uniform(size=masks.shape)
    constant = np.zeros(masks.shape)  # ties are broken in a fixed random order: a random ranking
    worst = 1.0 - oracle  # the region last
    kw = dict(target=0, steps=16, substrate="zero")
    deletion = [metrics.deletion_auc(model, x, m, **kw).mean() for m in (oracle, random, constant, worst)]
    insertion = [metrics.insertion_auc(model, x, m, **kw).mean() for m in (oracle, random, constant, worst)]
    assert deletion[0] < deletion[1] < deletion[3] and deletion[0] < deletion[2] < deletion[3]
    assert insertion[0] > insertion[1] > insertion[3] and insertion[0] > insertion[2] > insertion[3]
    assert deletion[2] == pytest.approx(deletion[1], abs=0.1)  # constant ~ random, not row by row
    pointing = [metrics.pointing_game(m, masks) for m in (oracle, random, constant)]
    energy = [metrics.energy_pointing_game(m, masks) for m in (oracle, random, constant + 1.0)]
    assert pointing[0] == 1.0 and pointing[2] == 0.0 and pointing[1] < 1.0
    assert energy[0] > 0.98 and energy[1] == pytest.approx(0.25, abs=0.05) and energy[2] == pytest.approx(0.25)
    assert metrics.spearman(oracle, oracle) == pytest.approx(1.0)
    np.testing.assert_array_equal(metrics.spearman(oracle, constant), 0.0)


def test_a_model_that_ignores_its_input_gives_flat_curves():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.layers[-1].set_weights([np.zeros((64, 3), "float32"), np.array([1.0, 2.0, 3.0], "float32")])
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("float32")
    maps = np.random.default_rng(1).uniform(size=(2, 8, 8))
    p = _softmax(np.array([1.0, 2.0, 3.0]))[2]
    for curve in (metrics.deletion_curve, metrics.insertion_curve):
        np.testing.assert_allclose(curve(model, x, maps, steps=5), p, rtol=1e-6)
    np.testing.assert_allclose(metrics.deletion_auc(model, x, maps), metrics.insertion_auc(model, x, maps), rtol=1e-6)


def test_small_maps_are_resized_to_the_images(cnn, images):
    small = np.zeros((4, 3, 3), "float32")
    small[:, 2, 2] = 1.0
    big = np.stack([cv2.resize(m, (12, 12), interpolation=cv2.INTER_LINEAR) for m in small])
    np.testing.assert_allclose(metrics.deletion_curve(cnn, images, small, steps=4),
                               metrics.deletion_curve(cnn, images, big, steps=4), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(maps=np.zeros((3, 12, 12))), "3 maps but 4 inputs"),
        (dict(maps=np.zeros((4, 12, 12, 1))), r"Expected maps of shape \(batch, height, width\)"),
        (dict(maps=np.zeros((4, 3, 12))), r"Maps of size \(3, 12\) do not fit inputs of size \(12, 12\)"),
        (dict(maps=np.zeros((4, 24, 24))), r"Maps of size \(24, 24\) do not fit"),
        (dict(maps=np.full((4, 12, 12), np.nan)), "576 NaN or infinite values"),
        (dict(steps=0), "steps must be a positive int; received 0"),
        (dict(substrate="noise"), r"substrate must be one of \('blur', 'zero', 'mean'\)"),
        (dict(substrate=np.zeros((5, 5, 3))), r"substrate of shape \(5, 5, 3\) cannot be broadcast"),
        (dict(target=7), "target 7 is out of range"),
    ],
)
def test_curve_errors(cnn, images, kwargs, message):
    args = dict(maps=np.zeros((4, 12, 12)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        metrics.deletion_auc(cnn, images, **args)


def test_localization_errors():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match=r"1 masks are empty \(first: index 1\)"):
        metrics.pointing_game(np.ones((2, 4, 4)), masks)
    masks[1, 0, 0] = True
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.energy_pointing_game(np.full((2, 4, 4), np.inf), masks)
    with pytest.raises(ValueError, match=r"Maps of size \(4, 2\) do not fit masks"):
        metrics.pointing_game(np.ones((2, 4, 2)), masks)


def _reference_spearman(a, b):
    """Rank = number of smaller values + half the number of equal others; then Pearson."""
    def ranks(v):
        return np.array([(v < t).sum() + ((v == t).sum() - 1) / 2 for t in v])

    return np.corrcoef(ranks(a), ranks(b))[0, 1]


def test_spearman_and_ssim_against_references():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(3, 5, 5)).astype(float)  # many ties
    b = a + rng.normal(scale=1.5, size=a.shape)
    want = [_reference_spearman(u.ravel(), v.ravel()) for u, v in zip(a, b)]
    np.testing.assert_allclose(metrics.spearman(a, b), want, rtol=1e-6)
    np.testing.assert_allclose(metrics.spearman(a, -a), -1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.randomization.ssim(b, b * 3 + 1), 1.0, rtol=1e-5)
    assert metrics.randomization.ssim(a, b).max() < 0.9
    with pytest.raises(ValueError, match="of one shape"):
        metrics.spearman(a, b[:2])


def _snapshot(model):
    return [w.copy() for w in model.get_weights()], [id(layer) for layer in model.layers], model.to_json()


def test_randomization_leaves_the_model_untouched_and_lowers_gradient_similarity(cnn, images):
    before = _snapshot(cnn)
    maps = ki.Saliency(cnn).explain(images)
    result = metrics.randomization_check(ki.Saliency, cnn, images)
    assert list(result) == ["predictions", "conv2", "conv1"] == metrics.randomization.cascade_layers(cnn)
    assert result["conv1"] < 0.5 and all(-1.0 <= v <= 1.0 for v in result.values())
    after = _snapshot(cnn)
    assert all(np.array_equal(u, v) for u, v in zip(before[0], after[0])) and before[1:] == after[1:]
    np.testing.assert_array_equal(ki.Saliency(cnn).explain(images), maps)
    assert metrics.randomization_check(ki.Saliency, cnn, images) == result  # seeded
    assert metrics.randomization_check(ki.Saliency, cnn, images, last_only=True) == {"conv1": result["conv1"]}


def test_a_map_that_ignores_the_model_stays_identical(cnn, images):
    class InputOnly:
        def __init__(self, model):
            pass

        def explain(self, x, target=None):
            return np.asarray(x).mean(axis=-1)

    assert metrics.randomization_check(InputOnly, cnn, images) == {"predictions": 1.0, "conv2": 1.0, "conv1": 1.0}
    assert metrics.randomization_check(InputOnly, cnn, images, similarity="ssim", layers=["conv1"]) == \
        {"conv1": pytest.approx(1.0)}


def test_randomization_layers_nested_models_and_errors(images):
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inner_in)
    h = keras.layers.BatchNormalization(name="bn_a")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((12, 12, 3))
    h = backbone(keras.layers.Rescaling(2.0, offset=-1.0)(inputs))
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h))
    before = _snapshot(model)
    result = metrics.randomization_check(ki.GradCAM, model, images, layers=["backbone/conv_a", "head"])
    assert list(result) == ["head", "backbone/conv_a"]
    assert metrics.randomization.cascade_layers(model) == ["head", "backbone/bn_a", "backbone/conv_a"]
    assert all(np.array_equal(u, v) for u, v in zip(before[0], model.get_weights()))
    with pytest.raises(ValueError, match=r"Unknown layers \['conv9'\].*\['head', 'backbone/bn_a', 'backbone/conv_a'\]"):
        metrics.randomization_check(ki.GradCAM, model, images, layers=["conv9"])
    with pytest.raises(ValueError, match="similarity must be one of"):
        metrics.randomization_check(ki.GradCAM, model, images, similarity="pearson")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3)

        def call(self, x):
            return keras.ops.mean(self.conv(x), axis=(1, 2))

    sub = Subclassed()
    sub(images)
    with pytest.raises(ValueError, match="needs a functional or Sequential model"):
        metrics.randomization_check(ki.Saliency, sub, images)


def test_each_weight_is_redrawn_with_its_own_initializer_or_permuted():
    dense = keras.layers.Dense(4, kernel_initializer="glorot_uniform", bias_initializer="zeros")
    dense.build((None, 6))
    dense.bias.assign(np.ones(4, "float32"))
    kernel = dense.kernel.numpy()
    _randomize(dense, seed=3)
    assert not np.allclose(dense.kernel.numpy(), kernel) and np.all(dense.bias.numpy() == 0)
    first = dense.kernel.numpy()
    _randomize(dense, seed=3)
    np.testing.assert_array_equal(dense.kernel.numpy(), first)  # seeded
    assert np.abs(first).max() <= np.sqrt(6 / (6 + 4))  # a glorot-uniform draw

    class Custom(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=(5,), initializer="ones", name="scale")

    custom = Custom()
    custom.build((None, 5))
    custom.scale.assign(np.arange(5, dtype="float32"))
    _randomize(custom, seed=0)
    assert sorted(custom.scale.numpy()) == [0, 1, 2, 3, 4] and not np.array_equal(custom.scale.numpy(), np.arange(5))


def test_pointing_game_tolerance_is_a_euclidean_distance_to_the_mask():
    masks = np.zeros((4, 9, 9), bool)
    masks[:, 4, 4] = True
    maps = np.zeros((4, 9, 9))
    for i, (r, c) in enumerate([(4, 4), (4, 6), (6, 6), (4, 8)]):  # distances 0, 2, 2.83, 4
        maps[i, r, c] = 1.0
    np.testing.assert_array_equal(metrics.pointing_hits(maps, masks), [True, False, False, False])
    np.testing.assert_array_equal(metrics.pointing_hits(maps, masks, tolerance=2), [True, True, False, False])
    np.testing.assert_array_equal(metrics.pointing_hits(maps, masks, tolerance=3), [True, True, True, False])
    assert metrics.pointing_game(maps, masks, tolerance=4) == 1.0
    with pytest.raises(ValueError, match="tolerance must be a number of pixels >= 0; received -1"):
        metrics.pointing_game(maps, masks, tolerance=-1)


def test_ties_are_broken_in_a_fixed_random_order_not_row_by_row():
    maps = np.zeros((2, 6, 6))
    maps[0, 5, 5] = 1.0  # one hot pixel: first; the zeros after it
    ranks = metrics.faithfulness.pixel_ranks(maps)
    assert ranks[0, 5, 5] == 0 and sorted(ranks[0].ravel()) == list(range(36))
    rest = np.delete(ranks[0].ravel(), 35)
    assert not np.all(np.diff(rest) > 0)  # not row-major
    # Tied pixels keep one fixed relative order in every map (here: the constant map's).
    np.testing.assert_array_equal(np.argsort(rest), np.argsort(ranks[1].ravel()[:35]))
    np.testing.assert_array_equal(metrics.faithfulness.pixel_ranks(maps), ranks)  # seeded


def test_subclassed_softmax_model_is_not_softmaxed_twice(images):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return keras.ops.softmax(self.head(keras.ops.mean(self.conv(x), axis=(1, 2))) * 50.0)

    keras.utils.set_random_seed(0)
    model = Sub()
    outputs = np.asarray(model(images))
    maps = np.random.default_rng(0).uniform(size=images.shape[:3])
    with pytest.warns(UserWarning, match="look like probabilities"):
        curves = metrics.deletion_curve(model, images, maps, steps=3)
    np.testing.assert_allclose(curves[:, 0], outputs.max(axis=1), rtol=1e-5)  # the model's own probability


def test_the_cascade_is_cumulative_from_the_output_down(cnn, images):
    originals = {layer.name: [w.copy() for w in layer.get_weights()] for layer in cnn.layers if layer.weights}
    seen = []

    class Recorder:
        def __init__(self, model):
            seen.append([layer.name for layer in model.layers if layer.weights and not all(
                np.array_equal(a, b) for a, b in zip(layer.get_weights(), originals[layer.name]))])

        def explain(self, x, target=None):
            return np.asarray(x).mean(axis=-1)

    metrics.randomization_check(Recorder, cnn, images)
    assert seen == [[], ["predictions"], ["conv2", "predictions"], ["conv1", "conv2", "predictions"]]
    seen.clear()
    metrics.randomization_check(Recorder, cnn, images, layers=["conv1", "predictions"], last_only=True)
    assert seen == [[], ["conv1", "predictions"]]


def test_the_check_keeps_the_global_random_state(cnn, images):
    def draw():
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        return layer.kernel.numpy()

    keras.utils.set_random_seed(5)
    first = draw()
    keras.utils.set_random_seed(5)
    metrics.randomization_check(ki.Saliency, cnn, images, layers=["conv1"])
    np.testing.assert_array_equal(draw(), first)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, x: metrics.randomization_check(lambda model: 3, m, x), TypeError,
         "must return an explainer .* it returned int"),
        (lambda m, x: metrics.randomization_check(ki.Saliency, "model", x), TypeError, "Expected a keras.Model"),
        (lambda m, x: metrics.randomization_check(ki.Saliency, m, x, seed=0.5), ValueError, "seed must be an int"),
        (lambda m, x: metrics.randomization_check(ki.Saliency, m, x, layers=[]), ValueError, "layers is empty"),
        (lambda m, x: metrics.randomization_check(ki.Saliency, m, x, layers=["gap"]), ValueError,
         "or layers without weights"),
        (lambda m, x: metrics.pointing_game(np.ones((4, 12, 12)), np.ones((4, 12, 12)), tolerance="2"), ValueError,
         "tolerance must be a number of pixels"),
        (lambda m, x: metrics.deletion_auc(m, x, np.zeros((4, 12, 12)), substrate=None), ValueError,
         "substrate must be one of .* received None"),
        (lambda m, x: metrics.deletion_auc(m, x, np.zeros((4, 0, 0))), ValueError, "Expected maps of shape"),
        (lambda m, x: metrics.deletion_auc(m, x, "maps"), TypeError, "cannot be read as float32"),
        (lambda m, x: metrics.spearman(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2))), ValueError, "NaN"),
    ],
)
def test_quality_argument_errors(cnn, images, call, error, message):
    with pytest.raises(error, match=message):
        call(cnn, images)
