"""Reading and running a Keras functional graph, nested models included.

Keras 3 graphs hold layers and also bare operations (`a + b`, `keras.ops.softmax(t)`), which are
in `model.operations` but not in `model.layers`. Everything here works on nodes, so operations
count as much as layers, and a layer called twice is two different places.

A `Site` is one tensor of the graph: the chain of nodes that produces it, outermost first (a
node inside a nested model is reached through the node that calls that model). `run` executes
the graph on real tensors, like `Functional.call` with `training=False`, and also returns the
values of the requested sites; it can replace a node's computation (to drop a final softmax).
It builds no new Keras model and calls layers only on real tensors, so the user's layers gain no
inbound nodes and no state.

Paths address sites by name with "/" for nesting: "backbone/conv5_block3_out".
"""

import difflib

import keras
import numpy as np
from keras import tree

from keras_interp.compat import ops_classes

__all__ = ["Site", "graph_of", "run", "find_site", "last_spatial_site", "spatial_layers", "spatial_rank",
           "all_paths", "Cursor", "is_spatial_shape", "no_graph_error", "depends_on_input", "FORMS",
           "frame_breaks", "out_of_frame", "operations_on_path", "call_operation"]

# What a batch of each rank is, for error messages.
FORMS = {
    2: "(batch, features)",
    3: "(batch, length, channels)",
    4: "(batch, height, width, channels)",
    5: "(batch, depth, height, width, channels)",
}


def graph_of(model):
    """The functional graph that computes `model` (Sequential's inner one), or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if getattr(model, "_nodes_by_depth", None) is not None and getattr(model, "outputs", None):
        return model
    return None


def _nested_graph(node):
    """The graph of a nested functional model called at `node` (with its inputs as the call's
    one argument: a tensor, or a list or dict of them), or None."""
    op = node.operation
    if not isinstance(op, keras.Model):
        return None
    graph = graph_of(op)
    if graph is None or len(node.input_tensors) != len(graph.inputs) or len(node.arguments.args) != 1:
        return None
    return graph


def _nodes(graph, from_output=False):
    """The graph's computing nodes, from the inputs to the outputs (or nearest the output first)."""
    by_depth = graph._nodes_by_depth
    depths = sorted(by_depth, reverse=not from_output)
    return [n for d in depths for n in by_depth[d] if n.operation and not n.is_input]


def is_spatial_shape(shape, rank=4):
    """A (batch, *spatial, c) shape of `rank` dimensions whose map has more than one cell
    (unknown sizes count as large): rank 3 for 1-D signals, 4 for images, 5 for volumes."""
    if shape is None or len(shape) != rank or rank < 3:
        return False
    return not all(d == 1 for d in shape[1:-1])


class Site:
    """One tensor of a model's graph: `nodes` outermost first, output `index` of the last node."""

    __slots__ = ("nodes", "index", "path")

    def __init__(self, nodes, index=0):
        self.nodes = tuple(nodes)
        self.index = index
        self.path = "/".join(n.operation.name for n in self.nodes)

    @property
    def tensor(self):
        return tree.flatten(self.nodes[-1].outputs)[self.index]

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def operation(self):
        return self.nodes[-1].operation

    def inner(self):
        return Site(self.nodes[1:], self.index)

    def __repr__(self):
        return f"Site({self.path!r}, shape={self.shape})"


def call_operation(operation, args, kwargs):
    """operation(*args, **kwargs) in inference mode, as `run` calls every node."""
    return _call(operation, args, kwargs)


def _call(operation, args, kwargs):
    # Inference mode for every layer that takes `training` (Dropout off, BatchNorm moving stats).
    context = getattr(operation, "_call_context_args", None)
    if (context is not None and "training" in context) or getattr(operation, "_call_has_training_arg", False):
        kwargs = dict(kwargs, training=False)
    return operation(*args, **kwargs)


def run(model, inputs, taps=(), replace=None, stop_after_taps=False):
    """Execute `model`'s graph on `inputs` in inference mode.

    Args:
        model: a functional or Sequential model (see graph_of).
        inputs: the value of the model's single input.
        taps: Sites whose values to return.
        replace: {tuple of nodes: fn(*args, **kwargs)} computing those nodes instead.
        stop_after_taps: return as soon as every tap has its value (the output is then None):
            the layers above are not run, so inputs of any size work for a fully
            convolutional part of a model whose head needs a fixed size.

    Returns:
        (the model's output value, [value of each tap]).
    """
    graph = graph_of(model)
    if graph is None:
        raise ValueError(f"Model {model.name!r} has no functional graph to run.")
    replace = replace or {}
    # Several inputs come as a list or tuple in graph.inputs order.
    values = {id(t): v for t, v in zip(graph.inputs, inputs if len(graph.inputs) > 1 else [inputs])}
    found = [None] * len(taps)
    for node in _nodes(graph):
        if any(id(t) not in values for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(values)
        inner_taps = [(i, s.inner()) for i, s in enumerate(taps) if len(s.nodes) > 1 and s.nodes[0] is node]
        inner_replace = {k[1:]: f for k, f in replace.items() if len(k) > 1 and k[0] is node}
        if (node,) in replace:
            outputs = replace[(node,)](*args, **kwargs)
        elif inner_taps or inner_replace:
            # The nested model may stop early only if nothing outside it is still wanted.
            only_inner = {i for i, _ in inner_taps} >= {i for i, v in enumerate(found) if v is None}
            inner_inputs = args[0] if len(node.input_tensors) == 1 else tree.flatten(args[0])
            outputs, inner_values = run(node.operation, inner_inputs, [s for _, s in inner_taps], inner_replace,
                                        stop_after_taps and only_inner)
            for (i, _), value in zip(inner_taps, inner_values):
                found[i] = value
        else:
            outputs = _call(node.operation, args, kwargs)
        flat = tree.flatten(outputs)
        for tensor, value in zip(tree.flatten(node.outputs), flat):
            values[id(tensor)] = value
        for i, site in enumerate(taps):
            if len(site.nodes) == 1 and site.nodes[0] is node:
                found[i] = flat[site.index]
        if stop_after_taps and taps and all(v is not None for v in found):
            return None, found
    outputs = [values[id(t)] for t in graph.outputs]
    return (outputs[0] if len(outputs) == 1 else outputs), found


class Cursor:
    """A tensor reached by walking a graph backwards, and the chain of nested-model nodes above it."""

    def __init__(self, chain, tensor):
        self.chain, self.tensor = tuple(chain), tensor

    @classmethod
    def at_output(cls, model, index=0):
        graph = graph_of(model)
        return None if graph is None else cls((), graph.outputs[index])

    def producer(self):
        """The Site producing this tensor, entering nested models (their output's producer).

        Returns None when the tensor is the top-level model's input.
        """
        chain, tensor = self.chain, self.tensor
        while True:
            operation, node_index, tensor_index = tensor._keras_history
            node = operation._inbound_nodes[node_index]
            if node.is_input:
                if not chain:
                    return None
                # The input of a nested model: continue with what the calling node received there.
                inner = graph_of(chain[-1].operation)
                position = next(i for i, t in enumerate(inner.inputs) if t is tensor)
                chain, tensor = chain[:-1], chain[-1].input_tensors[position]
                continue
            graph = _nested_graph(node)
            if graph is not None:  # the nested model's output that this tensor is
                chain, tensor = chain + (node,), graph.outputs[tensor_index]
                continue
            return Site(chain + (node,), tensor_index)

    @staticmethod
    def input_of(site, position=0):
        """A cursor at the `position`-th input tensor of the site's node."""
        return Cursor(site.nodes[:-1], site.nodes[-1].input_tensors[position])


def _sites(graph, chain=()):
    """Every site of the graph, nested models expanded, from the inputs to the outputs."""
    for node in _nodes(graph):
        inner = _nested_graph(node)
        if inner is not None:
            yield from _sites(inner, chain + (node,))
        else:
            for index, _ in enumerate(tree.flatten(node.outputs)):
                yield Site(chain + (node,), index)


def all_paths(model):
    graph = graph_of(model)
    if graph is None:
        return []
    seen, paths = set(), []
    for site in _sites(graph):
        if site.path not in seen:
            seen.add(site.path)
            paths.append(site.path)
    return paths


def _spatial(site, rank=4):
    tensor = site.tensor
    return is_spatial_shape(tuple(tensor.shape), rank) and "float" in str(tensor.dtype)


def spatial_rank(model):
    """The rank of the model's spatial tensors: that of its first input with a spatial axis
    (3 for signals (B, L, C), 4 for images, 5 for volumes), 4 when no input says."""
    for tensor in getattr(model, "inputs", None) or ():
        if len(tensor.shape) in (3, 4, 5):
            return len(tensor.shape)
    return 4


def spatial_layers(model, rank=None, in_frame=False):
    """Paths of all sites with a spatial output of more than one cell, input to output.

    `rank` is the tensors' rank (see spatial_rank, the default); `in_frame=True` keeps only
    those in the input's spatial frame (see frame_breaks), where maps can be drawn."""
    graph = graph_of(model)
    if graph is None:
        return []
    rank = spatial_rank(model) if rank is None else rank
    broken = _breaks(graph, rank, {}) if in_frame else {}
    return list(dict.fromkeys(s.path for s in _sites(graph) if _spatial(s, rank) and id(s.tensor) not in broken))


def no_graph_error(model, what):
    return ValueError(
        f"Model {model.name!r} is a subclassed keras.Model: it has no functional graph, so {what} "
        "cannot be found in it. Build the model with the functional API or keras.Sequential (a "
        "subclassed model can often be wrapped: `inputs = keras.Input(shape); "
        "keras.Model(inputs, backbone(inputs))` with a functional backbone), or use an explainer "
        "that needs no inner layer (Saliency, SmoothGrad, IntegratedGradients, Occlusion)."
    )


def _ancestor_nodes(wanted):
    """{id: node} of the nodes the tensors `wanted` depend on (the path to those outputs)."""
    keep, stack = {}, list(wanted)
    while stack:
        operation, node_index, _ = stack.pop()._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) in keep:
            continue
        keep[id(node)] = node
        stack.extend(node.input_tensors)
    return keep


def _ancestors(graph, wanted):
    """Ids of the nodes of `graph` that the tensors `wanted` depend on."""
    return set(_ancestor_nodes(wanted))


def operations_on_path(model, output):
    """Names of the model's top-level layers and operations on the path to output number
    `output` (a nested model counts as one)."""
    return {node.operation.name for node in _ancestor_nodes([graph_of(model).outputs[output]]).values()}


def _dependent(graph, tensors):
    """Ids of the tensors of `graph` (nested graphs included) that depend on `tensors`."""
    found = {id(t) for t in tensors}
    for node in _nodes(graph):
        inputs = node.input_tensors
        if not any(id(t) in found for t in inputs):
            continue
        inner = _nested_graph(node)
        outs = tree.flatten(node.outputs)
        if inner is None:
            found.update(id(t) for t in outs)
            continue
        inner_found = _dependent(inner, [i for i, t in zip(inner.inputs, inputs) if id(t) in found])
        found |= inner_found
        found.update(id(t) for t, o in zip(outs, inner.outputs) if id(o) in inner_found)
    return found


def depends_on_input(model, site, index):
    """Whether the site's tensor depends on the model's input number `index`."""
    graph = graph_of(model)
    if graph is None or len(graph.inputs) == 1:
        return True
    return id(site.tensor) in _dependent(graph, [graph.inputs[index]])


def _ops(*names):
    return ops_classes("numpy", *names)


_TRANSPOSE_OPS = _ops("Transpose")
_RESHAPE_OPS = _ops("Reshape")
_CONCATENATE_OPS = _ops("Concatenate")
_FLIP_OPS = _ops("Flip", "Roll")
_SWAP_OPS = _ops("Swapaxes")
_MOVE_OPS = _ops("Moveaxis")
_TILE_OPS = _ops("Tile")
_SPLIT_OPS = _ops("Split")
_GETITEM_OPS = _ops("GetItem")


def _cells(shape, rank):
    """The positions of a (B, *spatial, C) shape of the spatial `rank` as a tuple, or None for
    other ranks; unknown sizes stay None."""
    return tuple(shape[1:rank - 1]) if shape is not None and len(shape) == rank else None


def _positional(shape, rank):
    """Whether a tensor can carry positions: more than one cell on its axes between batch and
    channels (a (B, C) vector or a (B, 1, 1, C) squeeze-excitation tensor cannot)."""
    if shape is None or len(shape) < 3:
        return False
    middle = shape[1:-1]
    return any(d is None for d in middle) or int(np.prod(middle)) > 1


def _axes_kept(axes, ndim, rank):
    """Whether a permutation `axes` of an `ndim`-axis tensor leaves batch and spatial axes in place."""
    axes = tuple(a % ndim for a in axes)
    return ndim == rank and axes[:rank - 1] == tuple(range(rank - 1))


def _moved_axes(op, ndim):
    """The permutation a Swapaxes or Moveaxis op applies, or None when it cannot be read."""
    order = list(range(ndim))
    if isinstance(op, _SWAP_OPS):
        i, j = op.axis1 % ndim, op.axis2 % ndim
        order[i], order[j] = order[j], order[i]
        return order
    source = [op.source] if isinstance(op.source, int) else list(op.source)
    destination = [op.destination] if isinstance(op.destination, int) else list(op.destination)
    source, destination = [a % ndim for a in source], [a % ndim for a in destination]
    rest = [a for a in order if a not in source]
    out = [None] * ndim
    for s_, d in zip(source, destination):
        out[d] = s_
    it = iter(rest)
    return [a if a is not None else next(it) for a in out]


def _touches_space(axis, ndim, rank):
    """Whether `axis` (an int, a sequence or None for all) names a batch or spatial axis."""
    axes = range(ndim) if axis is None else ([axis] if isinstance(axis, int) else list(axis))
    return any(a % ndim < rank - 1 for a in axes)


def _reorders(node, rank, grid):
    """(reason, grid) for the node's output: `reason` says why it leaves the input image's
    spatial frame (a short phrase) or is None; `grid` is the (h, w) grid of positions of a
    flattened map (B, h * w, C) that a later Reshape may restore, else None. `grid` is that of
    its input, if flattened.

    A tensor stays in the frame when each cell (i, j) sits where the same cell of the input's
    map does, up to scale: convolutions, pooling, resizing, space-to-depth (a cell covers its
    block, as for a strided convolution) and channel-wise ops keep it. Permuting or
    transposing spatial axes, reshaping to another grid, flipping, rolling or tiling spatial
    axes, concatenating or splitting along one do not: a class activation map read there is
    transposed or scrambled, silently. Flattening the positions to tokens (B, h * w, C) and
    reshaping them back to (h, w) keeps it.
    """
    op = node.operation
    what = f"{type(op).__name__} {op.name!r}"
    inputs = node.input_tensors
    before = tuple(inputs[0].shape) if inputs else None
    outs = tree.flatten(node.outputs)
    after = tuple(outs[0].shape) if outs else None
    ndim = len(before) if before is not None else 0
    if not _positional(after, rank):
        return None, None  # one cell (or none) carries no position
    if isinstance(op, (keras.layers.Reshape,) + _RESHAPE_OPS):
        channels_kept = before is not None and after[-1] == before[-1] and after[-1] is not None
        source = _cells(before, rank) or grid
        if channels_kept and source is not None and None not in source:
            if _cells(after, rank) == tuple(source):
                return None, None
            if len(after) == 3 and after[1] == int(np.prod(source)):
                return None, tuple(source)  # tokens in row-major order of the grid
        if _cells(before, rank) is not None and _cells(before, rank) == _cells(after, rank):
            return None, None
        return f"{what} reshapes the map to {after[1:]} from {before[1:] if before else None}", None
    if isinstance(op, keras.layers.Permute):
        if not _axes_kept((0,) + tuple(op.dims), ndim, rank):
            return f"{what} reorders the spatial axes (dims {tuple(op.dims)})", None
    elif isinstance(op, _TRANSPOSE_OPS):
        axes = op.axes if op.axes is not None else tuple(reversed(range(ndim)))
        if not _axes_kept(axes, ndim, rank):
            return f"{what} reorders the spatial axes (axes {tuple(axes)})", None
    elif isinstance(op, _SWAP_OPS + _MOVE_OPS):
        if not _axes_kept(_moved_axes(op, ndim), ndim, rank):
            return f"{what} moves a spatial axis", None
    elif isinstance(op, _FLIP_OPS):
        if _touches_space(op.axis, ndim, rank):
            return f"{what} flips or rolls a spatial axis", None
    elif isinstance(op, _TILE_OPS):
        repeats = list(op.repeats) if not isinstance(op.repeats, int) else [op.repeats]
        repeats = [1] * (ndim - len(repeats)) + repeats
        if any(r != 1 for r in repeats[:rank - 1]):
            return f"{what} tiles the map side by side", None
    elif isinstance(op, _SPLIT_OPS):
        if _touches_space(op.axis, ndim, rank):
            return f"{what} splits the map along a spatial axis", None
    elif isinstance(op, _GETITEM_OPS):
        key = node.arguments.args[1] if len(node.arguments.args) > 1 else ()
        key = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key[:rank - 1]):
            return f"{what} reverses a spatial axis", None
    elif isinstance(op, (keras.layers.Concatenate,) + _CONCATENATE_OPS):
        if _touches_space(op.axis, len(after), rank) and len(after) == rank:
            return f"{what} joins maps side by side (axis {op.axis})", None
    elif isinstance(op, keras.layers.Lambda):
        # Opaque: a resize or space-to-depth keeps the frame; a transpose of a non-square map
        # shows as the same sizes in another order.
        a, b = _cells(before, rank), _cells(after, rank)
        if a is not None and b is not None and a != b and sorted(a, key=str) == sorted(b, key=str):
            return f"{what} seems to transpose the map {a} -> {b}", None
    return None, grid


def _breaks(graph, rank, inherited, grids=None):
    """{id(tensor): reason} for the tensors of `graph` (nested graphs included) that are out of
    the input's spatial frame; `inherited` gives those of its inputs, `grids` the grids of its
    flattened inputs (see _reorders)."""
    reasons, grids = dict(inherited), dict(grids or {})
    for node in _nodes(graph):
        inputs = node.input_tensors
        outs = tree.flatten(node.outputs)
        inner = _nested_graph(node)
        if inner is not None:
            pairs = list(zip(inner.inputs, inputs))
            inner_reasons = _breaks(inner, rank, {id(i): reasons[id(t)] for i, t in pairs if id(t) in reasons},
                                    {id(i): grids[id(t)] for i, t in pairs if id(t) in grids})
            reasons.update(inner_reasons)
            reasons.update({id(t): inner_reasons[id(o)] for t, o in zip(outs, inner.outputs) if id(o) in inner_reasons})
            continue
        # Only tensors with positions pass a mark on (not a squeeze-excitation (B, 1, 1, C)).
        carried = [t for t in inputs if _positional(tuple(t.shape), rank)]
        reason = next((reasons[id(t)] for t in carried if id(t) in reasons), None)
        grid = next((grids[id(t)] for t in carried if id(t) in grids), None)
        if reason is None:
            reason, grid = _reorders(node, rank, grid)
        for t in outs:
            if reason:
                reasons[id(t)] = reason
            elif grid is not None and len(t.shape) == 3:
                grids[id(t)] = grid
    return reasons


def frame_breaks(model, rank=None):
    """{id(tensor): why} for every tensor of the model's graph that is not in the input's spatial
    frame (see `_reorders`): it comes after a Permute or transpose of spatial axes, a Reshape to
    another grid, a flip, roll, tile, split or concatenation along a spatial axis.

    Tensors made by other layers count as in the frame: a custom layer that transposes a square
    map without changing its shape cannot be told apart from one that does not."""
    graph = graph_of(model)
    if graph is None:
        return {}
    return _breaks(graph, spatial_rank(model) if rank is None else rank, {})


def out_of_frame(model, site, rank=None):
    """Why the site's tensor is out of the input's spatial frame, or None (see frame_breaks)."""
    return frame_breaks(model, rank).get(id(site.tensor))


# Layers whose output adds a border of zeros to the map before them: never the feature map.
_PADDING = (keras.layers.ZeroPadding2D,)


def last_spatial_site(model, output=0, rank=None, input=None):
    """The last tensor with spatial extent (> 1 cell) on the path to output number `output`
    (that depends on input number `input`, when given).

    Spatial tensors have `rank` dimensions (see spatial_rank, the default), so a 1-D model's
    (B, L, C) features count and an image model's token sequences do not.

    Operation outputs (`a + b`) count, nested models are entered (following the outputs that
    are used, when a nested model has several), and shape-only, pooling or zero-padding layers
    after the last feature map are passed over, as are tensors out of the input's spatial frame
    (after a Permute, a transpose, a spatial Reshape...: see frame_breaks), whose maps would be
    transposed or scrambled.
    """
    graph = graph_of(model)
    if graph is None:
        raise no_graph_error(model, "a spatial layer")
    rank = spatial_rank(model) if rank is None else rank
    allowed = None if input is None or len(graph.inputs) == 1 else _dependent(graph, [graph.inputs[input]])
    broken, skipped = _breaks(graph, rank, {}), []

    def search(graph, chain, wanted):
        relevant = _ancestors(graph, wanted)
        nodes = [n for n in _nodes(graph, from_output=True) if id(n) in relevant]
        # Tensors the path to `wanted` uses: which outputs of a nested model to follow.
        used = {id(t) for t in wanted} | {id(t) for n in nodes for t in n.input_tensors}
        for node in nodes:
            inner = _nested_graph(node)
            if inner is not None:
                outs = tree.flatten(node.outputs)
                inner_wanted = [inner.outputs[i] for i, t in enumerate(outs) if id(t) in used]
                found = search(inner, chain + (node,), inner_wanted)
                if found is not None:
                    return found
                continue
            if isinstance(node.operation, _PADDING):
                continue
            for index, _ in enumerate(tree.flatten(node.outputs)):
                site = Site(chain + (node,), index)
                if _spatial(site, rank) and (allowed is None or id(site.tensor) in allowed):
                    if id(site.tensor) in broken:
                        skipped.append(f"{site.path!r} ({broken[id(site.tensor)]})")
                        continue
                    return site
        return None

    site = search(graph, (), graph.outputs[output:output + 1])
    if site is None:
        form = FORMS.get(rank, FORMS[4])
        which = "" if allowed is None else f" computed from input {model.inputs[input].name!r}"
        frame = (" Spatial tensors after an operation that reorders the map are not in the input's "
                 f"frame and are passed over: {'; '.join(skipped[:3])}." if skipped else "")
        raise ValueError(
            f"Model {model.name!r} has no tensor with a spatial {form} output of more than one "
            f"cell{which} on the path to its output in the input's frame; class activation maps need a "
            f"convolutional feature map.{frame}"
        )
    return site


def _short_list(names, limit=8):
    names = list(names)
    if len(names) <= limit:
        return str(names)
    return f"[... {len(names) - limit} more, " + ", ".join(repr(n) for n in names[-limit:]) + "]"


def find_site(model, path):
    """The Site named by `path` ("name" or "nested/name"): a layer or an operation."""
    if not isinstance(path, str) or not path:
        raise TypeError(f"layer must be a layer name or a 'nested/path'; received {path!r}.")
    graph = graph_of(model)
    if graph is None:
        raise no_graph_error(model, f"layer {path!r}")
    parts = path.split("/")
    chain = ()
    for depth, name in enumerate(parts):
        nodes = [n for n in _nodes(graph) if n.operation.name == name]
        if not nodes:
            close = difflib.get_close_matches(path, all_paths(model), n=5, cutoff=0.6)
            hint = f" Closest names: {close}." if close else ""
            raise ValueError(
                f"No layer or operation named {path!r} in model {model.name!r}.{hint} Spatial layers "
                f"(input to output): {_short_list(spatial_layers(model))}; nested layers are "
                "addressed 'nested_model/layer'."
            )
        if len(nodes) > 1:
            raise ValueError(
                f"Layer {'/'.join(parts[:depth + 1])!r} is called {len(nodes)} times in model "
                f"{model.name!r} (a shared layer), so {path!r} does not name one tensor. Choose the "
                "layer just after the call you mean."
            )
        node = nodes[0]
        if depth == len(parts) - 1:
            return Site(chain + (node,))
        inner = _nested_graph(node)
        if inner is None:
            raise ValueError(
                f"{'/'.join(parts[:depth + 1])!r} is not a nested functional model, so {path!r} "
                "cannot be resolved."
            )
        chain, graph = chain + (node,), inner
    raise AssertionError("unreachable")
