"""Models from other projects: legacy HDF5 files, permuted feature maps, class-map heads, signed
feature layers, several outputs, clear errors (issue 24). Each form is built here at a tiny size:
a Keras-2-era HDF5 file (its training config rewritten to Keras 2's optimizer arguments), a
detector that permutes its map before Flatten, a mini-Xception-like class-map head."""

import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp import cli, graph

SIZE = 12


def _images(n=3, shape=(SIZE, SIZE, 3), seed=1):
    return np.random.default_rng(seed).uniform(0, 1, size=(n,) + shape).astype("float32")


# ----------------------------------------------------------------------------- legacy HDF5


def test_legacy_hdf5_with_keras2_optimizer_arguments_loads_for_inference(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    outputs = keras.layers.Activation("softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = str(tmp_path / "expression.hdf5")
    model.save(path)
    with h5py.File(path, "r+") as f:  # what a Keras 2 file holds: lr and decay
        config = json.loads(f.attrs["training_config"])
        config["optimizer_config"] = {"class_name": "Adam", "config": {
            "lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "decay": 0.0, "epsilon": 1e-07, "amsgrad": False}}
        f.attrs["training_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="lr"):  # the file really is one Keras 3 cannot compile
        keras.saving.load_model(path)
    loaded = ki.load_model(path)
    x = _images(2, (SIZE, SIZE, 1))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(ki.GradCAM(loaded).explain(x), ki.GradCAM(model).explain(x), rtol=1e-5, atol=1e-6)
    with pytest.warns(UserWarning, match="loaded without compiling"):
        assert ki.load_model(path, compile=True).predict(x, verbose=0).shape == (2, 3)


# ----------------------------------------------------------------------------- the input's frame


def _permuted_detector(height=SIZE, width=10):
    """conv1, conv2 (relu), Permute((2, 1, 3)), Flatten, Dense: an R-Net-like head on a
    non-square input, so a transposed map would not even have the input's shape."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((height, width, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Permute((2, 1, 3), name="permute")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="prob")(x))


def _grad_cam_reference(model, layer, x, classes):
    """Grad-CAM written out: features and logit gradients from a tap model, NumPy weights."""
    logits_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer("prob").output])
    dense = model.get_layer("prob")
    with tf.GradientTape() as tape:
        a, _ = logits_model(x)
        flat = tf.reshape(tf.transpose(a, (0, 2, 1, 3)), (len(x), -1))
        logits = flat @ dense.kernel + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    g = tape.gradient(score, a).numpy().astype(np.float64)
    a = a.numpy().astype(np.float64)
    return np.maximum(np.einsum("bhwk,bk->bhw", a, g.mean(axis=(1, 2))), 0.0)


@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM"])
def test_default_cam_layer_is_before_a_permute(method):
    model = _permuted_detector()
    x = _images(2, (SIZE, 10, 3))
    explainer = getattr(ki, method)(model)
    assert explainer.layer == "conv2"
    maps = explainer.explain(x, target=[0, 2], upsample=False)
    assert maps.shape == (2, SIZE, 10)
    np.testing.assert_allclose(maps, getattr(ki, method)(model, layer="conv2").explain(x, target=[0, 2], upsample=False))
    if method == "GradCAM":
        np.testing.assert_allclose(maps, _grad_cam_reference(model, "conv2", x, [0, 2]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"'permute' is not in the input's spatial frame: Permute 'permute' reorders"):
        getattr(ki, method)(model, layer="permute")


def _frame_model(kind):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    if kind == "reshape":
        y = keras.layers.Reshape((10, SIZE, 4), name="moved")(x)
    elif kind == "transpose":
        y = keras.ops.transpose(x, (0, 2, 1, 3))
    elif kind == "concatenate":
        y = keras.layers.Concatenate(axis=2, name="moved")([x, x])
    elif kind == "same-reshape":  # keeps every cell where it is
        y = keras.layers.Reshape((SIZE, 10, 4), name="moved")(x)
    elif kind == "flip":
        y = keras.ops.flip(x, axis=2)
    elif kind == "tile":
        y = keras.ops.tile(x, (1, 1, 2, 1))
    elif kind == "reverse-slice":
        y = x[:, ::-1]
    elif kind == "split":
        y = keras.ops.split(x, 2, axis=1)[1]
    elif kind == "squeeze-excitation":  # EfficientNet's: pool, Reshape((1, 1, C)), scale
        se = keras.layers.Reshape((1, 1, 4))(keras.layers.GlobalAveragePooling2D()(x))
        y = keras.layers.Multiply()([x, keras.layers.Dense(4, activation="sigmoid")(se)])
    elif kind == "channel-flip":
        y = keras.ops.flip(x, axis=-1)
    elif kind == "tokens":  # (h, w) -> h * w tokens -> Dense -> (h, w), as hybrid CNN-transformers do
        y = keras.layers.Reshape((SIZE, 10, 4))(keras.layers.Dense(4)(keras.layers.Reshape((SIZE * 10, 4))(x)))
    elif kind == "space-to-depth":  # a cell covers its 2x2 block, as after a stride-2 convolution
        y = keras.layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2), output_shape=(SIZE // 2, 5, 16))(x)
    y = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="after")(y)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(y)))


@pytest.mark.parametrize("kind, layer", [("reshape", "features"), ("transpose", "features"),
                                         ("concatenate", "features"), ("same-reshape", "after"),
                                         ("flip", "features"), ("tile", "features"), ("reverse-slice", "features"),
                                         ("split", "features"),
                                         # These keep every cell in place: squeeze-excitation, a
                                         # channel flip (RGB -> BGR), tokens and back, space-to-depth.
                                         ("squeeze-excitation", "after"), ("channel-flip", "after"),
                                         ("tokens", "after"), ("space-to-depth", "after")])
def test_reordering_operations_leave_the_frame(kind, layer):
    model = _frame_model(kind)
    assert ki.GradCAM(model).layer == layer
    moved = graph.frame_breaks(model)
    after = graph.find_site(model, "after")
    assert (id(after.tensor) in moved) == (layer == "features")


def test_no_layer_in_the_frame_is_a_clear_error_and_layers_does_not_offer_it(tmp_path, capsys):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Permute((2, 1, 3), name="permute")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match="in the input's frame.*'conv' \\(Permute 'permute' reorders"):
        ki.GradCAM(model)
    _permuted_detector().save(tmp_path / "detector.keras")
    assert cli.main(["layers", str(tmp_path / "detector.keras")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "gradcam" in rows["conv2"] and "gradcam" not in rows["permute"]


# ----------------------------------------------------------------------------- class-map heads


def _class_map_net(classes=3, bias=0.0, activation="softmax"):
    """conv-relu, then a conv with one (signed) channel per class, GAP, softmax: mini-Xception's head."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(classes, 3, padding="same", name="class_maps",
                            bias_initializer=keras.initializers.Constant(bias))(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Activation(activation, name="predictions")(x))


def _class_maps_and_logits(model, x):
    tap = keras.Model(model.inputs, [model.get_layer("class_maps").output, model.get_layer("gap").output])
    a, logits = tap(x)
    return a.numpy(), logits.numpy()


def test_cam_on_a_class_map_head_is_the_class_channel():
    model = _class_map_net()
    x = _images(4)
    a, logits = _class_maps_and_logits(model, x)
    classes = [0, 2, 1, 2]
    cam = ki.CAM(model)
    assert cam.layer == "class_maps" and cam.signed
    maps = cam.explain(x, target=classes, upsample=False)
    expected = a[np.arange(4), :, :, classes]
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    assert (maps < 0).any() and (maps > 0).any()  # signed, as CAM on GAP -> Dense
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), logits[np.arange(4), classes], rtol=1e-5, atol=1e-6)
    hw = maps.shape[1] * maps.shape[2]
    grad_cam = ki.GradCAM(model, relu=False).explain(x, target=classes, upsample=False)
    np.testing.assert_allclose(grad_cam * hw, maps, rtol=1e-4, atol=1e-5)


def test_cam_on_a_one_unit_sigmoid_class_map_head():
    model = _class_map_net(classes=1, activation="sigmoid")
    x = _images(2)
    a, _ = _class_maps_and_logits(model, x)
    maps = ki.CAM(model).explain(x, target=[1, 0], upsample=False)
    np.testing.assert_allclose(maps, np.stack([a[0, ..., 0], -a[1, ..., 0]]), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- signed layers


def test_grad_cam_pp_on_a_class_map_head_keeps_its_sign_for_low_logits():
    # alpha = 1 / (2 + logit) as written: below -2 the map would be ReLU(-A_c), counter-evidence.
    model = _class_map_net()
    x = _images(3)
    layer = model.get_layer("class_maps")
    kernel, _ = layer.get_weights()
    layer.set_weights([kernel * 10.0, np.zeros_like(layer.get_weights()[1])])  # maps of wide spread
    _, logits = _class_maps_and_logits(model, x)
    layer.set_weights([kernel * 10.0, -logits.max(axis=0) - 3.0])  # every logit <= -3
    a, logits = _class_maps_and_logits(model, x)
    classes = logits.argmax(axis=1)
    assert (logits < -2).all()
    with pytest.warns(UserWarning, match="negative activations.*\\|sum A\\|"):
        maps = ki.GradCAMPlusPlus(model).explain(x, target=classes, upsample=False)
    evidence = np.maximum(a[np.arange(3), :, :, classes], 0.0)
    assert evidence.max(axis=(1, 2)).min() > 0
    # ReLU of the class's map, times a positive alpha * g: the same picture as Grad-CAM's.
    np.testing.assert_allclose(maps / maps.max(axis=(1, 2), keepdims=True),
                               evidence / evidence.max(axis=(1, 2), keepdims=True), rtol=1e-4, atol=1e-5)


def test_score_cam_on_a_channel_negative_everywhere_is_not_empty():
    # Every class map negative everywhere (bias -6): the raw weighted sum is negative at every cell
    # and the paper's ReLU would return zeros; measured from each channel's minimum it is not.
    model = _class_map_net(bias=-6.0)
    x = _images(3)
    a, _ = _class_maps_and_logits(model, x)
    assert (a < 0).all()
    with pytest.warns(UserWarning, match="negative activations"):
        maps = ki.ScoreCAM(model).explain(x, upsample=False)
    assert (maps.max(axis=(1, 2)) > 0).all()


def test_score_cam_on_a_signed_layer_is_the_papers_map_unless_it_is_empty():
    from test_cam import _score_cam_reference

    for bias in (0.0, -6.0):  # mixed signs: the paper's sum; negative everywhere: measured from the minimum
        model = _class_map_net(bias=bias)
        x = _images(3)
        with pytest.warns(UserWarning, match="negative activations"):
            maps = ki.ScoreCAM(model, weighting="increase").explain(x, target=[0, 1, 2], upsample=False)
        expected = _score_cam_reference(model, "class_maps", x, [0, 1, 2])
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)


def test_signed_check_runs_once_and_ignores_small_dips(monkeypatch):
    # swish's dips (>= -0.28) are no signed layer; the check costs one pass per explainer, not per call.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="swish", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x * 5.0 + 1.0)))
    explainer = ki.GradCAMPlusPlus(model, layer="conv")
    x = _images(2)
    calls = []
    source = explainer._source  # the feature tap every pass goes through
    monkeypatch.setattr(explainer, "_source", lambda t: calls.append(1) or source(t))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for _ in range(3):
            explainer.explain(x)
    assert len(calls) == 2  # the compiled function's one trace, and the check's one pass


def test_an_all_zero_map_says_why():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    kernel, bias = model.get_layer("out").get_weights()
    kernel[:, 0] = -np.abs(kernel[:, 0]) - 0.1  # every channel argues against class 0
    model.get_layer("out").set_weights([kernel, bias])
    x = _images(2)
    with pytest.warns(UserWarning, match=r"the maps of 2 of 2 examples \(first: \[0, 1\]\) are zero everywhere"):
        maps = ki.GradCAM(model).explain(x, target=0)
    assert not maps.any()


# ----------------------------------------------------------------------------- several outputs


def _two_heads():
    """A trunk with a class head and a box head, and the same layers as a one-output model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    classes = keras.layers.Dense(2, activation="softmax", name="cls")(g)
    boxes = keras.layers.Dense(4, name="box")(g)
    return keras.Model(inputs, [classes, boxes]), keras.Model(inputs, classes)


def test_output_is_taken_everywhere_a_model_is():
    two, one = _two_heads()
    x = _images(3, (16, 16, 3))
    np.testing.assert_allclose(ki.ClassModelVisualization(two, output="cls").visualize([1], steps=3),
                               ki.ClassModelVisualization(one).visualize([1], steps=3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ki.FeatureVisualization(two, "c2").visualize([0, 3], steps=3),
                               ki.FeatureVisualization(one, "c2").visualize([0, 3], steps=3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ki.FeatureVisualization(two, "c2", output="box").visualize([0], steps=3),
                               ki.FeatureVisualization(one, "c2").visualize([0], steps=3), rtol=1e-5, atol=1e-6)
    for kwargs in ({}, {"output": "cls"}):
        dream = ki.DeepDream(two, **kwargs)
        assert dream.layers == ["c2"]
        np.testing.assert_allclose(dream.dream(x[0], octaves=2, steps=2), ki.DeepDream(one).dream(x[0], octaves=2, steps=2),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ki.Deconvnet(two, layer="c2").attribute(x, target=1),
                               ki.Deconvnet(one, layer="c2").attribute(x, target=1), rtol=1e-5, atol=1e-7)
    found = ki.DatasetSearch(two, "c2").search(x, top_k=2, channels=[1], keep_images=True)
    np.testing.assert_allclose(found.projections(),
                               ki.DatasetSearch(one, "c2").search(x, top_k=2, channels=[1], keep_images=True).projections())
    assert found.sheet(project=True).ndim == 3


def test_randomization_check_follows_the_explained_output():
    two, one = _two_heads()
    x = _images(3, (16, 16, 3))
    two_heads = ki.metrics.randomization_check(lambda m: ki.Saliency(m, output="cls"), two, x)
    assert list(two_heads) == ["cls", "c2", "c1"]  # the box head cannot change the class maps
    np.testing.assert_allclose(list(two_heads.values()),
                               list(ki.metrics.randomization_check(ki.Saliency, one, x).values()), rtol=1e-6)


def test_cli_visualize_and_dream_take_output(tmp_path, capsys):
    two, one = _two_heads()
    two.save(tmp_path / "two.keras")
    import cv2

    photo = (np.random.default_rng(0).uniform(0, 255, (30, 45, 3))).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    assert cli.main(["visualize", str(tmp_path / "two.keras"), "--classes", "1", "--steps", "2", "--output", "cls",
                     "--out", str(tmp_path / "v"), "--quiet"]) == 0
    assert cli.main(["dream", str(tmp_path / "two.keras"), str(tmp_path / "photo.png"), "--steps", "2", "--output",
                     "box", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    # The dream keeps the photo's size (the model takes 16x16; its conv layers take any size).
    assert cv2.imread(str(tmp_path / "d" / "dream.png")).shape == (30, 45, 3)
    assert cli.main(["visualize", str(tmp_path / "two.keras"), "--classes", "1", "--out", str(tmp_path / "w")]) == 2
    assert "pass --output (a name or an index)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- clear errors


def test_deep_dream_skips_octaves_too_small_for_the_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    photo = _images(1, (16, 16, 1))[0]
    with pytest.warns(UserWarning, match="octaves are skipped"):
        dream = ki.DeepDream(model, layers="c2").dream(photo, octaves=4, steps=2)  # 16 / 1.4^3 = 6 px: too small
    assert dream.shape == photo.shape and np.isfinite(dream).all()
    with pytest.raises(ValueError, match=r"cannot run on a 5x5 image") as info:
        ki.DeepDream(model, layers="c2").dream(photo[:5, :5], octaves=1, steps=2)
    assert "\n" not in str(info.value)


def test_wrong_channels_give_one_line_everywhere():
    keras.utils.set_random_seed(0)
    grey = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(3, 3, activation="relu", name="c"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    rgb = _images(2, (16, 16, 3))
    calls = {
        "Saliency.explain": lambda: ki.Saliency(grey).explain(rgb),
        "DeepDream.dream": lambda: ki.DeepDream(grey).dream(rgb[0], steps=1),
        "DatasetSearch.search": lambda: ki.DatasetSearch(grey, "c").search(rgb),
        "deletion_auc": lambda: ki.metrics.deletion_auc(grey, rgb, rgb[..., 0]),
        "randomization_check": lambda: ki.metrics.randomization_check(ki.Saliency, grey, rgb),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"channel.*3|3.*channel") as info:
            call()
        assert "\n" not in str(info.value) and "in user code" not in str(info.value), name
