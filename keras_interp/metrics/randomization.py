"""The cascading model-randomization sanity check (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018).

A map that explains the model must change when the model's weights are destroyed. The check
re-initializes the layers of a copy of the model one by one from the output down and, after
each, compares the explainer's maps with the maps of the trained model. Similarity should
fall: a method whose maps stay alike on a random network shows the input, not the model.
"""

import contextlib
import random
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_interp import compat
from keras_interp.checks import check_images
from keras_interp.graph import graph_of, operations_on_path
from keras_interp.targets import Scorer, top_classes

__all__ = ["randomization_check", "spearman", "ssim", "cascade_layers"]

SIMILARITIES = ("spearman", "ssim")


def _finite_pair(a, b, dtype):
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    if a.shape != b.shape:
        raise ValueError(f"Expected two batches of maps of one shape; received {a.shape} and {b.shape}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("The maps contain NaN or infinite values; their similarity is undefined.")
    return a, b


def _ranks(values):
    """Ranks 0..n-1 of a 1-D array, ties given their mean rank (as scipy.stats.rankdata - 1)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1])
    ends = np.concatenate([starts[1:], [len(values)]])
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def spearman(a, b):
    """Spearman rank correlation of each pair of maps: (B, ...) and (B, ...) -> (B,) float32.

    Ties get their mean rank. A constant map has no ranking; its pairs count as 0 (no
    agreement), so a method whose maps collapse to a constant scores as dissimilar.
    """
    a, b = _finite_pair(a, b, np.float64)
    if a.ndim < 2:
        raise ValueError(f"Expected two batches of maps of one shape (B, ...); received {a.shape} and {b.shape}.")
    out = np.zeros(len(a), np.float32)
    for i, (u, v) in enumerate(zip(a.reshape(len(a), -1), b.reshape(len(b), -1))):
        ru, rv = _ranks(u) - (len(u) - 1) / 2.0, _ranks(v) - (len(v) - 1) / 2.0
        norm = np.sqrt((ru * ru).sum() * (rv * rv).sum())
        out[i] = (ru * rv).sum() / norm if norm > 0 else 0.0
    return out


def ssim(a, b):
    """Structural similarity of each pair of maps (B, h, w), each min-max scaled to [0, 1] first
    (as Adebayo et al. compare maps): (B,) float32. Uses tf.image.ssim with an 11-pixel window
    (smaller for maps smaller than that)."""
    a, b = _finite_pair(a, b, np.float32)
    if a.ndim != 3:
        raise ValueError(f"Expected two batches of maps (B, h, w) of one shape; received {a.shape} and {b.shape}.")

    def scaled(m):
        lo = m.min(axis=(1, 2), keepdims=True)
        span = m.max(axis=(1, 2), keepdims=True) - lo
        return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0)[..., None]

    window = min(11, a.shape[1], a.shape[2])
    return tf.image.ssim(scaled(a), scaled(b), max_val=1.0, filter_size=window).numpy().astype(np.float32)


def _paired_layers(original, clone, prefix=""):
    """(path, original layer, clone layer) for every layer that holds weights, in forward order,
    nested models expanded into their layers ("backbone/conv3")."""
    for layer, twin in zip(original.layers, clone.layers):
        path = prefix + layer.name
        if isinstance(layer, keras.Model) and layer.layers:
            yield from _paired_layers(layer, twin, path + "/")
        elif layer.weights:
            yield path, layer, twin


def _on_path(model, output):
    """Names of the model's top-level layers on the path to output number `output` (a nested
    model counts as a whole), or None when every layer is (one output, or no graph)."""
    graph = graph_of(model)
    if output is None or graph is None or len(graph.outputs) < 2:
        return None
    return operations_on_path(model, output)


def _make(explainer_factory, m):
    explainer = explainer_factory(m)
    if not callable(getattr(explainer, "explain", None)):
        raise TypeError(f"explainer_factory must return an explainer (with explain(inputs, target)); it "
                        f"returned {type(explainer).__name__}.")
    return explainer


def cascade_layers(model):
    """Paths of the layers the cascade randomizes, in its order (output first)."""
    return [path for path, _, _ in _paired_layers(model, model)][::-1]


def _clone(model):
    if graph_of(model) is None:
        raise ValueError(
            f"randomization_check copies the model with keras.models.clone_model, which needs a functional "
            f"or Sequential model; {model.name!r} is a {type(model).__name__} without a graph. Build the "
            "same network as a functional model (keras.Model(inputs, outputs)) to check it."
        )
    with _global_random_state_kept():  # building the copy draws initial weights: keep the user's seeds
        clone = keras.models.clone_model(model)
    originals, copies = model.weights, clone.weights
    if len(originals) != len(copies) or any(a.shape != b.shape for a, b in zip(originals, copies)):
        raise ValueError(f"keras.models.clone_model did not reproduce the weights of {model.name!r}.")
    for source, copy in zip(originals, copies):
        copy.assign(source)
    return clone


@contextlib.contextmanager
def _global_random_state_kept():
    """Run the block without moving Python's or Keras's global random state (Keras draws the
    initial weights of unseeded layers from its global seed generator)."""
    global_state = compat.global_state()
    if global_state is None:  # pragma: no cover - another Keras layout: nothing to keep
        yield
        return
    python_state = random.getstate()
    generator = global_state.get_global_attribute("global_seed_generator")
    saved = None if generator is None else np.asarray(generator.state.value)
    try:
        yield
    finally:
        random.setstate(python_state)
        if generator is None:
            global_state.set_global_attribute("global_seed_generator", None)
        else:
            generator.state.assign(saved)


def _initializer(layer, variable):
    """The layer's own initializer for this weight, or None when the layer does not name one."""
    name = variable.name.split("/")[-1].split(":")[0]
    candidates = [f"{name}_initializer", f"{name.removesuffix('_kernel')}_initializer"]
    if name == "kernel":
        candidates.append("depthwise_initializer")  # DepthwiseConv2D stores its kernel as "kernel"
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return initializer
    return None


def _randomize(layer, seed):
    """Re-initialize every weight of `layer` in place, seeded: each with the initializer the
    layer names for it (a fresh draw, as at construction), else a random permutation of its
    current values (a custom layer's weight: same distribution, structure destroyed)."""
    rng = np.random.default_rng(seed)
    for k, variable in enumerate(layer.weights):
        initializer = _initializer(layer, variable)
        if initializer is None:
            values = np.asarray(variable).ravel()
            variable.assign(rng.permutation(values).reshape(variable.shape))
            continue
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": int(seed) * 1000 + k})
        variable.assign(tf.cast(initializer(tuple(variable.shape), dtype=variable.dtype), variable.dtype))


def _fixed_target(model, x, target, output=None):
    """target=None becomes the trained model's top classes (of the explained output), so every
    randomized copy explains the class the trained model predicted, not its own (random)
    prediction."""
    if target is not None:
        return target
    scorer = Scorer(model, output=output)
    if scorer.num_classes is None:
        return None
    return top_classes(scorer, x)


def randomization_check(explainer_factory, model, inputs, target=None, layers=None, absolute=False,
                        similarity="spearman", seed=0, last_only=False):
    """Cascading randomization: similarity of the maps as layers are re-initialized top down.

    A copy of the model (keras.models.clone_model, weights copied) is randomized layer by
    layer from the output towards the input, each layer with the initializer it was built
    with, seeded. On a model with several outputs, only the layers on the path to the output
    the explainer explains (its `output=`) are randomized. After each layer, `explainer_factory(copy).explain(inputs, target)` is
    compared with the maps of the trained model. The user's model, and the global random
    state, are never touched.

    Normalisation layers have constant initializers (BatchNormalization, LayerNormalization:
    gamma 1, beta 0, moving statistics 0 and 1), so they are reset to the identity rather than
    randomized, as in Adebayo et al.'s code; weights a layer names no initializer for (custom
    layers) are randomly permuted. Each copy is a new model, so its explainers trace their
    compiled functions once (TensorFlow may warn about retracing).

    Args:
        explainer_factory: `model -> explainer`, e.g. `ki.GradCAM` or
            `lambda m: ki.SmoothGrad(m, samples=50)`.
        model: a trained functional or Sequential Keras model.
        inputs: (B, H, W, C) images.
        target: as for the explainers. None explains each image's class as the trained model
            predicts it, on every randomized copy too.
        layers: None for every layer that holds weights (nested models expanded, paths like
            "backbone/conv3"), or the names of the layers to randomize; they are randomized in
            cascade order (output first) whatever order they are listed in.
        absolute: compare absolute values of the maps. The gradient family's `explain` is
            already |gradient| and Grad-CAM is ReLU'd, so this matters for signed maps (CAM,
            occlusion, or a factory returning signed attributions, e.g. an object whose
            `explain(x, target)` returns `ki.Saliency(m).attribute(x, target).sum(-1)`).
        similarity: "spearman" (mean rank correlation, default) or "ssim" (maps min-max scaled).
        seed: seeds the re-initialization.
        last_only: compute maps only once every listed layer is randomized (a quicker check
            with one entry, the same value as the full cascade's last).

    Returns:
        A dict from each randomized layer's path to the mean similarity over the images after
        that layer and every layer above it were randomized, in cascade order. Its last value
        is the similarity after full randomization (of the listed layers).

    Example:
        >>> ki.metrics.randomization_check(ki.GradCAM, model, images)
        {'predictions': 0.12, 'bn3_2': 0.08, ...}
    """
    if not callable(explainer_factory):
        raise TypeError(f"explainer_factory must be a callable model -> explainer; received {explainer_factory!r}.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model; received {type(model).__name__}.")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; received {seed!r}.")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}; received {similarity!r}.")
    x = check_images(inputs, tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None)
    compare = spearman if similarity == "spearman" else ssim
    # The output the factory's explainer explains: on a model with several heads only the
    # layers on its path are randomized (the other heads cannot change its maps), and target=None
    # means that output's predicted classes.
    trained = _make(explainer_factory, model)
    output = getattr(getattr(trained, "scorer", None), "output_index", None)
    on_path = _on_path(model, output)
    clone = _clone(model)
    cascade = [(path, twin) for path, _, twin in _paired_layers(model, clone)
               if on_path is None or path.split("/")[0] in on_path][::-1]
    if layers is not None:
        names = [layers] if isinstance(layers, str) else list(layers)
        known = [path for path, _ in cascade]
        if not names:
            raise ValueError(f"layers is empty; pass None for every layer with weights, or some of {known}.")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"Unknown layers {unknown!r} for the randomization check (or layers without weights, which "
                f"randomizing cannot change); layers with weights, in cascade order: {known}."
            )
        cascade = [(path, twin) for path, twin in cascade if path in names]
    target = _fixed_target(model, x, target, output)

    def maps_of(m, after):
        if m is model:
            maps = np.asarray(trained.explain(x, target=target), np.float32)
        else:
            # A randomized copy's maps may be empty or its layers signed: its explainers' notes
            # about that are not news, and would repeat once per layer.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                maps = np.asarray(_make(explainer_factory, m).explain(x, target=target), np.float32)
        if not np.isfinite(maps).all():
            raise ValueError(f"The explainer gave NaN or infinite maps {after}; the similarity is undefined.")
        return np.abs(maps) if absolute else maps

    reference = maps_of(model, "on the trained model")
    results = {}
    for step, (path, twin) in enumerate(cascade):
        _randomize(twin, seed * 7919 + step)
        if not last_only or step == len(cascade) - 1:
            results[path] = float(np.mean(compare(reference, maps_of(clone, f"after randomizing {path!r}"))))
    return results
