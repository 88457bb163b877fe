"""Receptive fields computed analytically from a model's graph (nested models included).

Each layer from the input to the chosen one composes its window: jumps multiply by strides, the
size grows by (k_eff - 1) jump, "same" padding shifts the start by the top/left padding that
TensorFlow uses. Element-wise layers keep the field, merges of branches take the union.
"""

import dataclasses
import math

import keras

from keras_interp import graph
from keras_interp.compat import application_layer, ops_classes

__all__ = ["ReceptiveField", "receptive_field"]


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """The input region seen by the units of one feature map.

    Pixel-index convention: pixel (r, c) of the input has its centre at (r, c), so a 3x3 "valid"
    convolution's unit (0, 0) sees rows and columns 0..2 and has its centre at (1.0, 1.0).

    With dilation the field has holes (pixels the dilated kernel skips); `size` and `box` give
    its bounding box.

    Attributes:
        size: (rows, cols) of input pixels one unit sees.
        jump: (rows, cols) between the centres of neighbouring units, in input pixels.
        offset: (row, col) centre of unit (0, 0) in input pixels, floats (x.5 for even sizes);
            negative when the unit's field starts in the padding.
    """

    size: tuple
    jump: tuple
    offset: tuple

    def box(self, i, j):
        """(top, left, bottom, right) input box of unit (i, j); bottom/right exclusive.

        The box may extend past the image (negative top/left, bottom/right beyond the size):
        those pixels were padding. (i, j) are not checked against the feature map's size, and
        negative indices are not counted from the end; the units that a ZeroPadding2D layer
        adds see only padding, although their box may overlap the image.
        """
        i, j = int(i), int(j)  # so that round() of a Python float gives an int
        top = round(self.offset[0] + i * self.jump[0] - (self.size[0] - 1) / 2)
        left = round(self.offset[1] + j * self.jump[1] - (self.size[1] - 1) / 2)
        return top, left, top + self.size[0], left + self.size[1]


def _ops(module, *names):
    return ops_classes(module, *names)


def _layers(*names):
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


# Layers and operations that act on each position alone (or pass values through at inference).
_POINTWISE = _layers(
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Activation", "Rescaling", "Dropout", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity", "ActivityRegularization", "RandomFlip",
    "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
) + _ops("nn", "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "Silu", "Gelu", "Elu", "Selu", "LeakyRelu",
         "HardSigmoid", "HardSilu", "Tanh") + _ops(
    "numpy", "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Abs", "Absolute",
    "Square", "Sqrt", "Exp", "Log", "Tanh", "Negative", "Clip", "Power") + _ops("core", "Cast")
_LAYER_SCALE = application_layer("convnext", "LayerScale")  # ConvNeXt's per-channel scale
if _LAYER_SCALE is not None:
    _POINTWISE += (_LAYER_SCALE,)
# Per-channel along the last axis: pointwise when `axis` is the channel axis.
_CHANNEL_AXIS = _layers("BatchNormalization", "LayerNormalization", "Normalization", "Softmax", "Concatenate",
                        "UnitNormalization")
_MERGES = _layers("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")
_POOLS = _layers("MaxPooling2D", "AveragePooling2D")


def _last_axis(op):
    axis = getattr(op, "axis", -1)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return all(a in (-1, 3) for a in axes)


def _window(op):
    """(kernel, strides, dilation, padding) of a 2-D sliding window layer, or None."""
    from keras_interp.layers.switch_pooling import MaxPoolingWithSwitches2D

    if isinstance(op, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)) \
            and not isinstance(op, keras.layers.Conv2DTranspose):
        return op.kernel_size, op.strides, op.dilation_rate, op.padding
    if isinstance(op, _POOLS + (MaxPoolingWithSwitches2D,)):
        return op.pool_size, op.strides, (1, 1), op.padding
    return None


def _not_local(site, why):
    return ValueError(
        f"Layer {site.path!r} ({type(site.operation).__name__}) {why}, so the units after it have no "
        "local receptive field. Receptive fields are defined for layers reached from the input through "
        "Conv2D/DepthwiseConv2D/SeparableConv2D, pooling, ZeroPadding2D/Cropping2D and element-wise "
        "layers (BatchNormalization, activations, Rescaling, Normalization, Add/Concatenate...); "
        "choose a convolutional layer before it."
    )


def _same_padding_size(n, site):
    if None in n:
        raise ValueError(
            f"Layer {site.path!r} pads 'same' with a stride, so its receptive field depends on its input's "
            "height and width, which are not known. Build the model with a fixed input size, e.g. "
            "keras.Input((224, 224, 3))."
        )
    return n


def _out_size(n, k_eff, s, padding):
    if n is None:
        return None
    return math.ceil(n / s) if padding == "same" else (n - k_eff) // s + 1


def _step(field, site):
    """The field (top, size, jump, n) per axis after `site`, from the field(s) of its input(s);
    n is the feature map's spatial size (None where unknown), carried from the model's input so
    that a backbone built for any size works at the size the outer model gives it."""
    op = site.operation
    window = _window(op)
    if window is not None:
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"Layer {site.path!r} uses data_format={op.data_format!r}; receptive fields are "
                             "computed for channels_last models.")
        (top, size, jump, n), kernel, strides, dilation, padding = field, *window
        if padding == "same" and any(s > 1 for s in strides):
            n = _same_padding_size(n, site)
        out = []
        for axis in (0, 1):
            k_eff = dilation[axis] * (kernel[axis] - 1) + 1
            s = strides[axis]
            p_left = 0
            if padding == "same":  # TensorFlow's SAME: the extra pixel of an odd total goes after
                p_left = (k_eff - 1) // 2 if s == 1 else max((math.ceil(n[axis] / s) - 1) * s + k_eff - n[axis], 0) // 2
            out.append((top[axis] - p_left * jump[axis], size[axis] + (k_eff - 1) * jump[axis], jump[axis] * s,
                        _out_size(n[axis], k_eff, s, padding)))
        return tuple(zip(*out))
    if isinstance(op, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
        if op.data_format != "channels_last":
            raise ValueError(f"Layer {site.path!r} uses data_format={op.data_format!r}; receptive fields are "
                             "computed for channels_last models.")
        top, size, jump, n = field
        sign = -1 if isinstance(op, keras.layers.ZeroPadding2D) else 1
        amounts = op.padding if sign < 0 else op.cropping
        n = tuple(None if n[a] is None else n[a] - sign * (amounts[a][0] + amounts[a][1]) for a in (0, 1))
        return tuple(top[a] + sign * amounts[a][0] * jump[a] for a in (0, 1)), size, jump, n
    if isinstance(op, _CHANNEL_AXIS) and not _last_axis(op):
        raise _not_local(site, f"works along axis {op.axis}, which mixes positions")
    if isinstance(op, _POINTWISE + _CHANNEL_AXIS + _MERGES) or (isinstance(op, keras.layers.Dense) and len(site.shape) == 4):
        return field
    if isinstance(op, (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dense)):
        raise _not_local(site, "mixes all positions of its input")
    if "Global" in type(op).__name__:
        raise _not_local(site, "pools over the whole feature map")
    if "Attention" in type(op).__name__:
        raise _not_local(site, "attends over all positions")
    raise ValueError(
        f"Layer {site.path!r} ({type(op).__name__}) is not a layer whose spatial window keras_interp knows, so it "
        "cannot compute the receptive field through it. Known: Conv2D/DepthwiseConv2D/SeparableConv2D, pooling, "
        "ZeroPadding2D/Cropping2D and element-wise layers; choose a layer before it."
    )


def _union(fields, site):
    """The field of a merge: the union of its branches' fields, which must share their jump."""
    jumps = {f[2] for f in fields}
    if len(jumps) > 1:
        raise ValueError(f"The branches merged by {site.path!r} have different jumps {sorted(jumps)} in input "
                         "pixels; their units do not line up, so the merge has no single receptive field.")
    top = tuple(min(f[0][a] for f in fields) for a in (0, 1))
    bottom = tuple(max(f[0][a] + f[1][a] for f in fields) for a in (0, 1))
    n = next((f[3] for f in fields if None not in f[3]), fields[0][3])
    return top, tuple(b - t for b, t in zip(bottom, top)), fields[0][2], n


def _field_of(site, memo, start):
    """(top, size, jump, n) per axis of `site`'s units; `start` is the model input's field."""
    if site is None:
        return start
    key = (tuple(map(id, site.nodes)), site.index)
    if key not in memo:
        count = len(site.nodes[-1].input_tensors)
        inputs = [_field_of(graph.Cursor.input_of(site, p).producer(), memo, start) for p in range(count)]
        if not inputs:
            raise _not_local(site, "takes no tensor input")
        if len(inputs) > 1 and not isinstance(site.operation, _MERGES + _POINTWISE):
            raise _not_local(site, f"combines {len(inputs)} inputs in a way keras_interp does not know")
        memo[key] = _step(_union(inputs, site) if len(inputs) > 1 else inputs[0], site)
    return memo[key]


def receptive_field(model, layer):
    """The receptive field of the units of `layer`, computed analytically from the graph.

    Jumps multiply by each stride; a window of effective size k_eff = dilation (k - 1) + 1 grows
    the field by (k_eff - 1) jump; "same" padding shifts it by the left/top padding TensorFlow
    uses, floor(pad_total / 2) with pad_total = max((ceil(n / s) - 1) s + k_eff - n, 0), so the
    static input sizes must be known. Element-wise layers keep the field; merges of branches
    (Add, Concatenate...) take the union of the branches' fields. Nested models are entered.

    Args:
        model: a functional or Sequential Keras model.
        layer: a layer name or "nested/path" with a (batch, h, w, channels) output.

    Returns:
        A `ReceptiveField` (size, jump, offset and box(i, j)); see its docstring for the pixel
        convention.

    Raises:
        ValueError: for an unknown layer name, a layer whose output is not a spatial map, or a
            path that passes a non-local layer (Dense, Flatten, global pooling, attention...).

    Example:
        >>> rf = ki.receptive_field(ki.reference_cnn(), "relu2_2")
        >>> rf.size, rf.jump, rf.offset       # ((14, 14), (2, 2), (0.5, 0.5))
        >>> rf.box(0, 0)                      # (-6, -6, 8, 8): starts in the padding
    """
    site = graph.find_site(model, layer) if isinstance(layer, str) else layer
    if len(site.shape) != 4:
        raise ValueError(f"Layer {site.path!r} has output shape {site.shape}; receptive fields are defined for "
                         "spatial feature maps of shape (batch, height, width, channels).")
    # Start at the producer of the site's tensor: a nested model's output is its inner layer's.
    first = graph.Cursor(site.nodes[:-1], site.tensor).producer()
    inputs = getattr(model, "inputs", None) or []
    n = tuple(tuple(inputs[0].shape)[1:3]) if inputs and len(inputs[0].shape) == 4 else (None, None)
    top, size, jump, _ = _field_of(first, {}, ((0, 0), (1, 1), (1, 1), n))
    offset = tuple(float(t + (s - 1) / 2) for t, s in zip(top, size))
    return ReceptiveField(tuple(int(s) for s in size), tuple(int(j) for j in jump), offset)
