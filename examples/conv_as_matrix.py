"""A convolution is a matrix W; the transposed convolution is W.T.

    python examples/conv_as_matrix.py

The 1-D case of the lecture: an input of length 4, zero-padded by 2 on each side (length 8),
one channel, a filter of size 4 and stride 2. The script prints W, checks that Conv1D computes
W @ x and that Conv1DTranspose with the same filter computes W.T @ y, and works the transposed
convolution out by hand in two ways:

  (a) insert stride - 1 zeros between the inputs, pad by kernel_size - 1 on both sides and
      slide the FLIPPED filter with stride 1;
  (b) let every input y_i drop a copy of the filter, scaled by y_i, at position i * stride,
      and add the copies up.

Every result is checked with np.testing.assert_allclose, so the script fails loudly if any
of the views disagree.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402

LENGTH, PAD, STRIDE = 4, 2, 2
FILTER = np.array([1.0, 2.0, 3.0, 4.0])


def _fmt(vector):
    return "[" + " ".join(f"{v:5g}" for v in vector) + "]"


def _print_matrix(matrix, indent="    "):
    for row in matrix:
        print(indent + _fmt(row))


def main():
    kernel = FILTER.reshape(-1, 1, 1).astype("float32")  # (kernel_size, in_channels, filters)
    size = len(FILTER)
    padded = LENGTH + 2 * PAD

    conv = keras.layers.Conv1D(1, size, strides=STRIDE, padding="valid", use_bias=False)
    conv.build((None, padded, 1))
    conv.set_weights([kernel])
    W = ki.conv_matrix(conv, (padded, 1))
    print(f"Conv1D: filter {_fmt(FILTER)}, stride {STRIDE}, on an input of length {LENGTH} zero-padded "
          f"by {PAD} on each side ({padded} values).")
    print(f"W = ki.conv_matrix(conv, ({padded}, 1)) has shape {W.shape}: each row is the filter, "
          f"shifted by the stride.")
    _print_matrix(W)

    x = np.array([1.0, -1.0, 2.0, 3.0], "float32")
    x_padded = np.pad(x, PAD)
    padded_conv = keras.Sequential([keras.layers.ZeroPadding1D(PAD), conv])
    out = np.asarray(padded_conv(x.reshape(1, LENGTH, 1))).ravel()
    print(f"\nx              = {_fmt(x)}")
    print(f"padded x       = {_fmt(x_padded)}")
    print(f"Conv1D(x)      = {_fmt(out)}   (ZeroPadding1D({PAD}) then Conv1D)")
    print(f"W @ padded x   = {_fmt(W @ x_padded)}")
    np.testing.assert_allclose(out, W @ x_padded, atol=1e-5)
    # Padding is linear too: it selects the middle columns, so pad-then-conv is W[:, PAD:-PAD].
    W_x = W[:, PAD:-PAD]
    print(f"W[:, {PAD}:-{PAD}] @ x = {_fmt(W_x @ x)}   (padded entries are zeros, so their columns "
          "can go)")
    np.testing.assert_allclose(out, W_x @ x, atol=1e-5)

    y = np.array([1.0, 10.0, 100.0], "float32")  # powers of ten keep each input's share visible
    transpose = keras.layers.Conv1DTranspose(1, size, strides=STRIDE, padding="valid", use_bias=False)
    transpose.build((None, len(y), 1))
    transpose.set_weights([kernel])  # same (kernel_size, 1, 1) array
    up = np.asarray(transpose(y.reshape(1, -1, 1))).ravel()
    print(f"\nConv1DTranspose with the same filter and stride maps y of length {len(y)} back to "
          f"length {len(up)}:")
    print(f"y                  = {_fmt(y)}")
    print(f"Conv1DTranspose(y) = {_fmt(up)}")
    print(f"W.T @ y            = {_fmt(W.T @ y)}")
    np.testing.assert_allclose(up, W.T @ y, atol=1e-4)

    # (a) Fractionally strided: zeros between the inputs, full padding, flipped filter, stride 1.
    dilated = np.zeros((len(y) - 1) * STRIDE + 1)
    dilated[::STRIDE] = y
    full = np.pad(dilated, size - 1)
    flipped = FILTER[::-1]
    by_flip = np.array([full[i:i + size] @ flipped for i in range(len(full) - size + 1)])
    print("\n(a) insert stride - 1 zeros between the y's, pad by kernel_size - 1, slide the flipped "
          "filter with stride 1:")
    print(f"    zeros inserted and padded = {_fmt(full)}")
    print(f"    flipped filter            = {_fmt(flipped)}")
    print(f"    result                    = {_fmt(by_flip)}")
    np.testing.assert_allclose(by_flip, W.T @ y, atol=1e-4)

    # (b) Scatter-add: W.T @ y = sum_i y_i * W[i], and row W[i] is the filter shifted to i * stride.
    by_scatter = np.zeros(padded)
    print("\n(b) each y_i drops y_i * filter at position i * stride; the copies add up:")
    for i, value in enumerate(y):
        copy = np.zeros(padded)
        copy[i * STRIDE:i * STRIDE + size] = value * FILTER
        by_scatter += copy
        print(f"    y_{i} * filter at {i * STRIDE}         = {_fmt(copy)}")
    print(f"    sum                       = {_fmt(by_scatter)}")
    np.testing.assert_allclose(by_scatter, W.T @ y, atol=1e-4)

    # The transpose of pad-then-conv is conv-transpose-then-crop (PyTorch's ConvTranspose1d(padding=2)).
    cropped = keras.Sequential([transpose, keras.layers.Cropping1D(PAD)])
    back = np.asarray(cropped(y.reshape(1, -1, 1))).ravel()
    print(f"\nWith the input padding folded in, the matrix is W[:, {PAD}:-{PAD}] ({W_x.shape[0]}x{W_x.shape[1]}) "
          f"and its transpose is the transposed convolution cropped by {PAD}:")
    for label, value in ((f"Cropping1D({PAD})(Conv1DTranspose(y))", back), (f"W[:, {PAD}:-{PAD}].T @ y", W_x.T @ y)):
        print(f"{label:33s} = {_fmt(value)}")
    np.testing.assert_allclose(back, W_x.T @ y, atol=1e-4)
    print("\nAll views agree.")


if __name__ == "__main__":
    main()
