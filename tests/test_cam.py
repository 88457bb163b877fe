import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp.layers import CAMHead


def _features(model, layer, x):
    return keras.Model(model.inputs[0], model.get_layer(layer).output)(x).numpy()


def test_cam_mean_plus_bias_is_the_logit(cnn, images):
    cams = ki.CAM(cnn).explain(images, target=[0, 1, 2, 0], upsample=False)
    logits = ki.Scorer(cnn)(images).numpy()
    bias = cnn.get_layer("predictions").get_weights()[1]
    np.testing.assert_allclose(cams.mean(axis=(1, 2)) + bias[[0, 1, 2, 0]], logits[np.arange(4), [0, 1, 2, 0]], rtol=1e-5, atol=1e-6)
    # NumPy reference: the features times the class column of the kernel.
    kernel = cnn.get_layer("predictions").get_weights()[0]
    expected = np.einsum("bhwk,bk->bhw", _features(cnn, "conv2", images), kernel[:, [0, 1, 2, 0]].T)
    np.testing.assert_allclose(cams, expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_before_relu_times_hw_is_cam(cnn, images):
    cams = ki.CAM(cnn).explain(images, upsample=False)
    grad = ki.GradCAM(cnn, layer="conv2", relu=False).explain(images, upsample=False)
    h, w = cams.shape[1:]
    np.testing.assert_allclose(grad * h * w, cams, rtol=1e-4, atol=1e-6)
    relu = ki.GradCAM(cnn, layer="conv2").explain(images, upsample=False)
    np.testing.assert_allclose(relu, np.maximum(grad, 0), rtol=1e-5, atol=1e-8)


def test_default_layer_is_the_last_spatial_one(cnn):
    assert ki.GradCAM(cnn).layer == "conv2"
    assert ki.CAM(cnn).layer == "conv2"


def test_hot_cell_lands_on_its_receptive_field_centre():
    # The tiny CNN's geometry (conv3 same -> pool2 -> conv3 same), with ones kernels and average
    # pooling so the gradient of a feature cell is non-zero on its whole receptive field.
    features = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(1, 3, padding="same", kernel_initializer="ones"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(1, 3, padding="same", kernel_initializer="ones"),
    ])
    x = tf.constant(np.random.default_rng(0).uniform(size=(1, 12, 12, 3)).astype("float32"))
    for i, j in [(2, 3), (3, 2), (2, 2)]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            unit = tf.reduce_sum(features(x)[0, i, j])
        support = np.argwhere(np.abs(tape.gradient(unit, x).numpy()[0]).sum(-1) > 0)
        centre = (support.min(0) + support.max(0)) / 2.0
        hot = np.zeros((1, 6, 6), "float32")
        hot[0, i, j] = 1.0
        up = ki.explainers.cam.upsample_maps(tf.constant(hot), (12, 12)).numpy()[0]
        centroid = (np.argwhere(up > 0) * up[up > 0][:, None]).sum(0) / up.sum()
        np.testing.assert_allclose(centroid, centre, atol=1e-6)


def _cam_explainers(model):
    return [
        ki.CAM(model),
        ki.GradCAM(model),
        ki.GradCAMPlusPlus(model),
        ki.LayerCAM(model),
        ki.ScoreCAM(model, batch_size=8),
        ki.ScoreCAM(model, max_channels=3, batch_size=5),
    ]


def test_batch_independence_and_single_trace(cnn, images):
    for explainer in _cam_explainers(cnn):
        together = explainer.explain(images[:2])
        apart = np.concatenate([explainer.explain(images[i:i + 1]) for i in range(2)])
        np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-7, err_msg=type(explainer).__name__)
        before = explainer.trace_count
        for _ in range(5):
            explainer.explain(images[:2], target=[1, 0])
        assert explainer.trace_count == before
        maps = explainer.explain(images)
        assert maps.shape == (4, 12, 12) and maps.dtype == np.float32 and np.isfinite(maps).all()


def test_grad_cam_plus_plus_is_finite_for_large_logits(images):
    model = tiny_cnn(activation=None)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 200, bias + 100])
    logits = ki.Scorer(model)(images).numpy()
    assert np.abs(logits).max() > 90
    maps = ki.GradCAMPlusPlus(model).explain(images)
    assert np.isfinite(maps).all() and maps.max() > 0


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _score_cam_reference(model, layer, x, classes, keep=None, baseline=0.0, weighting="increase", logit_model=None):
    """Score-CAM as Wang et al. 2020 define it, written channel by channel in NumPy.

    f is the class probability: the model's own output for a softmax or sigmoid head, the
    NumPy softmax of the outputs of a logit model (`logit_model`: the same weights without the
    squashing, for the "softmax" reading's logits). Constant channels are skipped.
    """
    a = _features(model, layer, x)
    squashed = getattr(model.get_layer("predictions"), "activation", None) is not keras.activations.linear

    def probability(inputs, c):
        out = model(inputs).numpy()
        return (out if squashed else _softmax(out))[0, c]

    maps = []
    for b in range(len(x)):
        channels = range(a.shape[-1]) if keep is None else np.argsort(-a[b].var(axis=(0, 1)), kind="stable")[:keep]
        base = np.broadcast_to(baseline, x.shape)[b:b + 1].astype("float32")
        weights, kept = [], []
        for k in channels:
            up = tf.image.resize(a[b, :, :, k][None, ..., None], x.shape[1:3]).numpy()[0, ..., 0]
            span = up.max() - up.min()
            if span <= 0:
                continue
            masked = base + ((up - up.min()) / span)[None, ..., None] * (x[b:b + 1] - base)
            if weighting == "softmax":
                weights.append(logit_model(masked).numpy()[0, classes[b]])
            else:
                weights.append(probability(masked, classes[b]))
            kept.append(k)
        weights = np.array(weights)
        if weighting == "increase":
            weights = weights - probability(base, classes[b])
        elif weighting == "softmax":
            weights = _softmax(weights)
        total = sum((w * a[b, :, :, k] for w, k in zip(weights, kept)), np.zeros(a.shape[1:3]))
        if total.max() <= 0:  # signed layers only: each channel measured from its minimum (documented)
            total = sum((w * (a[b, :, :, k] - min(a[b, :, :, k].min(), 0.0)) for w, k in zip(weights, kept)),
                        np.zeros(a.shape[1:3]))
        maps.append(np.maximum(total, 0))
    return np.stack(maps)


def _logit_twin(model):
    twin = tiny_cnn(activation=None)
    twin.set_weights(model.get_weights())
    return twin


@pytest.mark.parametrize("activation", ["softmax", "sigmoid", None])
def test_score_cam_is_the_increase_of_confidence(images, activation):
    model = tiny_cnn(activation=activation)
    classes = [0, 2, 1, 1]
    maps = ki.ScoreCAM(model, weighting="increase", batch_size=7).explain(images, target=classes, upsample=False)
    np.testing.assert_allclose(maps, _score_cam_reference(model, "conv2", images, classes), rtol=1e-4, atol=1e-6)
    assert maps.max() > 0
    some = ki.ScoreCAM(model, weighting="increase", max_channels=2).explain(images, target=classes, upsample=False)
    np.testing.assert_allclose(some, _score_cam_reference(model, "conv2", images, classes, keep=2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighting", ["softmax", "probability"])
def test_score_cam_other_readings(images, weighting):
    model = tiny_cnn()
    classes = [0, 2, 1, 1]
    maps = ki.ScoreCAM(model, weighting=weighting, batch_size=5).explain(images, target=classes, upsample=False)
    expected = _score_cam_reference(model, "conv2", images, classes, weighting=weighting, logit_model=_logit_twin(model))
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    assert maps.max() > 0


@pytest.mark.parametrize("weighting", ["increase", "softmax", "probability"])
def test_score_cam_ignores_a_shift_of_every_logit(images, weighting):
    model = tiny_cnn(activation=None)
    before = ki.ScoreCAM(model, weighting=weighting).explain(images, target=1, upsample=False)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + 5.0])
    after = ki.ScoreCAM(model, weighting=weighting).explain(images, target=1, upsample=False)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-6)


def test_score_cam_baseline(cnn, images):
    baseline = np.random.default_rng(5).uniform(size=images.shape).astype("float32")
    maps = ki.ScoreCAM(cnn, baseline=baseline, weighting="increase").explain(images, target=1, upsample=False)
    expected = _score_cam_reference(cnn, "conv2", images, [1] * 4, baseline=baseline)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    # Masking towards the input itself changes nothing: no channel increases the confidence.
    np.testing.assert_allclose(ki.ScoreCAM(cnn, baseline=images, weighting="increase").explain(images), 0.0, atol=1e-6)
    # The default is Algorithm 1's channel softmax (chosen by benchmarks/quality.py).
    np.testing.assert_allclose(ki.ScoreCAM(cnn, baseline=baseline).explain(images, target=1, upsample=False),
                               _score_cam_reference(cnn, "conv2", images, [1] * 4, baseline=baseline, weighting="softmax",
                                                    logit_model=_logit_twin(cnn)), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"baseline of shape \(3, 3\) cannot be broadcast"):
        ki.ScoreCAM(cnn, baseline=np.zeros((3, 3))).explain(images)
    with pytest.raises(ValueError, match="weighting must be one of"):
        ki.ScoreCAM(cnn, weighting="logit")


def test_score_cam_skips_constant_channels(images):
    model = tiny_cnn()
    conv = model.get_layer("conv2")
    kernel, bias = conv.get_weights()
    kernel[..., :3] = 0.0
    bias[:3] = [0.0, 0.5, 1.0]
    conv.set_weights([kernel, bias])
    maps = ki.ScoreCAM(model, weighting="increase").explain(images, target=0, upsample=False)
    assert np.isfinite(maps).all()
    # A constant channel would add a uniform offset; the reference skips them.
    np.testing.assert_allclose(maps, _score_cam_reference(model, "conv2", images, [0] * 4), rtol=1e-4, atol=1e-6)


def _backbone_model():
    keras.utils.set_random_seed(3)
    inner_in = keras.Input((12, 12, 3))
    f = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inner_in)
    f = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(f)
    backbone = keras.Model(inner_in, f, name="backbone")
    outer_in = keras.Input((12, 12, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(outer_in))
    nested = keras.Model(outer_in, keras.layers.Dense(3, activation="softmax", name="head")(x))
    flat_x = keras.layers.GlobalAveragePooling2D()(f)
    flat = keras.Model(inner_in, nested.get_layer("head")(flat_x))
    return nested, flat


def test_nested_layer_paths(images):
    nested, flat = _backbone_model()
    for cls in (ki.GradCAM, ki.GradCAMPlusPlus, ki.ScoreCAM):
        np.testing.assert_allclose(
            cls(nested, layer="backbone/conv1").explain(images),
            cls(flat, layer="conv1").explain(images),
            rtol=1e-5,
            atol=1e-7,
        )
    # The default is the backbone's last spatial layer, and CAM finds the head through the nested model.
    assert ki.GradCAM(nested).layer == "backbone/conv2"
    np.testing.assert_allclose(ki.CAM(nested).explain(images), ki.CAM(flat).explain(images), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"No layer or operation named 'backbone/conv9'.*Closest names: \['backbone/conv2', 'backbone/conv1'\]"):
        ki.GradCAM(nested, layer="backbone/conv9")


def test_layer_errors(cnn):
    with pytest.raises(ValueError, match=r"Layer 'gap' has output shape \(None, 6\), not a spatial.*'conv1'"):
        ki.GradCAM(cnn, layer="gap")
    with pytest.raises(ValueError, match="No layer or operation named 'conv7'"):
        ki.ScoreCAM(cnn, layer="conv7")
    flat = ki.reference_cnn((16, 16, 3), head="flatten")
    with pytest.raises(ValueError, match=r"does not end in global average pooling.*ki.GradCAM\(model\)"):
        ki.CAM(flat)
    dense_only = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no tensor with a spatial"):
        ki.GradCAM(dense_only)
    with pytest.raises(ValueError, match="max_channels must be None or a positive int"):
        ki.ScoreCAM(cnn, max_channels=0)
    with pytest.raises(TypeError, match="CAM explains classes"):
        ki.CAM(cnn).explain(np.zeros((1, 12, 12, 3)), target=lambda y: y[:, 0])


def _cam_head_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="features")(inputs)
    return keras.Model(inputs, CAMHead(3, activation="softmax", name="cam_head")(x))


def test_cam_head_identity_and_explainer(images):
    model = _cam_head_model()
    head = model.get_layer("cam_head")
    features = _features(model, "features", images)
    probs, cams = head(features, return_cams=True)
    logits = cams.numpy().mean(axis=(1, 2)) + head.bias.numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs.numpy(), rtol=1e-5, atol=1e-6)
    explained = ki.CAM(model).explain(images, target=1, upsample=False)
    np.testing.assert_allclose(explained, cams.numpy()[..., 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ki.Scorer(model)(images).numpy(), logits, rtol=1e-5, atol=1e-5)


def test_cam_head_config_sequential_and_training():
    head = CAMHead(4, activation="softmax", use_bias=False, name="h")
    clone = CAMHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3), CAMHead(4, activation="softmax")])
    assert model.output_shape == (None, 4)
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.layers[-1].kernel.numpy().copy()
    model.fit(np.ones((4, 8, 8, 2)), np.array([0, 1, 2, 3]), epochs=1, verbose=0)
    assert not np.allclose(before, model.layers[-1].kernel.numpy())
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        CAMHead(0)


def test_cam_head_save_and_load_in_a_fresh_process(tmp_path, images):
    model = _cam_head_model()
    path = tmp_path / "cam.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", images)
    code = (
        "import numpy as np, keras_interp as ki, sys;"
        f"m = ki.load_model(r'{path}'); x = np.load(r'{tmp_path / 'x.npy'}');"
        f"np.save(r'{tmp_path / 'y.npy'}', m.predict(x, verbose=0));"
        f"np.save(r'{tmp_path / 'c.npy'}', ki.CAM(m).explain(x))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(images, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), ki.CAM(model).explain(images), rtol=1e-5, atol=1e-7)


def test_a_setting_a_subclass_adds_gets_its_own_trace(cnn, images):
    # Compiled functions are shared by explainers with equal settings; a subclass's new attribute
    # is a setting without being listed anywhere, so scale=10 never reuses the scale=1 trace.
    class Scaled(ki.GradCAM):
        def __init__(self, model, scale=1.0, **kwargs):
            super().__init__(model, **kwargs)
            self.scale = scale

        def _maps(self, x, classes, score_fn):
            return self.scale * super()._maps(x, classes, score_fn)

    one = Scaled(cnn, scale=1.0).explain(images, target=1, upsample=False)
    assert one.max() > 0
    ten = Scaled(cnn, scale=10.0).explain(images, target=1, upsample=False)
    np.testing.assert_allclose(ten, 10.0 * one, rtol=1e-5)
    again = Scaled(cnn, scale=10.0)
    np.testing.assert_allclose(again.explain(images, target=1, upsample=False), ten)
    assert again.trace_count == 1  # the scale=10 trace, shared
