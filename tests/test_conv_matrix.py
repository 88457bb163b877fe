import os
import runpy

import keras
import numpy as np
import pytest

import keras_interp as ki

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "conv_as_matrix.py")


def _conv(rank, filters, kernel_size, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    cls = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    # A non-zero bias makes sure W really leaves it out.
    return cls(filters, kernel_size, bias_initializer="random_normal", **kwargs)


def _check_against_layer(layer, input_shape, seed=0):
    """W @ x must equal the layer's own output minus its bias, for random x."""
    w = ki.conv_matrix(layer, input_shape)
    x = np.random.default_rng(seed).normal(size=(3,) + tuple(input_shape)).astype("float32")
    out = np.asarray(layer(x))
    out = out - np.asarray(layer.bias)
    assert w.dtype == np.float32 and w.shape == (out[0].size, x[0].size)
    np.testing.assert_allclose(np.einsum("oi,bi->bo", w, x.reshape(3, -1)), out.reshape(3, -1), atol=1e-5)
    return w


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("strides", [1, 2, 3])
def test_conv1d_matrix_matches_the_layer(padding, strides):
    for kernel_size in (1, 2, 3, 4):
        for length in (7, 8):
            layer = _conv(1, 3, kernel_size, strides=strides, padding=padding)
            _check_against_layer(layer, (length, 2))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2, 3, (1, 2)])
def test_conv2d_matrix_matches_the_layer(padding, strides):
    for kernel_size in (1, 2, 3, 4, (2, 3)):
        layer = _conv(2, 3, kernel_size, strides=strides, padding=padding)
        _check_against_layer(layer, (7, 5, 2))


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_conv1d_dilation(padding):
    _check_against_layer(_conv(1, 2, 3, dilation_rate=2, padding=padding), (9, 3))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("dilation_rate", [2, (2, 1)])
def test_conv2d_dilation(padding, dilation_rate):
    _check_against_layer(_conv(2, 2, (3, 2), dilation_rate=dilation_rate, padding=padding), (7, 6, 3))


def test_groups():
    _check_against_layer(_conv(1, 6, 3, groups=3, padding="same"), (7, 3))
    _check_against_layer(_conv(2, 4, 3, groups=2, strides=2), (7, 7, 4))


def test_activation_is_left_out():
    layer = _conv(2, 3, 3, activation="relu")
    w = ki.conv_matrix(layer, (6, 5, 2))
    x = np.random.default_rng(1).normal(size=(6, 5, 2)).astype("float32")
    expected = np.maximum(w @ x.ravel() + np.tile(np.asarray(layer.bias), 4 * 3), 0)
    np.testing.assert_allclose(np.asarray(layer(x[None]))[0].ravel(), expected, atol=1e-5)


def test_builds_an_unbuilt_layer_and_leaves_a_built_one_alone():
    layer = _conv(2, 3, 3)
    w = ki.conv_matrix(layer, (5, 6, 2))
    assert layer.built and tuple(layer.kernel.shape) == (3, 3, 2, 3) and w.shape == (3 * 4 * 3, 5 * 6 * 2)

    model = keras.Sequential([keras.Input((8, 8, 2)), _conv(2, 3, 3, padding="same")])
    built = model.layers[0]
    before = [v.copy() for v in built.get_weights()]
    nodes = len(built._inbound_nodes)
    ki.conv_matrix(built, (8, 8, 2))
    ki.conv_matrix(built, (5, 9, 2))  # another spatial size is fine: only the channels are fixed
    assert len(built._inbound_nodes) == nodes  # no symbolic call joined it to another graph
    for old, new in zip(before, built.get_weights()):
        np.testing.assert_array_equal(old, new)
    _check_against_layer(built, (5, 9, 2))


def _transpose_output_padding(input_shape, output_shape, layer):
    """output_padding that makes Conv*Transpose(layer's kernel) return `input_shape` again."""
    pads, defaults = [], []
    for n, m, k, s, d in zip(input_shape, output_shape, layer.kernel_size, layer.strides, layer.dilation_rate):
        span = (k - 1) * d + 1
        # Keras' transposed output size is (m-1)*s + span + op ("valid") or (m-1)*s + span%2 + op
        # ("same"), and m*s / (m-1)*s + max(span, s) when output_padding is None.
        pads.append(n - (m - 1) * s - (span if layer.padding == "valid" else span % 2))
        defaults.append(m * s if layer.padding == "same" else (m - 1) * s + max(span, s))
    if all(0 <= p < s for p, s in zip(pads, layer.strides)):
        return tuple(pads)
    assert list(defaults) == list(input_shape), "no output_padding reproduces the input size"
    return None


@pytest.mark.parametrize(
    "rank, kernel_size, strides, padding, dilation_rate, input_shape",
    [
        (1, 4, 2, "valid", 1, (8, 1)),
        (1, 3, 2, "valid", 1, (9, 2)),
        (1, 4, 3, "valid", 1, (11, 2)),
        (1, 3, 2, "same", 1, (7, 2)),
        (1, 4, 3, "same", 1, (8, 3)),
        (1, 2, 1, "same", 1, (5, 2)),
        (1, 3, 1, "valid", 2, (9, 2)),
        (2, 3, 2, "valid", 1, (7, 6, 2)),
        (2, (2, 3), (2, 1), "same", 1, (5, 7, 2)),
        (2, 3, 3, "same", 1, (7, 8, 1)),
        (2, 4, 2, "valid", 1, (9, 8, 2)),
        (2, 3, 1, "same", 2, (6, 5, 2)),
    ],
)
def test_transpose_of_the_matrix_is_the_transposed_conv(rank, kernel_size, strides, padding, dilation_rate,
                                                         input_shape):
    conv = _conv(rank, 3, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate)
    w = ki.conv_matrix(conv, input_shape)
    output_shape = conv.compute_output_shape((None,) + input_shape)[1:]
    cls = keras.layers.Conv1DTranspose if rank == 1 else keras.layers.Conv2DTranspose
    transpose = cls(input_shape[-1], kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                    use_bias=False,
                    output_padding=_transpose_output_padding(input_shape[:-1], output_shape[:-1], conv))
    transpose.build((None,) + output_shape)
    transpose.set_weights([np.asarray(conv.kernel)])  # same (k..., in, filters) layout
    y = np.random.default_rng(2).normal(size=(1,) + output_shape).astype("float32")
    out = np.asarray(transpose(y))[0]
    assert out.shape == input_shape
    np.testing.assert_allclose(out.ravel(), w.T @ y.ravel(), atol=1e-5)


def test_lecture_case():
    layer = keras.layers.Conv1D(1, 4, strides=2, use_bias=False)
    layer.build((None, 8, 1))
    layer.set_weights([np.array([1, 2, 3, 4], "float32").reshape(4, 1, 1)])
    expected = np.array(
        [
            [1, 2, 3, 4, 0, 0, 0, 0],
            [0, 0, 1, 2, 3, 4, 0, 0],
            [0, 0, 0, 0, 1, 2, 3, 4],
        ],
        "float32",
    )
    np.testing.assert_array_equal(ki.conv_matrix(layer, (8, 1)), expected)


def test_example_runs(capsys):
    runpy.run_path(EXAMPLE, run_name="example")["main"]()
    printed = capsys.readouterr().out
    assert "[    1     2    13    24   130   240   300   400]" in printed
    assert printed.rstrip().endswith("All views agree.")


@pytest.mark.parametrize(
    "layer, name",
    [
        (keras.layers.Conv1DTranspose(2, 3), "Conv1DTranspose"),
        (keras.layers.Conv2DTranspose(2, 3), "Conv2DTranspose"),
        (keras.layers.DepthwiseConv2D(3), "DepthwiseConv2D"),
        (keras.layers.Conv3D(2, 3), "Conv3D"),
        (keras.layers.Dense(2), "Dense"),
    ],
)
def test_rejects_other_layers(layer, name):
    with pytest.raises(ValueError, match=f"Conv1D or keras.layers.Conv2D layer; received a {name}"):
        ki.conv_matrix(layer, (6, 6, 2))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels_last"):
        ki.conv_matrix(keras.layers.Conv2D(2, 3, data_format="channels_first"), (2, 6, 6))
    with pytest.raises(ValueError, match=r"2 positive ints \(length, channels\).*received \(6, 6, 2\)"):
        ki.conv_matrix(keras.layers.Conv1D(2, 3), (6, 6, 2))
    with pytest.raises(ValueError, match=r"3 positive ints \(height, width, channels\).*received \(6, 2\)"):
        ki.conv_matrix(keras.layers.Conv2D(2, 3), (6, 2))
    with pytest.raises(ValueError, match="received \\(None, 6, 2\\)"):
        ki.conv_matrix(keras.layers.Conv2D(2, 3), (None, 6, 2))
    built = keras.layers.Conv2D(2, 3)
    built.build((None, 6, 6, 2))
    with pytest.raises(ValueError, match=r"built for 2 input channels; received input_shape=\(6, 6, 3\) with 3"):
        ki.conv_matrix(built, (6, 6, 3))
    with pytest.raises(ValueError, match=r"divisible by the layer's groups \(2\)"):
        ki.conv_matrix(keras.layers.Conv2D(2, 3, groups=2), (6, 6, 3))
    unbuilt = keras.layers.Conv2D(2, 3, dilation_rate=2)
    with pytest.raises(ValueError, match=r"too small for padding='valid' along spatial axis 1: size 4 < dilated "
                                         r"kernel size 5"):
        ki.conv_matrix(unbuilt, (6, 4, 1))
    assert not unbuilt.built
    ki.conv_matrix(keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same"), (6, 4, 1))  # same pads: fine
