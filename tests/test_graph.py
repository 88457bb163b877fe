"""Default layers, names and graph execution: ops nodes, nested models, shared layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp.graph import all_paths, last_spatial_site


def _residual():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(a)
    s = a + b  # an operation node, not a layer
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(s)  # 1x1, not spatial
    logits = keras.layers.Conv2D(3, 1, name="logits")(pooled)
    return keras.Model(inputs, keras.layers.Activation("softmax")(keras.layers.Flatten()(logits)))


class SubclassedNet(keras.Model):
    """A subclassed conv -> GAP -> Dense classifier: no functional graph."""

    def __init__(self, classes, activation):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, activation=activation)
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(classes)

    def call(self, x):
        return self.dense(self.gap(self.conv(x)))


def _subclassed(images, classes, activation):
    net = SubclassedNet(classes, activation)
    net(images)
    return net


def test_default_layer_is_the_residual_sum_not_the_branch_or_a_1x1_map(images):
    model = _residual()
    add = [op.name for op in model.operations if type(op).__name__ == "Add"][0]
    explainer = ki.GradCAM(model)
    assert explainer.layer == add
    # The same maps as naming the operation explicitly, and as a reference on a model that
    # exposes the sum as its output.
    np.testing.assert_allclose(explainer.explain(images), ki.GradCAM(model, layer=add).explain(images), rtol=1e-6)
    x = tf.constant(images)
    features_model = keras.Model(model.inputs[0], model.get_layer("conv_a").output + model.get_layer("conv_b").output)
    with tf.GradientTape() as tape:
        feats = features_model(x)
        tape.watch(feats)
        pooled = tf.reduce_mean(feats, axis=(1, 2), keepdims=True)
        logits = tf.reshape(model.get_layer("logits")(pooled), (4, 3))
        score = tf.reduce_sum(tf.gather(logits, [0, 1, 2, 0], axis=1, batch_dims=1))
    grads = tape.gradient(score, feats).numpy()
    expected = np.maximum(np.einsum("bhwk,bk->bhw", feats.numpy(), grads.mean(axis=(1, 2))), 0)
    got = explainer.explain(images, target=[0, 1, 2, 0], upsample=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_nested_backbone_behind_preprocessing(images):
    keras.utils.set_random_seed(1)
    inner_in = keras.Input((12, 12, 3))
    f = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="last_conv")(inner_in)
    backbone = keras.Model(inner_in, keras.layers.GlobalAveragePooling2D()(f), name="backbone")
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(backbone(x)))
    assert ki.GradCAM(model).layer == "backbone/last_conv"
    assert ki.CAM(model).layer == "backbone/last_conv"
    classifier = tiny_cnn()
    seq = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.RandomFlip(), classifier])
    assert ki.GradCAM(seq).layer == "tiny_cnn/conv2"
    np.testing.assert_allclose(ki.GradCAM(seq).explain(images), ki.GradCAM(classifier).explain(images), rtol=1e-5, atol=1e-7)


def test_shared_layer_is_refused_by_name_and_resolved_by_default(images):
    inputs = keras.Input((12, 12, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", name="shared")
    x = shared(keras.layers.Conv2D(3, 1, name="first")(shared(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match=r"'shared' is called 2 times.*shared layer"):
        ki.GradCAM(model, layer="shared")
    site = last_spatial_site(model)
    assert site.path == "shared" and site.nodes[-1].input_tensors[0] is model.get_layer("first").output
    assert np.isfinite(ki.GradCAM(model).explain(images)).all()


def test_subclassed_models_get_one_clear_message(images):
    net = _subclassed(images, classes=3, activation=None)
    for make in (ki.GradCAM, ki.ScoreCAM, lambda m: ki.GradCAM(m, layer="conv")):
        with pytest.raises(ValueError, match="subclassed keras.Model: it has no functional graph.*functional API"):
            make(net)
    with pytest.raises(ValueError, match="subclassed keras.Model: it has no functional graph, so its GAP -> Dense head"):
        ki.CAM(net)
    assert ki.Saliency(net).explain(images).shape == (4, 12, 12)


def test_unknown_names_get_a_short_message_with_close_names():
    model = _residual()
    outer_in = keras.Input((12, 12, 3))
    nested = keras.Model(outer_in, model(outer_in))
    with pytest.raises(ValueError) as error:
        ki.GradCAM(nested, layer=f"{model.name}/conv_c")
    message = str(error.value)
    assert len(message) < 600 and f"'{model.name}/conv_a'" in message and f"'{model.name}/conv_b'" in message


def test_explainers_add_no_nodes_to_the_users_layers(images):
    inner = tiny_cnn()
    inputs = keras.Input((12, 12, 3))
    model = keras.Model(inputs, inner(inputs))
    layers = [model, inner] + inner.layers
    before = [len(layer._inbound_nodes) for layer in layers]
    for _ in range(3):
        for explainer in (ki.GradCAM(model, layer="tiny_cnn/conv1"), ki.CAM(model), ki.ScoreCAM(model), ki.Saliency(model)):
            explainer.explain(images[:1])
    assert [len(layer._inbound_nodes) for layer in layers] == before
    assert len(all_paths(model)) == len(all_paths(inner))


def test_batch_size_bounds_every_forward_pass(images):
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(x.shape[0])
            return x

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(Probe()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    batch = np.concatenate([images] * 3)  # 12 examples
    for explainer in (ki.Saliency(model, batch_size=5), ki.GradCAM(model, batch_size=5),
                      ki.IntegratedGradients(model, steps=4, batch_size=5), ki.Occlusion(model, batch_size=5),
                      ki.ScoreCAM(model, batch_size=5), ki.SmoothGrad(model, samples=3, batch_size=5)):
        seen.clear()
        maps = explainer.explain(batch)
        assert seen and max(s for s in seen if s is not None) <= 5, (type(explainer).__name__, seen)
        # Splitting changes nothing: the first four equal a call on those four alone.
        np.testing.assert_allclose(maps[:4], explainer.explain(images), rtol=1e-5, atol=1e-7)


def test_compiled_functions_are_shared_across_instances_and_models_are_freed(images):
    import gc
    import weakref

    model = tiny_cnn()
    first = ki.Saliency(model)
    first.explain(images)
    traces = first.trace_count
    for _ in range(3):
        again = ki.Saliency(model)
        np.testing.assert_allclose(again.explain(images), first.explain(images))
    assert again.trace_count == traces == 1
    # Settings read inside the trace keep instances apart.
    no_relu, plain = ki.GradCAM(model, relu=False), ki.GradCAM(model)
    b = np.stack([no_relu.explain(images, target=k, upsample=False) for k in range(3)])
    a = np.stack([plain.explain(images, target=k, upsample=False) for k in range(3)])
    assert (b < 0).any() and np.allclose(a, np.maximum(b, 0), atol=1e-7)
    assert ki.GradCAM(model, layer="conv1").explain(images, upsample=False).shape == (4, 12, 12)
    # Another model gets its own functions; a dropped model is freed.
    other = tiny_cnn(seed=1)
    assert not np.allclose(ki.Saliency(other).explain(images), first.explain(images))
    ref = weakref.ref(other)
    del other
    gc.collect()
    assert ref() is None


def test_a_callable_target_traces_once_per_distinct_function(images):
    model = tiny_cnn()
    explainer = ki.Saliency(model)
    for _ in range(3):
        explainer.explain(images, target=lambda y: y[:, 1])
    assert explainer.trace_count == 1
    maps = [explainer.explain(images, target=lambda y: y[:, k]) for k in range(3)]
    for k in range(3):
        np.testing.assert_allclose(maps[k], explainer.explain(images, target=k), rtol=1e-6)
    assert explainer.trace_count == 1 + 3 + 1  # one per distinct function, one for int targets


# ---- Found in review: stale traces, padding, nested outputs, binary CAM, subclassed classes

def test_a_changed_sequential_head_gets_new_traces(images):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    ki.Saliency(model).attribute(images)
    model.pop()
    model.add(keras.layers.Dense(5))
    explainer = ki.Saliency(model)
    assert explainer.scorer.num_classes == 5 and explainer.scorer.activation is None
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(model(x)[:, 4])
    np.testing.assert_allclose(explainer.attribute(images, target=4), tape.gradient(score, x).numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="not built yet"):
        ki.Saliency(keras.Sequential([keras.layers.Dense(2)]))


def test_a_target_whose_closure_array_changes_is_traced_again(images):
    model = tiny_cnn(activation=None)
    explainer = ki.Saliency(model)
    weights = np.array([1.0, 0.0, 0.0], "float32")
    target = lambda y: keras.ops.sum(y * weights, axis=1)  # noqa: E731
    first = explainer.explain(images, target=target)
    np.testing.assert_allclose(first, explainer.explain(images, target=0), rtol=1e-6)
    weights[:] = [0.0, 0.0, 1.0]  # refilled in place: a different target
    np.testing.assert_allclose(explainer.explain(images, target=target), explainer.explain(images, target=2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"one score per example, shape \(4,\); it returned shape \(4, 1\)"):
        explainer.explain(images, target=lambda y: y[:, :1])
    with pytest.raises(ValueError, match="does not depend differentiably"):
        explainer.explain(images, target=lambda y: keras.ops.cast(keras.ops.argmax(y, axis=1), "float32"))


def test_cam_on_a_binary_sigmoid_head(images):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 3))
    f = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(keras.layers.GlobalAveragePooling2D()(f)))
    kernel, bias = model.get_layer("head").get_weights()
    z = ki.Scorer(model)(images).numpy()[:, 1]
    model.get_layer("head").set_weights([kernel, bias - np.median(z)])
    z = ki.Scorer(model)(images).numpy()[:, 1]
    b = model.get_layer("head").get_weights()[1][0]
    features = keras.Model(inputs, f)(images).numpy()
    for target in (0, 1):
        maps = ki.CAM(model).explain(images, target=target, upsample=False)
        sign = 2 * target - 1
        np.testing.assert_allclose(maps, sign * np.einsum("bhwk,k->bhw", features, kernel[:, 0]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(maps.mean(axis=(1, 2)) + sign * b, sign * z, rtol=1e-5, atol=1e-5)
    predicted = ki.CAM(model).explain(images, upsample=False)
    np.testing.assert_allclose(predicted.mean(axis=(1, 2)) + np.sign(z) * b, np.abs(z), rtol=1e-5, atol=1e-5)


def test_zero_padding_is_not_the_default_feature_map():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    assert ki.GradCAM(model).layer == "features"


@pytest.mark.parametrize("used", [0, 1])
def test_nested_model_with_several_outputs(images, used):
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((12, 12, 3))
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inner_in)
    c2 = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="c2")(c1)
    backbone = keras.Model(inner_in, [c1, c2], name="backbone")
    inputs = keras.Input((12, 12, 3))
    features = backbone(inputs)[used]
    head = keras.layers.Dense(3, activation="softmax", name="head")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(features)))
    name = ("c1", "c2")[used]
    assert ki.GradCAM(model).layer == f"backbone/{name}"
    assert ki.CAM(model).layer == f"backbone/{name}"
    flat = keras.Model(inner_in, head(keras.layers.GlobalAveragePooling2D()((c1, c2)[used])))
    for explainer, reference in ((ki.GradCAM(model), ki.GradCAM(flat)), (ki.CAM(model), ki.CAM(flat)),
                                 (ki.GradCAM(model, layer="backbone/c1"), ki.GradCAM(flat, layer="c1"))):
        np.testing.assert_allclose(explainer.explain(images), reference.explain(images), rtol=1e-5, atol=1e-7)
    # A nested classifier returning [features, probabilities]: the softmax is still found.
    classifier = keras.Model(inner_in, [c2, keras.layers.Dense(3, activation="softmax", name="p")(
        keras.layers.GlobalAveragePooling2D()(c2))], name="classifier")
    outer = keras.Model(inputs, classifier(inputs)[1])
    assert ki.Scorer(outer).activation == "softmax"
    assert ki.GradCAM(outer).layer == "classifier/c2"


def test_subclassed_classifier_takes_class_targets(images, tmp_path):
    net = _subclassed(images, classes=4, activation="relu")
    explainer = ki.Saliency(net)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(net(x)[:, 2])
    np.testing.assert_allclose(explainer.attribute(images, target=2), tape.gradient(score, x).numpy(), rtol=1e-5, atol=1e-7)
    assert explainer.scorer.num_classes == 4
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = ki.ExplanationLogger(images[:2], tmp_path, methods=("saliency", "occlusion"), labels=[3, 1])
    net.fit(images, np.array([0, 1, 2, 3]), epochs=1, verbose=0, callbacks=[logger])
    assert sorted(logger._explainers) == ["occlusion", "saliency"]


def test_a_linear_head_is_not_probed_and_new_instances_do_not_retrace(images):
    model = tiny_cnn(activation=None)
    assert ki.Scorer(model)._probed
    target = 1
    for _ in range(4):  # a new explainer and a new (equal) lambda each time, as in a user's loop
        explainer = ki.Saliency(model)
        explainer.explain(images, target=lambda y: y[:, target])
    assert explainer.trace_count == 1
