"""A convolution layer written out as the dense matrix it multiplies its input by."""

import math

import numpy as np

__all__ = ["conv_matrix"]


def _out_size_and_left_pad(size, kernel, stride, dilation, padding):
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (size - span) // stride + 1, 0
    if padding == "causal":
        return (size - 1) // stride + 1, span - 1
    # Keras (and TF's "SAME") puts the odd leftover pixel of the padding on the far side.
    out = math.ceil(size / stride)
    return out, max((out - 1) * stride + span - size, 0) // 2


def conv_matrix(layer, input_shape):
    """The dense matrix of a `Conv1D` / `Conv2D` layer, bias and activation excluded.

    A convolution is linear in its input, so for one example `x` of shape `input_shape` there
    is a matrix `W` with `conv(x).ravel() == W @ x.ravel()`, where `conv` is the layer's
    convolution before its bias and activation are applied. `W` is computed from the layer's
    kernel, strides, padding ("valid", "same", and "causal" for `Conv1D`), dilation and
    groups; the layer is not called. Both sides are raveled in row-major (channels-last)
    order, so row `(i * W_out + j) * filters + f` is output pixel `(i, j)`, filter `f`.
    `W.T` is the matrix of the matching transposed convolution (`Conv1DTranspose` /
    `Conv2DTranspose` with the same kernel, strides and padding, and an `output_padding`
    that gives back `input_shape`).

    Args:
        layer: a `keras.layers.Conv1D` or `keras.layers.Conv2D` with
            `data_format="channels_last"`. An unbuilt layer is built for `input_shape`; a
            built one is left unchanged.
        input_shape: shape of one input without the batch axis: `(length, channels)` for
            `Conv1D`, `(height, width, channels)` for `Conv2D`.

    Returns:
        float32 array of shape `(prod(output_shape), prod(input_shape))`, where
        `output_shape` is `(L_out, filters)` or `(H_out, W_out, filters)`. The bias is not
        included and neither is a fused activation: for a layer with `activation="relu"`,
        `W @ x.ravel()` is the pre-activation minus the bias. W is dense, with
        `prod(output_shape) * prod(input_shape)` entries (512 MiB for a 3x3 "same" conv from
        8 to 16 channels on 32x32 inputs), so it suits small layers.

    Example:
        >>> layer = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
        >>> W = ki.conv_matrix(layer, (9, 9, 3))                     # (5 * 5 * 4, 9 * 9 * 3)
        >>> x = np.random.rand(9, 9, 3).astype("float32")
        >>> np.allclose(layer(x[None])[0].numpy().ravel(), W @ x.ravel(), atol=1e-5)
        True
    """
    import keras  # deferred so that importing keras_interp stays cheap

    # Transposed, depthwise and separable convolutions are separate classes in Keras 3, so
    # this check turns them away too.
    if not isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        raise ValueError(
            f"conv_matrix expects a keras.layers.Conv1D or keras.layers.Conv2D layer; received "
            f"a {type(layer).__name__}."
        )
    if layer.data_format != "channels_last":
        raise ValueError(
            f"conv_matrix expects data_format='channels_last'; layer {layer.name!r} has "
            f"data_format={layer.data_format!r}."
        )
    rank = len(layer.kernel_size)
    expected = "(length, channels)" if rank == 1 else "(height, width, channels)"
    shape = tuple(input_shape)
    if len(shape) != rank + 1 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ValueError(
            f"input_shape for {type(layer).__name__} must be {rank + 1} positive ints "
            f"{expected}, without the batch axis; received {input_shape!r}."
        )
    shape = tuple(int(n) for n in shape)
    channels, groups = shape[-1], layer.groups
    if channels % groups:
        raise ValueError(
            f"input channels ({channels}) must be divisible by the layer's groups ({groups}); "
            f"received input_shape={input_shape!r}."
        )
    if layer.built and layer.kernel.shape[-2] * groups != channels:
        raise ValueError(
            f"layer {layer.name!r} was built for {layer.kernel.shape[-2] * groups} input "
            f"channels; received input_shape={input_shape!r} with {channels}."
        )

    sizes = []
    selections = []  # per axis: sel[k, o, i] = 1 where kernel tap k of output o reads input i
    for axis, (n, k, s, d) in enumerate(zip(shape[:-1], layer.kernel_size, layer.strides, layer.dilation_rate)):
        out, left = _out_size_and_left_pad(n, k, s, d, layer.padding)
        if out < 1:
            raise ValueError(
                f"input_shape {shape} is too small for padding='valid' along spatial axis {axis}: "
                f"size {n} < dilated kernel size {(k - 1) * d + 1} (kernel {k}, dilation {d})."
            )
        reads = np.arange(out)[None, :] * s + np.arange(k)[:, None] * d - left  # (k, out)
        # Reads that land in the zero padding (outside [0, n)) match no column and drop out.
        selections.append((reads[:, :, None] == np.arange(n)).astype(np.float32))
        sizes.append(out)

    if not layer.built:
        # Built only after every check has passed, so a bad input_shape leaves the layer as it was.
        layer.build((None,) + shape)
    # Every entry of W is a single kernel weight (1 * w plus zeros), so float32 is exact and
    # halves the memory of what can be a large matrix.
    kernel = np.asarray(layer.kernel, np.float32)
    filters = kernel.shape[-1]
    # A grouped kernel only holds (C / groups) input channels per filter; spread it into the
    # dense block-diagonal (C, filters) kernel so the algebra below needs no group logic.
    dense = np.zeros(kernel.shape[:-2] + (channels, filters), np.float32)
    cin, cout = channels // groups, filters // groups
    for g in range(groups):
        dense[..., g * cin:(g + 1) * cin, g * cout:(g + 1) * cout] = kernel[..., g * cout:(g + 1) * cout]

    # W[o..., f, i..., c] = sum over taps k... of prod_axis sel[k, o, i] * dense[k..., c, f].
    taps, outs, ins = "kl"[:rank], "op"[:rank], "ij"[:rank]
    spec = ",".join(t + o + i for t, o, i in zip(taps, outs, ins)) + f",{taps}cf->{outs}f{ins}c"
    w = np.einsum(spec, *selections, dense, optimize=True)
    return w.reshape(math.prod(sizes) * filters, math.prod(shape))
