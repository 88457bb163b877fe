"""MaxPoolingWithSwitches2D and MaxUnpooling2D against NumPy references."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp.layers import MaxPoolingWithSwitches2D, MaxUnpooling2D


def _windows(n, k, s, padding):
    """Start (may be negative) of each window along one axis, as Keras/TensorFlow place them."""
    if padding == "valid":
        return [i * s for i in range((n - k) // s + 1)]
    out = -(-n // s)
    pad_total = max((out - 1) * s + k - n, 0)
    return [i * s - pad_total // 2 for i in range(out)]


def numpy_pool(x, k, s, padding):
    """Pooled values and (row, col) of each maximum: first in row-major order on ties."""
    b, h, w, c = x.shape
    rows, cols = _windows(h, k, s, padding), _windows(w, k, s, padding)
    pooled = np.zeros((b, len(rows), len(cols), c), x.dtype)
    where = np.zeros((b, len(rows), len(cols), c, 2), int)
    for n, (i, r0), (j, c0), ch in itertools.product(range(b), enumerate(rows), enumerate(cols), range(c)):
        best, at = -np.inf, None
        for r in range(max(r0, 0), min(r0 + k, h)):
            for q in range(max(c0, 0), min(c0 + k, w)):
                if x[n, r, q, ch] > best:
                    best, at = x[n, r, q, ch], (r, q)
        pooled[n, i, j, ch], where[n, i, j, ch] = best, at
    return pooled, where


def numpy_unpool(values, where, shape):
    out = np.zeros(shape, values.dtype)
    for n, i, j, ch in itertools.product(*map(range, values.shape)):
        r, q = where[n, i, j, ch]
        out[n, r, q, ch] += values[n, i, j, ch]
    return out


CASES = [(2, None, "valid"), (2, None, "same"), (3, 2, "valid"), (3, 2, "same"), (3, 1, "same"), (2, 3, "valid")]


@pytest.mark.parametrize("pool,strides,padding", CASES)
@pytest.mark.parametrize("size", [(7, 5), (8, 8)])
def test_pooling_and_unpooling_match_numpy(pool, strides, padding, size):
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    x[0, :3, :3, 0] = 1.0  # a tie: the first maximum in row-major order wins
    layer = MaxPoolingWithSwitches2D(pool, strides=strides, padding=padding)
    pooled, switches = layer(x)
    ref_pooled, where = numpy_pool(x, pool, strides or pool, padding)
    np.testing.assert_array_equal(pooled, keras.layers.MaxPooling2D(pool, strides, padding)(x))
    np.testing.assert_array_equal(pooled, ref_pooled)
    assert switches.dtype == tf.int32 and switches.shape == pooled.shape + (4,)
    np.testing.assert_array_equal(switches[..., :2], where)
    np.testing.assert_array_equal(switches[..., 2:], np.broadcast_to(size, where.shape))
    # Unpool a signal other than the pooled values: it goes back to the recorded positions.
    signal = np.random.default_rng(1).normal(size=pooled.shape).astype("float32")
    restored = MaxUnpooling2D()([signal, switches])
    assert restored.shape == x.shape
    np.testing.assert_allclose(restored, numpy_unpool(signal, where, x.shape), rtol=1e-6)


@pytest.mark.parametrize("pool,strides,padding", CASES)
def test_gradient_equals_max_pooling_and_unpooling_is_that_gradient(pool, strides, padding):
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 7, 6, 2)).astype("float32"))
    x = tf.maximum(x, 0.0)  # ReLU zeros: many tied windows
    upstream = np.random.default_rng(3).normal(size=MaxPoolingWithSwitches2D(pool, strides, padding)(x)[0].shape)
    upstream = tf.constant(upstream.astype("float32"))
    grads = []
    for layer in (keras.layers.MaxPooling2D(pool, strides, padding), MaxPoolingWithSwitches2D(pool, strides, padding)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            out = out[0] if isinstance(out, tuple) else out
        grads.append(tape.gradient(out, x, output_gradients=upstream))
    np.testing.assert_array_equal(grads[0], grads[1])
    switches = MaxPoolingWithSwitches2D(pool, strides, padding)(x)[1]
    np.testing.assert_allclose(MaxUnpooling2D()([upstream, switches]), grads[0], rtol=1e-6)


def test_layers_in_functional_and_sequential_models_and_keras_round_trip(tmp_path):
    x = np.random.default_rng(4).normal(size=(3, 9, 7, 2)).astype("float32")
    inputs = keras.Input((9, 7, 2))
    pooled, switches = MaxPoolingWithSwitches2D(3, strides=2, padding="same", name="pool")(inputs)
    restored = MaxUnpooling2D(name="unpool")([pooled, switches])
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="mix")(restored))
    assert restored.shape == (None, 9, 7, 2)  # the static size comes from the pooling's input
    path = tmp_path / "unpool.keras"
    model.save(path)
    loaded = ki.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert loaded.get_layer("pool").get_config()["padding"] == "same"

    sequential = keras.Sequential([keras.Input((9, 7, 2)), MaxPoolingWithSwitches2D(2), MaxUnpooling2D()])
    out = sequential(x)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, MaxUnpooling2D()(list(MaxPoolingWithSwitches2D(2)(x))))


def test_get_config_round_trip():
    layer = MaxPoolingWithSwitches2D((3, 2), strides=(2, 1), padding="same", name="p")
    clone = MaxPoolingWithSwitches2D.from_config(layer.get_config())
    assert (clone.pool_size, clone.strides, clone.padding, clone.name) == ((3, 2), (2, 1), "same", "p")
    assert isinstance(MaxUnpooling2D.from_config(MaxUnpooling2D(name="u").get_config()), MaxUnpooling2D)


def test_mixed_precision_pooling_keeps_dtype():
    x = np.random.default_rng(5).normal(size=(1, 6, 6, 2)).astype("float32")
    pooled, switches = MaxPoolingWithSwitches2D(2, dtype="mixed_float16")(x)
    assert pooled.dtype == tf.float16 and switches.dtype == tf.int32
    assert MaxUnpooling2D(dtype="mixed_float16")([pooled, switches]).shape == x.shape


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        MaxPoolingWithSwitches2D(2, padding="full")
    with pytest.raises(ValueError, match="pool_size must be a positive int"):
        MaxPoolingWithSwitches2D(0)
    pooled = np.zeros((1, 2, 2, 3), "float32")
    with pytest.raises(ValueError, match=r"takes \[pooled, switches\]"):
        MaxUnpooling2D()(pooled)
    with pytest.raises(ValueError, match="switches of shape"):
        MaxUnpooling2D()([pooled, np.zeros((1, 2, 2, 3), "int32")])
