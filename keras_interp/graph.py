"""Finding layers and their tensors inside a Keras functional graph (also nested ones).

Layer paths address nested models with "/": "backbone/block3_conv" is the layer block3_conv of
the nested model named backbone. Everything here reads the graph; nothing modifies it.
"""

import keras

__all__ = ["output_node", "layer_node", "resolve_layer", "spatial_layers", "last_spatial_layer"]


def _functional(model):
    return getattr(model, "_functional", None) or model


def output_node(model):
    """(operation, node) that produced the model's single output, or (None, None)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None, None
    history = getattr(outputs[0], "_keras_history", None)
    if history is None:
        return None, None
    operation, node_index, _ = history
    return operation, operation._inbound_nodes[node_index]


def layer_node(model, layer):
    """The node where `layer` is called inside `model`'s graph (a layer may be shared)."""
    keys = getattr(_functional(model), "_nodes", set())
    for index, node in enumerate(layer._inbound_nodes):
        if f"{id(layer)}_ib-{index}" in keys:
            return node
    if len(layer._inbound_nodes) == 1:
        return layer._inbound_nodes[0]
    raise ValueError(f"Layer {layer.name!r} is not connected in the graph of model {model.name!r}.")


def _is_spatial(layer, node):
    shape = node.output_tensors[0].shape if len(node.output_tensors) == 1 else None
    return shape is not None and len(shape) == 4


def spatial_layers(model, prefix=""):
    """Paths of all layers with a single 4-D (batch, h, w, c) output, nested models included."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            node = layer_node(model, layer)
        except ValueError:
            continue
        if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
            names += spatial_layers(layer, prefix + layer.name + "/")
        if _is_spatial(layer, node):
            names.append(prefix + layer.name)
    return names


def last_spatial_layer(model):
    """Path of the last top-level layer whose output is a spatial map (after its activation)."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if _is_spatial(layer, layer_node(model, layer)):
            return layer.name
    raise ValueError(
        f"Model {model.name!r} has no layer with a spatial (batch, height, width, channels) "
        "output; class activation maps need a convolutional feature map."
    )


def resolve_layer(model, path):
    """[(model, layer), ...] from the top-level model down to the layer named by `path`."""
    if not isinstance(path, str) or not path:
        raise TypeError(f"layer must be a layer name or a 'nested/path'; received {path!r}.")
    chain, current = [], model
    parts = path.split("/")
    for depth, name in enumerate(parts):
        if not isinstance(current, keras.Model) or not getattr(current, "outputs", None):
            raise ValueError(
                f"{'/'.join(parts[:depth])!r} is not a nested functional model, so {path!r} cannot "
                f"be resolved. Layers with spatial outputs: {spatial_layers(model)}."
            )
        names = [layer.name for layer in current.layers]
        if name not in names:
            raise ValueError(
                f"No layer named {path!r} in model {model.name!r}. Layers with spatial outputs: "
                f"{spatial_layers(model)}."
            )
        layer = current.get_layer(name)
        chain.append((current, layer))
        current = layer
    return chain
