"""1-D (Conv1D) and 3-D (Conv3D) models, models with several inputs and models with several outputs.

Every reference here is written beside the test and does not call the library's internals:
- logits are computed by hand from the model's own layers, `features @ kernel + bias` with the
  features read through keras.Model(model.inputs, head.input), so the softmax or sigmoid is
  removed by construction; gradients come from tf.GradientTape on those logits;
- CAM identities (mean CAM + bias == logit; Grad-CAM before its ReLU times the number of cells ==
  CAM on a GAP -> Dense model) are derived from the head's linearity;
- half-pixel linear upsampling is np.interp at source coordinates (j + 0.5) * l / L - 0.5 (np.interp
  clamps at the edges), applied axis by axis for volumes;
- occlusion is a NumPy loop over windows (every window start at `stride`, plus one flush with the
  far edge), averaging score drops over the windows that cover each position.
"""

import itertools
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp.explainers.cam import resize_nd, upsample_maps

L1 = 24                      # 1-D signal length (features: 12 after pooling)
VOL = (4, 8, 8)              # 3-D volume (features: 2 x 4 x 4 after pooling)
NUM_CLASSES = 3
CLASSES = np.array([0, 2, 1, 2])


# ----------------------------------------------------------------------------------------------
# Models and hand-written references


def conv_model(rank, seed=0, relu=True):
    """conv-relu, max pool, conv-relu ("conv2", the CAM layer), GAP, Dense(softmax) in 1-D or 3-D."""
    keras.utils.set_random_seed(seed)
    act = "relu" if relu else None
    if rank == 1:
        inputs = keras.Input((L1, 2), name="signal")
        x = keras.layers.Conv1D(4, 3, padding="same", activation=act, name="conv1")(inputs)
        x = keras.layers.MaxPooling1D(2, name="pool1")(x)
        x = keras.layers.Conv1D(5, 3, padding="same", activation=act, name="conv2")(x)
        x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    else:
        inputs = keras.Input(VOL + (2,), name="volume")
        x = keras.layers.Conv3D(3, 3, padding="same", activation=act, name="conv1")(inputs)
        x = keras.layers.MaxPooling3D(2, name="pool1")(x)
        x = keras.layers.Conv3D(4, 3, padding="same", activation=act, name="conv2")(x)
        x = keras.layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"conv{rank}d")
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    # A non-zero bias, so that "+ bias" in the CAM identity is checked.
    head.set_weights([kernel * 3.0, np.array([0.3, -0.2, 0.1], np.float32)])
    return model


def logits_fn(model, head_name):
    """x -> pre-activation logits of Dense `head_name`, computed by hand from the model's layers."""
    head = model.get_layer(head_name)
    features = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0], head.input)

    def logits(x):
        return tf.matmul(features(x, training=False), head.kernel) + head.bias

    return logits


def tape_gradients(fn, xs, classes):
    """(d sum_b fn(xs)[b, classes[b]] / d xs as numpy (a list, one per input), fn(xs) as numpy)."""
    xs = [tf.constant(a) for a in xs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = fn(xs if len(xs) > 1 else xs[0])
        score = tf.reduce_sum(tf.gather(out, tf.constant(classes, tf.int32), axis=1, batch_dims=1))
    return [g.numpy() for g in tape.gradient(score, xs)], out.numpy()


def feature_values(model, layer, x):
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, model.get_layer(layer).output)(x, training=False).numpy().astype(np.float64)


def resize_axis(a, axis, size):
    """Linear interpolation along `axis` to `size` samples with half-pixel centres, edges clamped."""
    n = a.shape[axis]
    source = (np.arange(size) + 0.5) * n / size - 0.5
    return np.apply_along_axis(lambda v: np.interp(source, np.arange(n), v), axis, a)


def resize_reference(maps, size):
    """(B, *spatial) -> (B, *size): separable linear interpolation, the NumPy reference."""
    out = np.asarray(maps, np.float64)
    for axis, n in enumerate(size, start=1):
        out = resize_axis(out, axis, n)
    return out


def starts_along(n, patch, stride):
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] != n - patch:
        starts.append(n - patch)
    return starts


def occlusion_reference(score, x, patch, stride, baseline=0.0):
    """NumPy occlusion for x (B, *spatial, C): score(array) -> (B,) of the explained class."""
    spatial = x.shape[1:-1]
    heat = np.zeros(x.shape[:-1], np.float64)
    count = np.zeros(spatial, np.float64)
    clean = score(x)
    per_axis = [starts_along(n, p, s) for n, p, s in zip(spatial, patch, stride)]
    for corner in itertools.product(*per_axis):
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        occluded = x.copy()
        occluded[(slice(None),) + window] = baseline
        heat[(slice(None),) + window] += (clean - score(occluded))[(slice(None),) + (None,) * len(spatial)]
        count[window] += 1
    assert (count > 0).all()
    return heat / count


@pytest.fixture(scope="module")
def model1d():
    return conv_model(1)


@pytest.fixture(scope="module")
def model3d():
    return conv_model(3)


def data(rank, n=4, seed=1):
    shape = (L1, 2) if rank == 1 else VOL + (2,)
    return np.random.default_rng(seed).uniform(0, 1, size=(n,) + shape).astype("float32")


@pytest.fixture(scope="module", params=[1, 3], ids=["conv1d", "conv3d"])
def conv(request, model1d, model3d):
    rank = request.param
    return rank, (model1d if rank == 1 else model3d), data(rank)


# ----------------------------------------------------------------------------------------------
# 1. Gradient explainers on 1-D and 3-D models


def test_saliency_is_the_logit_gradient(conv):
    rank, model, x = conv
    (expected,), _ = tape_gradients(logits_fn(model, "predictions"), [x], CLASSES)
    sal = ki.Saliency(model)
    attr = sal.attribute(x, target=CLASSES)
    assert attr.dtype == np.float32 and attr.shape == x.shape
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    maps = sal.explain(x, target=CLASSES)
    assert maps.shape == x.shape[:-1]
    np.testing.assert_allclose(maps, np.abs(expected).max(axis=-1), rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    # The probability's gradient is something else: the comparison can tell them apart.
    (prob_grad,), _ = tape_gradients(lambda z: model(z, training=False), [x], CLASSES)
    assert not np.allclose(prob_grad, expected, rtol=1e-2, atol=1e-3 * np.abs(expected).max())


def test_smoothgrad_without_noise_is_saliency(conv):
    rank, model, x = conv
    saliency = ki.Saliency(model).attribute(x, target=CLASSES)
    smooth = ki.SmoothGrad(model, samples=3, noise=0.0).attribute(x, target=CLASSES)
    np.testing.assert_allclose(smooth, saliency, rtol=1e-5, atol=1e-7 * np.abs(saliency).max())


def test_integrated_gradients_completeness(conv):
    rank, model, x = conv
    logits = logits_fn(model, "predictions")
    at_x = logits(x).numpy()
    top = at_x.argmax(1)
    gap = at_x[np.arange(len(x)), top] - logits(np.zeros_like(x)).numpy()[np.arange(len(x)), top]
    ig = ki.IntegratedGradients(model, steps=64)
    attr, delta = ig.attribute(x, return_delta=True)  # target None: each example's top logit
    assert attr.shape == x.shape
    total = attr.reshape(len(x), -1).sum(1)
    scale = np.abs(gap).max()
    assert scale > 1e-3
    np.testing.assert_allclose(total, gap, rtol=0.01, atol=1e-3 * scale)
    np.testing.assert_allclose(delta, total - gap, atol=1e-4 * scale)
    assert np.abs(delta).max() < 0.01 * scale
    np.testing.assert_allclose(ig.explain(x), np.abs(attr.sum(-1)), rtol=1e-4, atol=1e-6 * np.abs(attr).max())


def test_every_explainer_gives_maps_of_the_input_shape(conv):
    rank, model, x = conv
    # (Saliency, IntegratedGradients and GradCAM maps are checked against references above.)
    explainers = [
        ki.SmoothGrad(model, samples=3), ki.Occlusion(model, patch_size=4, stride=2), ki.CAM(model),
        ki.GradCAMPlusPlus(model), ki.LayerCAM(model), ki.ScoreCAM(model),
        ki.Deconvnet(model), ki.GuidedBackprop(model),
    ]
    for explainer in explainers:
        maps = explainer.explain(x[:2])
        name = type(explainer).__name__
        assert isinstance(maps, np.ndarray) and maps.dtype == np.float32, name
        assert maps.shape == x[:2].shape[:-1], (name, maps.shape)
        assert np.isfinite(maps).all(), name


def test_relu_rules_equal_the_gradient_without_relus():
    for rank in (1, 3):
        model = conv_model(rank, seed=2, relu=False)
        x = data(rank, n=2, seed=3)
        (expected,), _ = tape_gradients(logits_fn(model, "predictions"), [x], [1, 2])
        for cls in (ki.Deconvnet, ki.GuidedBackprop):
            got = cls(model).attribute(x, target=[1, 2])
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max(),
                                       err_msg=f"{cls.__name__} {rank}-D")


# ----------------------------------------------------------------------------------------------
# 2. CAM identities in 1-D and 3-D


def test_cam_identity(conv):
    rank, model, x = conv
    logits = logits_fn(model, "predictions")(x).numpy()
    kernel, bias = model.get_layer("predictions").get_weights()
    a = feature_values(model, "conv2", x)
    expected = np.einsum("b...k,kb->b...", a, kernel[:, CLASSES].astype(np.float64))
    cam = ki.CAM(model).explain(x, target=CLASSES, upsample=False)
    assert cam.shape == a.shape[:-1]
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-5 * scale)
    axes = tuple(range(1, cam.ndim))
    np.testing.assert_allclose(cam.mean(axis=axes) + bias[CLASSES], logits[np.arange(len(x)), CLASSES],
                               rtol=1e-4, atol=1e-5)
    # Grad-CAM before its ReLU, times the number of cells, is CAM on a GAP -> Dense model.
    grad_cam = ki.GradCAM(model, relu=False).explain(x, target=CLASSES, upsample=False)
    cells = int(np.prod(cam.shape[1:]))
    np.testing.assert_allclose(grad_cam * cells, cam, rtol=1e-4, atol=1e-5 * scale)
    # The ReLU'd Grad-CAM is the positive part.
    relu_cam = ki.GradCAM(model).explain(x, target=CLASSES, upsample=False)
    np.testing.assert_allclose(relu_cam * cells, np.maximum(cam, 0), rtol=1e-4, atol=1e-5 * scale)


def test_cam_on_a_camhead():
    for rank in (1, 3):
        keras.utils.set_random_seed(4)
        shape = (L1, 2) if rank == 1 else VOL + (2,)
        conv_layer = keras.layers.Conv1D if rank == 1 else keras.layers.Conv3D
        inputs = keras.Input(shape)
        f = conv_layer(4, 3, padding="same", activation="relu", name="features")(inputs)
        head = ki.layers.CAMHead(NUM_CLASSES, activation="softmax", bias_initializer="ones", name="cam_head")
        model = keras.Model(inputs, head(f))
        x = data(rank, seed=5)
        a = feature_values(model, "features", x)
        kernel, bias = head.kernel.numpy(), head.bias.numpy()
        logits = a.mean(axis=tuple(range(1, a.ndim - 1))) @ kernel + bias
        cam = ki.CAM(model).explain(x, target=CLASSES, upsample=False)
        np.testing.assert_allclose(cam, np.einsum("b...k,kb->b...", a, kernel[:, CLASSES]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cam.mean(axis=tuple(range(1, cam.ndim))) + bias[CLASSES],
                                   logits[np.arange(len(x)), CLASSES], rtol=1e-4, atol=1e-5)
        up = ki.CAM(model).explain(x, target=CLASSES)
        assert up.shape == x.shape[:-1]


# ----------------------------------------------------------------------------------------------
# 3. Half-pixel alignment of the upsampling


@pytest.mark.parametrize("l, s", [(6, 4), (5, 3), (8, 2)])
def test_1d_one_hot_cell_lands_at_its_receptive_field_centre(l, s):
    length = l * s
    hot = np.eye(l, dtype=np.float32)  # (l, l): example i is hot at cell i
    up = np.asarray(upsample_maps(tf.constant(hot), (length,)))
    assert up.shape == (l, length)
    np.testing.assert_allclose(up, resize_reference(hot, (length,)), atol=1e-6)
    for i in range(l):
        centre = (i + 0.5) * s - 0.5
        row = up[i]
        at_max = set(np.flatnonzero(row >= row.max() - 1e-6))
        # The sample(s) nearest the centre hold the maximum; at an edge cell the clamped
        # plateau reaches the border, so only the one on the border's side is sure to.
        nearest = {int(np.floor(centre)), int(np.ceil(centre))}
        if i == 0:
            nearest = {int(np.floor(centre))}
        elif i == l - 1:
            nearest = {int(np.ceil(centre))}
        assert nearest <= at_max, (i, centre, sorted(at_max))
        if 0 < i < l - 1:  # away from the clamped edges the profile is a symmetric tent
            assert at_max == {int(np.floor(centre)), int(np.ceil(centre))}, (i, sorted(at_max))
            np.testing.assert_allclose((row * np.arange(length)).sum() / row.sum(), centre, atol=1e-5)
    # A corner-aligned zoom (cell i at i * (L - 1) / (l - 1)) would put some cells elsewhere.
    corner = np.arange(l) * (length - 1) / (l - 1)
    assert np.abs(corner - ((np.arange(l) + 0.5) * s - 0.5)).max() >= 0.5


def test_3d_one_hot_cell_lands_at_its_centre_on_every_axis():
    small, factors = (2, 4, 3), (3, 2, 3)
    size = tuple(n * f for n, f in zip(small, factors))
    for cell in [(0, 1, 1), (1, 2, 1), (1, 1, 0)]:
        hot = np.zeros((1,) + small, np.float32)
        hot[(0,) + cell] = 1.0
        up = np.asarray(upsample_maps(tf.constant(hot), size))[0]
        assert up.shape == size
        np.testing.assert_allclose(up, resize_reference(hot, size)[0], atol=1e-6)
        centre = tuple((c + 0.5) * f - 0.5 for c, f in zip(cell, factors))
        # The value at the centre (its nearest samples) is the maximum.
        nearest = tuple(int(np.floor(c)) for c in centre)
        assert up[nearest] >= up.max() - 1e-6, (cell, centre, np.unravel_index(up.argmax(), size))
        # Per axis, the marginal profile peaks at the centre coordinate (interior cells: centroid).
        for axis, (c, n, f) in enumerate(zip(cell, small, factors)):
            profile = up.sum(axis=tuple(a for a in range(3) if a != axis))
            if 0 < c < n - 1:
                np.testing.assert_allclose((profile * np.arange(len(profile))).sum() / profile.sum(),
                                           centre[axis], atol=1e-5, err_msg=f"cell {cell} axis {axis}")
            else:
                assert profile[nearest[axis]] >= profile.max() - 1e-6, (cell, axis, profile)


def test_3d_trilinear_matches_a_separable_numpy_reference():
    rng = np.random.default_rng(7)
    maps = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    for size in [(6, 8, 9), (4, 8, 8), (5, 7, 4)]:
        got = np.asarray(upsample_maps(tf.constant(maps), size))
        np.testing.assert_allclose(got, resize_reference(maps, size), rtol=1e-5, atol=1e-5, err_msg=str(size))
    # resize_nd keeps a channel axis and resizes each channel the same way.
    chans = rng.normal(size=(2, 2, 4, 3, 2)).astype(np.float32)
    got = np.asarray(resize_nd(tf.constant(chans), (6, 8, 9)))
    for k in range(2):
        np.testing.assert_allclose(got[..., k], resize_reference(chans[..., k], (6, 8, 9)), rtol=1e-5, atol=1e-5)


def test_grad_cam_upsampling_matches_the_reference(conv):
    rank, model, x = conv
    explainer = ki.GradCAM(model)
    small = explainer.explain(x, target=CLASSES, upsample=False)
    full = explainer.explain(x, target=CLASSES)
    assert small.shape != full.shape and full.shape == x.shape[:-1]
    np.testing.assert_allclose(full, resize_reference(small, x.shape[1:-1]), rtol=1e-4,
                               atol=1e-5 * max(np.abs(small).max(), 1e-12))


# ----------------------------------------------------------------------------------------------
# 4. Occlusion: locality and exact references in 1-D and 3-D


def linear_model(shape, kernel, bias):
    """Flatten -> Dense(softmax) with the given (prod(shape), classes) kernel."""
    inputs = keras.Input(shape)
    outputs = keras.layers.Dense(kernel.shape[1], activation="softmax", name="linear")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.get_layer("linear").set_weights([kernel, bias])
    return model


def test_1d_linear_occlusion_is_exact():
    rng = np.random.default_rng(11)
    kernel = rng.normal(size=(L1 * 2, 2)).astype(np.float32)
    bias = np.array([0.5, -0.5], np.float32)
    model = linear_model((L1, 2), kernel, bias)
    x = rng.normal(size=(3, L1, 2)).astype(np.float32)
    baseline = 0.25
    # patch 5 / stride 3 on 24: starts 0, 3, ..., 18 and the flush window at 19.
    maps = ki.Occlusion(model, patch_size=5, stride=3, baseline=baseline).explain(x, target=1)
    assert maps.shape == (3, L1)
    w = kernel[:, 1].reshape(L1, 2).astype(np.float64)
    contribution = ((x - baseline) * w).sum(-1)  # (B, L): the score drop of occluding one position
    expected = np.zeros((3, L1))
    count = np.zeros(L1)
    for s in starts_along(L1, 5, 3):
        expected[:, s:s + 5] += contribution[:, s:s + 5].sum(1, keepdims=True)
        count[s:s + 5] += 1
    expected /= count
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    # The same with the generic reference (numpy scores).
    score = lambda z: z.reshape(len(z), -1).astype(np.float64) @ kernel[:, 1] + bias[1]  # noqa: E731
    np.testing.assert_allclose(maps, occlusion_reference(score, x, (5,), (3,), baseline), rtol=1e-4, atol=1e-5)


def test_1d_occlusion_is_local_on_a_conv_model():
    keras.utils.set_random_seed(12)
    inputs = keras.Input((L1, 1))
    f = keras.layers.Conv1D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(keras.layers.Flatten()(f))
    model = keras.Model(inputs, outputs)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    region = np.zeros(L1, bool)
    region[10:14] = True                      # the head reads conv positions 10..13 only
    kernel[~np.repeat(region, 3)] = 0.0       # Flatten order: position-major, 3 channels each
    head.set_weights([kernel, bias])
    depends = np.zeros(L1, bool)
    depends[9:15] = True                      # kernel 3 "same": the input positions 9..14
    x = np.random.default_rng(13).uniform(0, 1, size=(4, L1, 1)).astype(np.float32)
    patch, stride = 3, 2
    maps = ki.Occlusion(model, patch_size=patch, stride=stride).explain(x, target=0)
    touching = np.zeros(L1, bool)             # positions with a covering window that touches the region
    for s in starts_along(L1, patch, stride):
        if depends[s:s + patch].any():
            touching[s:s + patch] = True
    assert not touching.all() and touching[depends].all()
    scale = np.abs(maps).max()
    assert scale > 1e-3
    np.testing.assert_allclose(maps[:, ~touching], 0.0, atol=1e-5 * scale)
    logits = logits_fn(model, "head")
    score = lambda z: logits(z).numpy()[:, 0].astype(np.float64)  # noqa: E731
    np.testing.assert_allclose(maps, occlusion_reference(score, x, (patch,), (stride,)), rtol=1e-4, atol=1e-5 * scale)


def test_3d_occlusion_is_local_and_exact():
    rng = np.random.default_rng(14)
    shape = VOL + (1,)
    region = np.zeros(VOL, bool)
    region[1:3, 2:4, 5:7] = True
    weights = np.where(region, rng.uniform(0.5, 1.5, size=VOL), 0.0).astype(np.float32)
    kernel = np.stack([weights.ravel(), -weights.ravel()], axis=1)
    model = linear_model(shape, kernel, np.zeros(2, np.float32))
    x = rng.uniform(0.2, 1.0, size=(2,) + shape).astype(np.float32)
    patch, stride = (2, 3, 3), (1, 2, 2)
    maps = ki.Occlusion(model, patch_size=patch, stride=stride).explain(x, target=0)
    assert maps.shape == (2,) + VOL
    touching = np.zeros(VOL, bool)
    for corner in itertools.product(*(starts_along(n, p, s) for n, p, s in zip(VOL, patch, stride))):
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        if region[window].any():
            touching[window] = True
    assert not touching.all()
    # Positive weights on positive inputs: every window touching the region lowers the score.
    assert (maps[:, touching] > 1e-3).all()
    np.testing.assert_allclose(maps[:, ~touching], 0.0, atol=1e-5)
    score = lambda z: z.reshape(len(z), -1).astype(np.float64) @ kernel[:, 0]  # noqa: E731
    np.testing.assert_allclose(maps, occlusion_reference(score, x, patch, stride), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# 5. A trained 1-D pulse detector: Grad-CAM points at the pulse


def pulses(n, rng, length=64, width=6):
    x = rng.normal(0.0, 0.5, size=(n, length, 1)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    where = rng.integers(0, length - width + 1, size=n)
    for i in np.flatnonzero(y == 1):
        x[i, where[i]:where[i] + width, 0] += 1.5
    return x, y, where


def test_grad_cam_finds_the_pulse_of_a_trained_1d_model():
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = pulses(1024, rng)
    inputs = keras.Input((64, 1))
    h = keras.layers.Conv1D(8, 5, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.MaxPooling1D(2, name="pool")(h)
    h = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    tx, ty, where = pulses(200, np.random.default_rng(1))
    accuracy = (model.predict(tx, verbose=0).argmax(1) == ty).mean()
    assert accuracy > 0.9, accuracy
    pos = ty == 1
    maps = ki.GradCAM(model).explain(tx[pos], target=1)
    assert maps.shape == (pos.sum(), 64)
    peak = maps.argmax(1)
    hit = (peak >= where[pos] - 4) & (peak <= where[pos] + 6 - 1 + 4)
    assert hit.mean() >= 0.8, hit.mean()
    assert time.perf_counter() - started < 30


# ----------------------------------------------------------------------------------------------
# 6. Two inputs: an image (8, 8, 1) and a feature vector (5,)


@pytest.fixture(scope="module")
def two_inputs():
    keras.utils.set_random_seed(21)
    img = keras.Input((8, 8, 1), name="img")
    vec = keras.Input((5,), name="vec")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(img)
    a = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    b = keras.layers.Dense(4, activation="tanh", name="vec_dense")(vec)
    h = keras.layers.Concatenate(name="concat")([a, b])
    out = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")(h)
    model = keras.Model([img, vec], out, name="two_inputs")
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 3.0, bias + np.array([0.2, -0.1, 0.0], np.float32)])
    rng = np.random.default_rng(22)
    xi = rng.uniform(0, 1, size=(4, 8, 8, 1)).astype(np.float32)
    xv = rng.normal(size=(4, 5)).astype(np.float32)
    return model, xi, xv


def test_two_input_saliency_per_input(two_inputs):
    model, xi, xv = two_inputs
    (gi, gv), _ = tape_gradients(logits_fn(model, "head"), [xi, xv], CLASSES)
    assert np.abs(gi).max() > 0 and np.abs(gv).max() > 0
    sal = ki.Saliency(model)
    attr = sal.attribute([xi, xv], target=CLASSES)
    assert isinstance(attr, list) and len(attr) == 2
    assert attr[0].shape == xi.shape and attr[1].shape == xv.shape
    np.testing.assert_allclose(attr[0], gi, rtol=1e-4, atol=1e-6 * np.abs(gi).max())
    np.testing.assert_allclose(attr[1], gv, rtol=1e-4, atol=1e-6 * np.abs(gv).max())
    by_name = sal.attribute({"vec": xv, "img": xi}, target=CLASSES)
    assert isinstance(by_name, dict) and set(by_name) == {"img", "vec"}
    np.testing.assert_allclose(by_name["img"], gi, rtol=1e-4, atol=1e-6 * np.abs(gi).max())
    np.testing.assert_allclose(by_name["vec"], gv, rtol=1e-4, atol=1e-6 * np.abs(gv).max())
    maps = sal.explain([xi, xv], target=CLASSES)
    assert maps[0].shape == (4, 8, 8) and maps[1].shape == (4, 5)
    np.testing.assert_allclose(maps[0], np.abs(gi).max(-1), rtol=1e-4, atol=1e-6 * np.abs(gi).max())
    np.testing.assert_allclose(maps[1], np.abs(gv), rtol=1e-4, atol=1e-6 * np.abs(gv).max())
    maps_by_name = sal.explain({"img": xi, "vec": xv}, target=CLASSES)
    assert isinstance(maps_by_name, dict)
    np.testing.assert_allclose(maps_by_name["vec"], np.abs(gv), rtol=1e-4, atol=1e-6 * np.abs(gv).max())
    # SmoothGrad without noise is the same gradient, per input.
    smooth = ki.SmoothGrad(model, samples=2, noise=0.0).attribute([xi, xv], target=CLASSES)
    np.testing.assert_allclose(smooth[1], gv, rtol=1e-4, atol=1e-6 * np.abs(gv).max())


def test_two_input_relu_rules_leave_the_relu_free_branch_alone(two_inputs):
    # The vector's path (tanh Dense, concat, head) has no ReLU: there deconvnet and guided
    # backprop are the plain gradient.
    model, xi, xv = two_inputs
    (gi, gv), _ = tape_gradients(logits_fn(model, "head"), [xi, xv], CLASSES)
    for cls in (ki.Deconvnet, ki.GuidedBackprop):
        attr = cls(model).attribute([xi, xv], target=CLASSES)
        assert isinstance(attr, list) and attr[0].shape == xi.shape and attr[1].shape == xv.shape
        np.testing.assert_allclose(attr[1], gv, rtol=1e-4, atol=1e-6 * np.abs(gv).max(), err_msg=cls.__name__)
        maps = cls(model).explain({"img": xi, "vec": xv}, target=CLASSES)
        assert maps["img"].shape == (4, 8, 8) and maps["vec"].shape == (4, 5)


def test_two_input_integrated_gradients_completeness(two_inputs):
    model, xi, xv = two_inputs
    logits = logits_fn(model, "head")
    bi, bv = 0.0, 0.5
    at_x = logits([xi, xv]).numpy()[np.arange(4), CLASSES]
    at_b = logits([np.full_like(xi, bi), np.full_like(xv, bv)]).numpy()[np.arange(4), CLASSES]
    gap = at_x - at_b
    scale = np.abs(gap).max()
    for baseline in ([bi, bv], {"vec": bv, "img": bi}):
        ig = ki.IntegratedGradients(model, steps=64, baseline=baseline)
        attr, delta = ig.attribute([xi, xv], target=CLASSES, return_delta=True)
        assert attr[0].shape == xi.shape and attr[1].shape == xv.shape
        total = attr[0].reshape(4, -1).sum(1) + attr[1].sum(1)
        np.testing.assert_allclose(total, gap, rtol=0.01, atol=1e-3 * scale)
        np.testing.assert_allclose(delta, total - gap, atol=1e-4 * scale)
        # Both inputs carry part of the gap: the image's attributions alone do not sum to it.
        assert np.abs(attr[1].sum(1)).max() > 0.05 * scale
        maps = ig.explain([xi, xv], target=CLASSES)
        np.testing.assert_allclose(maps[0], np.abs(attr[0].sum(-1)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(maps[1], np.abs(attr[1]), rtol=1e-4, atol=1e-6)


def test_two_input_occlusion_occludes_only_the_image(two_inputs):
    model, xi, xv = two_inputs
    logits = logits_fn(model, "head")
    score = lambda z: logits([z, xv]).numpy()[np.arange(4), CLASSES].astype(np.float64)  # noqa: E731
    expected = occlusion_reference(score, xi, (4, 4), (2, 2))
    scale = np.abs(expected).max()
    assert scale > 1e-4
    for form in ([xi, xv], {"img": xi, "vec": xv}):
        for which in ("img", 0, None):
            maps = ki.Occlusion(model, patch_size=4, stride=2, input=which).explain(form, target=CLASSES)
            assert isinstance(maps, np.ndarray) and maps.shape == (4, 8, 8)
            np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5 * scale)
    with pytest.raises(ValueError, match="Occlusion needs an input with spatial axes"):
        ki.Occlusion(model, input="vec")
    with pytest.raises(ValueError, match=r"no input named 'nope'.*\['img', 'vec'\]"):
        ki.Occlusion(model, input="nope")


def test_two_input_cam_family_maps_the_image(two_inputs):
    model, xi, xv = two_inputs
    logits = logits_fn(model, "head")
    features = keras.Model(model.inputs, [model.get_layer("conv").output, model.get_layer("head").input])
    head = model.get_layer("head")
    with tf.GradientTape() as tape:
        a, h = features([tf.constant(xi), tf.constant(xv)], training=False)
        score = tf.reduce_sum(tf.gather(tf.matmul(h, head.kernel) + head.bias, CLASSES, axis=1, batch_dims=1))
    g = tape.gradient(score, a).numpy().astype(np.float64)
    a = a.numpy().astype(np.float64)
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, g.mean(axis=(1, 2))), 0.0)
    assert expected.max() > 0
    for which in ("img", 0, None):
        maps = ki.GradCAM(model, input=which).explain([xi, xv], target=CLASSES)
        assert maps.shape == (4, 8, 8)
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5 * expected.max())
    for cls in (ki.GradCAMPlusPlus, ki.LayerCAM):
        assert cls(model, input="img").explain({"img": xi, "vec": xv}, target=CLASSES).shape == (4, 8, 8)
    with pytest.raises(ValueError):
        ki.GradCAM(model, input="vec")

    # Score-CAM masks only the image (paper's "increase" reading, baseline image 0, vector kept).
    def probability(img):
        return tf.nn.softmax(logits([img, xv])).numpy()[np.arange(4), CLASSES].astype(np.float64)

    lo = a.min(axis=(1, 2), keepdims=True)
    hi = a.max(axis=(1, 2), keepdims=True)
    varying = (hi > lo)[:, 0, 0, :]
    masks = np.where(hi > lo, (a - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    at_baseline = probability(np.zeros_like(xi))
    weights = np.stack([probability(xi * masks[..., k:k + 1].astype(np.float32)) - at_baseline
                        for k in range(a.shape[-1])], axis=1) * varying
    expected_score = np.maximum(np.einsum("bhwk,bk->bhw", a, weights), 0.0)
    assert expected_score.max() > 0
    got = ki.ScoreCAM(model, input="img", weighting="increase").explain([xi, xv], target=CLASSES)
    assert got.shape == (4, 8, 8)
    np.testing.assert_allclose(got, expected_score, rtol=1e-3, atol=1e-5 * expected_score.max())


def test_two_input_errors(two_inputs):
    model, xi, xv = two_inputs
    sal = ki.Saliency(model)
    with pytest.raises(ValueError, match="same batch size"):
        sal.attribute([xi, xv[:3]])
    with pytest.raises(ValueError, match=r"2 inputs \['img', 'vec'\]"):
        sal.attribute(xi)
    with pytest.raises(ValueError, match=r"2 inputs \['img', 'vec'\]"):
        sal.attribute([xi, xv, xv])
    with pytest.raises(ValueError, match=r"\['img', 'vec'\]"):
        sal.attribute({"img": xi})
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        sal.attribute([xi, xv[:, :, None]])


# ----------------------------------------------------------------------------------------------
# 7. Two outputs: a softmax classifier "cls" and a 4-unit sigmoid multi-label head "tags"


@pytest.fixture(scope="module")
def two_outputs():
    keras.utils.set_random_seed(31)
    inputs = keras.Input((8, 8, 2), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    tags = keras.layers.Dense(4, activation="sigmoid", name="tags")(h)
    model = keras.Model(inputs, [cls, tags], name="two_outputs")
    for name in ("cls", "tags"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 3.0, np.linspace(-0.3, 0.3, len(bias)).astype(np.float32)])
    x = np.random.default_rng(32).uniform(0, 1, size=(4, 8, 8, 2)).astype(np.float32)
    return model, x


@pytest.mark.parametrize("make", [
    ki.Saliency, ki.SmoothGrad, ki.IntegratedGradients, ki.Occlusion, ki.CAM, ki.GradCAM,
    ki.GradCAMPlusPlus, ki.LayerCAM, ki.ScoreCAM, ki.Deconvnet, ki.GuidedBackprop,
], ids=lambda c: c.__name__)
def test_two_outputs_need_output(two_outputs, make):
    model, _ = two_outputs
    with pytest.raises(ValueError, match=r"\['cls', 'tags'\]"):
        make(model)


def test_two_outputs_explain_the_chosen_logits(two_outputs):
    model, x = two_outputs
    cls_logits = logits_fn(model, "cls")
    tag_logits = logits_fn(model, "tags")

    (expected,), _ = tape_gradients(cls_logits, [x], CLASSES)
    got = ki.Saliency(model, output="cls").attribute(x, target=CLASSES)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    (prob,), _ = tape_gradients(lambda z: model(z, training=False)[0], [x], CLASSES)
    assert not np.allclose(prob, expected, rtol=1e-2, atol=1e-3 * np.abs(expected).max())

    two = np.full(4, 2)
    (expected,), _ = tape_gradients(tag_logits, [x], two)
    tags = ki.Saliency(model, output="tags")
    got = tags.attribute(x, target=2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    (sig,), _ = tape_gradients(lambda z: model(z, training=False)[1], [x], two)
    assert not np.allclose(sig, expected, rtol=1e-2, atol=1e-3 * np.abs(expected).max())

    top = tag_logits(x).numpy().argmax(1)
    (expected,), _ = tape_gradients(tag_logits, [x], top)
    np.testing.assert_allclose(tags.attribute(x), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_array_equal(ki.Saliency(model, output=1).attribute(x), tags.attribute(x))
    np.testing.assert_array_equal(ki.Saliency(model, output=-1).explain(x, target=3), tags.explain(x, target=3))


def test_two_outputs_cam_and_occlusion_follow_the_output(two_outputs):
    model, x = two_outputs
    a = feature_values(model, "conv", x)
    for name, classes in (("cls", CLASSES), ("tags", np.array([3, 0, 2, 1]))):
        kernel, bias = model.get_layer(name).get_weights()
        logits = logits_fn(model, name)(x).numpy()
        cam = ki.CAM(model, output=name).explain(x, target=classes, upsample=False)
        np.testing.assert_allclose(cam, np.einsum("bhwk,kb->bhw", a, kernel[:, classes]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cam.mean(axis=(1, 2)) + bias[classes], logits[np.arange(4), classes],
                                   rtol=1e-4, atol=1e-5)
        grad_cam = ki.GradCAM(model, relu=False, output=name).explain(x, target=classes, upsample=False)
        np.testing.assert_allclose(grad_cam * 64, cam, rtol=1e-4, atol=1e-5 * np.abs(cam).max())
        fn = logits_fn(model, name)
        score = lambda z: fn(z).numpy()[np.arange(4), classes].astype(np.float64)  # noqa: E731
        expected = occlusion_reference(score, x, (4, 4), (4, 4))
        got = ki.Occlusion(model, patch_size=4, stride=4, output=name).explain(x, target=classes)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


# ----------------------------------------------------------------------------------------------
# 8. Errors


@pytest.fixture(scope="module")
def dense_only():
    keras.utils.set_random_seed(41)
    inputs = keras.Input((16, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs, name="dense_only")


@pytest.mark.parametrize("make", [ki.GradCAM, ki.GradCAMPlusPlus, ki.LayerCAM, ki.ScoreCAM],
                         ids=lambda c: c.__name__)
def test_cam_family_needs_a_spatial_layer(dense_only, make):
    with pytest.raises(ValueError, match=r"no tensor with a spatial \(batch, length, channels\) output"):
        make(dense_only)


def test_cam_needs_a_gap_dense_head(dense_only):
    with pytest.raises(ValueError, match="does not end in global average pooling.*GradCAM"):
        ki.CAM(dense_only)


def test_occlusion_patch_errors(model1d, model3d):
    with pytest.raises(ValueError, match="larger than the input's spatial size"):
        ki.Occlusion(model1d, patch_size=L1 + 6, stride=4).explain(data(1, n=1))
    with pytest.raises(ValueError, match="larger than the input's spatial size"):
        ki.Occlusion(model3d, patch_size=(2, 9, 3), stride=1).explain(data(3, n=1))
    with pytest.raises(ValueError, match="has 2 entries but the input has 3 spatial axes"):
        ki.Occlusion(model3d, patch_size=(2, 2), stride=1)
    with pytest.raises(ValueError, match="has 3 entries but the input has 1 spatial axis"):
        ki.Occlusion(model1d, patch_size=4, stride=(1, 1, 1))
    # A per-axis tuple that fits is used axis by axis: (1, 1, 1) windows of a linear model.
    rng = np.random.default_rng(42)
    kernel = rng.normal(size=(int(np.prod(VOL)), 2)).astype(np.float32)
    model = linear_model(VOL + (1,), kernel, np.zeros(2, np.float32))
    x = rng.normal(size=(1,) + VOL + (1,)).astype(np.float32)
    maps = ki.Occlusion(model, patch_size=(1, 1, 1), stride=(1, 1, 1)).explain(x, target=1)
    np.testing.assert_allclose(maps[0], x[0, ..., 0] * kernel[:, 1].reshape(VOL), rtol=1e-4, atol=1e-5)


def test_wrong_rank_inputs(model1d, model3d):
    with pytest.raises(ValueError, match=r"\(batch, length, channels\)"):
        ki.Saliency(model1d).explain(np.zeros((2, L1), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, length, channels\)"):
        ki.GradCAM(model1d).explain(np.zeros((2, L1, 2, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, depth, height, width, channels\)"):
        ki.Occlusion(model3d).explain(np.zeros((2, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match=r"length is 20 but the model expects 24"):
        ki.Saliency(model1d).explain(np.zeros((2, 20, 2), np.float32))


# ----------------------------------------------------------------------------------------------
# Two inputs of one shape, heads that ignore an input, nested multi-input classifiers


@pytest.fixture(scope="module")
def twin_images():
    """Two 8x8 image inputs, each with its own conv branch, and two heads: "both" reads both
    branches, "only_a" reads branch a alone (so input b is unconnected to it)."""
    keras.utils.set_random_seed(3)
    a, b = keras.Input((8, 8, 1), name="a"), keras.Input((8, 8, 1), name="b")
    ga = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(a))
    gb = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(b))
    both = keras.layers.Dense(3, name="both")(keras.layers.Concatenate()([ga, gb]))
    only_a = keras.layers.Dense(2, name="only_a")(ga)
    model = keras.Model([a, b], [both, only_a])
    rng = np.random.default_rng(5)
    return model, rng.random((2, 8, 8, 1)).astype("float32"), rng.random((2, 8, 8, 1)).astype("float32")


def test_occlusion_of_each_same_shaped_input_is_its_own(twin_images):
    model, xa, xb = twin_images
    logits = logits_fn(model, "both")
    target = np.array([0, 2])
    for which, score in ((0, lambda z: logits([z, xb]).numpy()[np.arange(2), target]),
                         (1, lambda z: logits([xa, z]).numpy()[np.arange(2), target])):
        expected = occlusion_reference(lambda z: score(z).astype(np.float64), (xa, xb)[which], (4, 4), (4, 4))
        maps = ki.Occlusion(model, patch_size=4, stride=4, input=which, output="both").explain([xa, xb], target=target)
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)


def test_cam_layer_follows_the_chosen_input(twin_images):
    model, xa, xb = twin_images
    assert ki.GradCAM(model, output="both").layer == "conv_a"  # the default input is the first
    assert ki.GradCAM(model, output="both", input="b").layer == "conv_b"
    with pytest.raises(ValueError, match="'conv_a' is not computed from input 'b'"):
        ki.GradCAM(model, output="both", input="b", layer="conv_a")
    with pytest.raises(ValueError, match="no tensor with a spatial .* computed from input 'b'"):
        ki.GradCAM(model, output="only_a", input="b")


def test_an_input_the_output_ignores_gets_zero_attribution(twin_images):
    model, xa, xb = twin_images
    for explainer in (ki.Saliency(model, output="only_a"), ki.SmoothGrad(model, samples=3, output="only_a"),
                      ki.IntegratedGradients(model, steps=4, output="only_a"), ki.GuidedBackprop(model, output="only_a")):
        attr = explainer.attribute([xa, xb])
        # (Guided backprop's signal can be all zero here: every head weight of this init is negative.)
        assert attr[0].dtype == attr[1].dtype == np.float32
        assert isinstance(explainer, ki.GuidedBackprop) or np.abs(attr[0]).max() > 0
        np.testing.assert_array_equal(attr[1], np.zeros_like(xb))
        assert explainer.explain([xa, xb])[1].shape == (2, 8, 8)


def test_a_nested_multi_input_classifier_loses_its_softmax():
    keras.utils.set_random_seed(4)
    a, b = keras.Input((8, 8, 1)), keras.Input((4,))
    g = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="inner")(a))
    head = keras.layers.Dense(3, activation="softmax", name="head")
    sub = keras.Model([a, b], head(keras.layers.Concatenate()([g, b])), name="sub")
    oa, ob = keras.Input((8, 8, 1)), keras.Input((4,))
    model = keras.Model([oa, ob], sub([keras.layers.Rescaling(2.0)(oa), ob]))
    rng = np.random.default_rng(0)
    x = [rng.random((3, 8, 8, 1)).astype("float32"), rng.random((3, 4)).astype("float32")]
    features = keras.Model(sub.inputs, head.input)([2.0 * x[0], x[1]]).numpy()
    logits = features @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(ki.targets.Scorer(model)(x), logits, rtol=1e-5, atol=1e-6)
    assert ki.GradCAM(model).layer == "sub/inner"
    assert ki.GradCAM(model, layer="sub/inner").explain(x).shape == (3, 8, 8)


def test_duplicate_output_names_need_an_index():
    x = keras.Input((8, 8, 1))
    f = keras.layers.Flatten()(x)
    shared = keras.layers.Softmax(name="probabilities")
    model = keras.Model(x, [shared(keras.layers.Dense(2)(f)), shared(keras.layers.Dense(3)(f))])
    names = ki.targets.output_names(model)
    if names.count(names[0]) > 1:  # Keras names both outputs after the shared layer
        with pytest.raises(ValueError, match="outputs named 'probabilities'.*pass output= as an index"):
            ki.Saliency(model, output="probabilities")
    assert ki.Saliency(model, output=1).explain(np.ones((1, 8, 8, 1), "float32")).shape == (1, 8, 8)
