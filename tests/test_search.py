"""Receptive fields (against the support of a unit's input gradient) and dataset search (against NumPy)."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp import graph
from keras_interp.search import ReceptiveField

# ----------------------------------------------------------------------------- receptive fields


def _conv(filters, kernel, **kwargs):
    return keras.layers.Conv2D(filters, kernel, **kwargs)


def same_strided_pooled():
    inputs = keras.Input((17, 17, 2))
    x = _conv(3, 3, padding="same", name="c1")(inputs)
    x = _conv(3, 3, strides=2, padding="same", activation="relu", name="c2")(x)  # 17 -> 9
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool")(x)  # 9 -> 5, odd: padded
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = _conv(2, 3, dilation_rate=2, padding="same", name="dilated")(x)
    return keras.Model(inputs, x)


def valid_strided():
    inputs = keras.Input((20, 19, 1))
    x = _conv(2, 5, strides=2, name="c1")(inputs)
    x = keras.layers.AveragePooling2D(3, strides=2, name="pool")(x)
    x = _conv(2, (2, 3), name="c2")(x)
    return keras.Model(inputs, x)


def even_kernels_same():
    inputs = keras.Input((15, 16, 1))
    x = _conv(2, 4, strides=2, padding="same", name="c1")(inputs)
    x = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="pool")(x)
    x = _conv(2, (2, 1), padding="same", name="c2")(x)
    return keras.Model(inputs, x)


def nested_behind_rescaling(inner_shape=(16, 16, 3)):
    inner = keras.Input(inner_shape)
    x = _conv(4, 3, strides=2, padding="same", name="conv1")(inner)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = _conv(4, 3, name="conv2")(x)
    backbone = keras.Model(inner, x, name="backbone")
    inputs = keras.Input((16, 16, 3))
    y = backbone(keras.layers.Rescaling(0.5, name="scale")(inputs))
    y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(y))
    return keras.Model(inputs, y)


def any_size_backbone():
    """A backbone built for any size ((None, None, 3), as keras.applications builds them for
    transfer learning), called on a fixed-size input: its strided 'same' padding needs the size."""
    return nested_behind_rescaling(inner_shape=(None, None, 3))


def branches_and_padding():
    inputs = keras.Input((14, 14, 1))
    a = _conv(2, 3, padding="same", name="a")(inputs)
    b = _conv(2, 5, padding="same", name="b")(inputs)
    x = keras.layers.Add(name="merge")([a, b])
    x = keras.layers.ZeroPadding2D(((2, 0), (1, 1)), name="zpad")(x)
    x = _conv(2, 3, name="c")(x)
    c = keras.layers.Cropping2D(((1, 2), (0, 1)), name="crop")(x)
    d = keras.layers.Concatenate(name="cat")([c, keras.layers.Cropping2D(((1, 2), (0, 1)))(_conv(1, 1)(x))])
    return keras.Model(inputs, (d + 1.0) * 2.0)


def dilated_valid():
    inputs = keras.Input((16, 16, 1))
    x = _conv(2, 3, padding="same", name="c1")(inputs)
    x = _conv(2, 3, dilation_rate=(2, 3), name="dilated")(x)
    return keras.Model(inputs, x)


def _ones(model):
    """Kernels all ones, biases zero: every path adds, so no gradient cancels out."""
    for w in model.weights:
        if w.path.endswith("kernel"):
            w.assign(np.ones(w.shape, "float32"))
        elif w.path.endswith("bias"):
            w.assign(np.zeros(w.shape, "float32"))
    return model


def _gradient_box(model, site, unit):
    """Bounding box (top, left, bottom, right) of where d unit / d input != 0, summed over impulse
    inputs (one lit pixel each): max pooling routes the gradient to one input per window, and the
    impulses make every pixel of the field the maximum once."""
    height, width, channels = model.inputs[0].shape[1:]
    x = np.zeros((height * width, height, width, channels), "float32")
    x[np.arange(height * width), np.arange(height * width) // width, np.arange(height * width) % width] = 1.0
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, (features,) = graph.run(model, x, [site], stop_after_taps=True)
        score = tf.reduce_sum(features[:, unit[0], unit[1], 0])
    support = np.abs(tape.gradient(score, x).numpy()).sum(axis=(0, 3)) > 0
    rows, cols = np.flatnonzero(support.any(1)), np.flatnonzero(support.any(0))
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


RF_CASES = [
    (same_strided_pooled, "c1"), (same_strided_pooled, "c2"), (same_strided_pooled, "pool"),
    (same_strided_pooled, "dilated"), (dilated_valid, "dilated"), (valid_strided, "pool"), (valid_strided, "c2"),
    (even_kernels_same, "c1"), (even_kernels_same, "c2"), (nested_behind_rescaling, "backbone/conv2"),
    (nested_behind_rescaling, "backbone"), (any_size_backbone, "backbone/conv2"), (branches_and_padding, "merge"), (branches_and_padding, "crop"),
    (branches_and_padding, "cat"),
]


@pytest.mark.parametrize("build, layer", RF_CASES, ids=[f"{b.__name__}-{layer}" for b, layer in RF_CASES])
def test_receptive_field_is_the_gradient_support(build, layer):
    model = _ones(build())
    rf = ki.receptive_field(model, layer)
    site = graph.find_site(model, layer)
    height, width = model.inputs[0].shape[1:3]
    # The feature map's size as the model computes it (a backbone built for any size has None).
    h, w = graph.run(model, tf.zeros((1,) + tuple(model.inputs[0].shape[1:])), [site])[1][0].shape[1:3]
    units = {(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (h // 2, w // 2), (min(1, h - 1), min(2, w - 1))}
    inside = 0
    for i, j in sorted(units):
        top, left, bottom, right = rf.box(i, j)
        assert (bottom - top, right - left) == rf.size
        clipped = (max(top, 0), max(left, 0), min(bottom, height), min(right, width))
        support = _gradient_box(model, site, (i, j))
        if "dilated" in layer and clipped != (top, left, bottom, right):
            # A dilated kernel's field has holes; clipped by the border, a hole can be its edge.
            assert all(c <= g for c, g in zip(clipped[:2], support[:2])), (i, j)
            assert all(g <= c for g, c in zip(support[2:], clipped[2:])), (i, j)
        else:
            assert support == clipped, (i, j)
        if clipped == (top, left, bottom, right):  # a unit whose field fits: size and centre exactly
            inside += 1
            assert rf.offset[0] + i * rf.jump[0] == (top + bottom - 1) / 2
            assert rf.offset[1] + j * rf.jump[1] == (left + right - 1) / 2
    assert inside or rf.size[0] > height // 2 or rf.size[1] > width // 2


def test_receptive_field_values():
    inputs = keras.Input((12, 12, 3))
    x = _conv(2, 3, name="valid")(inputs)
    assert ki.receptive_field(keras.Model(inputs, x), "valid") == ReceptiveField((3, 3), (1, 1), (1.0, 1.0))
    rf = ki.receptive_field(ki.reference_cnn(), "relu2_2")
    assert (rf.size, rf.jump, rf.offset) == ((14, 14), (2, 2), (0.5, 0.5))
    assert rf.box(0, 0) == (-6, -6, 8, 8) and rf.box(3, 1) == (0, -4, 14, 10)
    # The nested path and the nested model's output are the same tensor.
    model = nested_behind_rescaling()
    assert ki.receptive_field(model, "backbone") == ki.receptive_field(model, "backbone/conv2")


def test_receptive_field_errors():
    inputs = keras.Input((8, 8, 3))
    x = _conv(4, 3, name="conv")(inputs)
    g = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    y = _conv(2, 1, name="after_gap")(g)
    f = keras.layers.Dense(16, name="fc")(keras.layers.Flatten(name="flat")(x))
    z = _conv(2, 1, name="after_dense")(keras.layers.Reshape((4, 4, 1), name="reshape")(f))
    model = keras.Model(inputs, [y, z, f])
    with pytest.raises(ValueError, match="'gap'.*whole feature map"):
        ki.receptive_field(model, "after_gap")
    with pytest.raises(ValueError, match=r"'flat' \(Flatten\) mixes all positions"):
        ki.receptive_field(model, "after_dense")
    with pytest.raises(ValueError, match="'fc'.*spatial feature maps"):
        ki.receptive_field(model, "fc")
    with pytest.raises(ValueError, match="No layer or operation named 'conf'.*'conv'"):
        ki.receptive_field(model, "conf")
    free = keras.Input((None, None, 3))
    same = keras.Model(free, _conv(2, 3, strides=2, padding="same", name="same")(free))
    with pytest.raises(ValueError, match="'same' with a stride.*height and width, which are not known"):
        ki.receptive_field(same, "same")
    stride_one = keras.Model(free, _conv(2, 3, padding="same", name="same")(free))  # needs no size
    assert ki.receptive_field(stride_one, "same").size == (3, 3)


# ----------------------------------------------------------------------------- dataset search


@pytest.fixture(scope="module")
def small():
    """(model, images, labels): conv-pool-conv on 12x12 images, whose conv2 fields leave the image."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    x = _conv(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)  # off in inference: a search in training mode would differ
    x = _conv(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Dense(3, name="predictions")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, x)
    bn = model.get_layer("bn1")
    bn.set_weights([w + np.linspace(0.5, 1.5, 4, dtype="float32") for w in bn.get_weights()])  # not the identity
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(50, 12, 12, 3)).astype("float32")
    images[31] = images[4]  # an exact tie: the lower index ranks first
    return model, images, rng.integers(0, 3, size=50)


def _features(model, layer, x):
    """The layer's activations from a plain Keras model truncated there, in inference mode."""
    truncated = keras.Model(model.inputs, model.get_layer(layer).output)
    return np.asarray(truncated(tf.constant(x), training=False))


def _numpy_crop(image, box):
    top, left, bottom, right = box
    pad = max(0, -top, -left, bottom - image.shape[0], right - image.shape[1])
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return padded[top + pad:bottom + pad, left + pad:right + pad]


def test_search_equals_brute_force(small):
    model, images, _ = small
    result = ki.DatasetSearch(model, "conv2").search(images, top_k=6, batch_size=16)
    features = _features(model, "conv2", images)  # (50, 6, 6, 5)
    flat = features.reshape(50, -1, 5)
    peak, where = flat.max(1), flat.argmax(1)
    rf = ki.receptive_field(model, "conv2")
    assert result.values.shape == (5, 6) and rf.size == (8, 8)
    np.testing.assert_array_equal(result.channels, np.arange(5))
    for c in range(5):
        order = np.lexsort((np.arange(50), -peak[:, c]))[:6]
        np.testing.assert_array_equal(result.indices[c], order)
        np.testing.assert_array_equal(result.values[c], peak[order, c])
        np.testing.assert_array_equal(result.positions[c], np.stack(np.divmod(where[order, c], 6), -1))
        assert len(set(result.indices[c].tolist())) == 6
        for r in range(6):
            box = rf.box(*result.positions[c, r])
            np.testing.assert_array_equal(result.boxes[c, r], box)
            np.testing.assert_array_equal(result.crops[c, r], _numpy_crop(images[result.indices[c, r]], box))
    # Recomputing from the returned indices reproduces the recorded values exactly.
    again = _features(model, "conv2", images[result.indices[2]])
    rows, cols = result.positions[2].T
    np.testing.assert_array_equal(again[np.arange(6), rows, cols, 2], result.values[2])
    # Border units' boxes leave the image and their crops are zero there.
    border = [(c, r) for c in range(5) for r in range(6) if result.boxes[c, r, 0] < 0 or result.boxes[c, r, 1] < 0]
    assert border
    c, r = border[0]
    top, left = result.boxes[c, r, :2]
    assert not result.crops[c, r, :max(0, -top)].any() and not result.crops[c, r, :, :max(0, -left)].any()


def test_search_inputs_agree_and_trace_once(small):
    model, images, labels = small
    search = ki.DatasetSearch(model, "conv2")
    kwargs = {"top_k": 4, "channels": [3, 0], "batch_size": 16}
    reference = search.search(images, labels=labels, **kwargs)
    step = next(iter(search._steps.values()))[1]
    assert step.experimental_get_tracing_count() == 1  # 50 = 3 x 16 + 2: the last batch is padded
    ds = tf.data.Dataset.from_tensor_slices
    variants = [
        search.search(ds((images, labels)), **kwargs),
        search.search(ds((images, labels)).batch(7), **kwargs),
        search.search(ds(images).batch(9), **kwargs),
        search.search(ds(images), **kwargs),
        search.search(images, **kwargs),
    ]
    for i, other in enumerate(variants):
        for name in ("values", "indices", "positions", "boxes", "crops", "channels"):
            np.testing.assert_array_equal(getattr(other, name), getattr(reference, name), err_msg=f"{i} {name}")
        if i < 2:
            np.testing.assert_array_equal(other.labels, reference.labels)
        else:
            assert other.labels is None
    np.testing.assert_array_equal(reference.labels, labels[reference.indices])
    np.testing.assert_array_equal(reference.channels, [3, 0])
    assert step.experimental_get_tracing_count() == 1


def test_fewer_images_than_top_k_and_progress(small, capsys):
    model, images, _ = small
    result = ki.DatasetSearch(model, "conv1").search(tf.data.Dataset.from_tensor_slices(images[:3]).repeat(1)
                                                     .filter(lambda x: True), top_k=9, verbose=True)
    assert result.values.shape == (4, 3) and result.crops.shape == (4, 3, 3, 3, 3)
    assert sorted(result.indices[0].tolist()) == [0, 1, 2]
    assert "images/s" in capsys.readouterr().out


def test_search_errors(small):
    model, images, _ = small
    search = ki.DatasetSearch(model, "conv2")
    with pytest.raises(ValueError, match=r"channels must be None or ints in \[0, 4\].*\[7\]"):
        search.search(images, channels=[7])
    with pytest.raises(ValueError, match="top_k must be a positive int; received 0"):
        search.search(images, top_k=0)
    with pytest.raises(ValueError, match="height is 10 but the model expects 12"):
        search.search(images[:, :10])
    with pytest.raises(ValueError, match=r"dataset yields \(None, 10, 12, 3\)"):
        search.search(tf.data.Dataset.from_tensor_slices(images[:, :10]).batch(4))
    with pytest.raises(ValueError, match="labels has 3 entries for 50 images"):
        search.search(images, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="No layer or operation named 'conv3'"):
        ki.DatasetSearch(model, "conv3")
    with pytest.raises(ValueError, match="'gap'.*spatial feature maps"):
        ki.DatasetSearch(model, "gap")


def test_sheet_and_projection(small):
    model, images, _ = small
    search = ki.DatasetSearch(model, "conv2")
    plain = search.search(images, top_k=3, channels=[0, 2])
    sheet = plain.sheet()
    # grid: 20 px of column labels, 90 px of row labels, 4 px padding; 8x8 crops shown at 64x64.
    assert sheet.dtype == np.uint8 and sheet.shape == (20 + 2 * 68 + 4, 90 + 3 * 68 + 4, 3)
    with pytest.raises(ValueError, match="keep_images=True"):
        plain.sheet(project=True)
    kept = search.search(images, top_k=3, channels=[0, 2], keep_images=True)
    np.testing.assert_array_equal(kept.images, images[kept.indices])
    assert kept.sheet(project=True).shape == (20 + 2 * 68 + 4, 90 + 6 * 68 + 4, 3)
    # The projection of a unit lies inside the unit's receptive field, so the crop holds all of it.
    full = ki.Deconvnet(model, layer="conv2").attribute(kept.images[1], target=2)
    crops = kept.projections()[1]
    for r in range(3):
        assert np.abs(full[r]).sum() > 0
        np.testing.assert_allclose(np.abs(crops[r]).sum(), np.abs(full[r]).sum(), rtol=1e-5)


DISTRIBUTED = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import keras_interp as ki

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12, 12, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
        x = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
        model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(75, 12, 12, 3)).astype("float32")
    images[40] = images[3]  # a tie between images that land on different replicas
    labels = rng.integers(0, 3, size=75)
    single = ki.DatasetSearch(model, "conv2").search(images, top_k=4, batch_size=16, labels=labels,
                                                     keep_images=True)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    spread = ki.DatasetSearch(model, "conv2", strategy=strategy).search(data, top_k=4, batch_size=32,
                                                                        keep_images=True)
    assert strategy.num_replicas_in_sync == 2
    for name in ("values", "indices", "positions", "boxes", "crops", "labels", "images", "channels"):
        a, b = getattr(single, name), getattr(spread, name)
        assert a.shape == b.shape and np.array_equal(a, b), name
    assert len(set(single.indices[:, 0].tolist()) | set(single.indices[:, 3].tolist())) > 1
    print("distributed == single-device")
""")


def test_distributed_equals_single_device():
    done = subprocess.run([sys.executable, "-c", DISTRIBUTED], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed == single-device" in done.stdout


def test_fields_larger_than_the_image_any_size_backbones_and_data_errors():
    keras.utils.set_random_seed(1)
    inner = keras.Input((None, None, 2))  # built for any size, as keras.applications backbones are
    x = inner
    for i in range(3):
        x = _conv(3, 5, strides=2 if i == 1 else 1, padding="same", activation="relu", name=f"c{i}")(x)
    backbone = keras.Model(inner, x, name="backbone")
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, backbone(inputs))
    images = np.random.default_rng(2).uniform(size=(20, 8, 8, 2)).astype("float32")
    result = ki.DatasetSearch(model, "backbone/c2").search(images, top_k=3)
    rf = result.receptive_field
    assert rf.size == (17, 17) and result.windows.shape == (3, 3, 8, 8, 2)  # windows: at most the image
    assert result.crops.shape == (3, 3, 17, 17, 2)
    for c in range(3):
        for r in range(3):
            np.testing.assert_array_equal(result.crops[c, r], _numpy_crop(images[result.indices[c, r]],
                                                                          result.boxes[c, r]))
    ds = tf.data.Dataset.from_tensor_slices
    weighted = ki.DatasetSearch(model, "backbone/c2").search(ds((images, np.arange(20), np.ones(20))), top_k=3)
    np.testing.assert_array_equal(weighted.indices, result.indices)  # (x, y, sample_weight) as fit takes
    np.testing.assert_array_equal(weighted.labels, result.indices)
    bad = images.copy()
    bad[7, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="The data contains NaN or infinite values"):
        ki.DatasetSearch(model, "backbone/c2").search(ds(bad))
    with pytest.raises(ValueError, match=r"would keep .* GiB of image windows .* pass channels="):
        ki.DatasetSearch(model, "backbone/c2").search(images, top_k=10**7)
