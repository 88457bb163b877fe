"""Token models: patch tokens laid back on their grid, and what attention layers compute.

A Vision Transformer cuts the image into patches of p x p pixels, embeds each as a token and
may put extra tokens in front (a class token, a distillation token, registers). Its (B, T, D)
token tensors are then a feature map once the extra tokens are dropped and the patch tokens
are laid on their (H / p, W / p) grid, row-major, as every ViT flattens them.

The grid is read from the model, never guessed from T: the patch size is the `patch_size` of
a layer that has one (keras-hub's `ViTPatchingAndEmbedding`, the Keras example's `Patches`),
or else the stride of the patch-embedding convolution (a Conv2D or Conv1D whose stride equals
its kernel). The extra tokens are the T - h * w tokens in front.

Attention layers (`keras.layers.MultiHeadAttention`, inside custom layers too, as in keras-hub's
blocks) are watched while a compiled function traces (`Watch`): each reports its attention
probabilities (B, heads, T, S), as the model computes them, and the query it received. Nothing
of the model is changed: the watch is an attribute of the layer instance set for the trace and
removed after it.
"""

import inspect
import threading
import weakref

import keras
import numpy as np
import tensorflow as tf

__all__ = ["attention_layers", "attention_paths", "find_attention", "attention_probe", "Watch", "TokenGrid", "token_grid",
           "patch_size"]

_LOCK = threading.RLock()


def attention_layers(model):
    """The model's `keras.layers.MultiHeadAttention` layers (nested models and custom layers
    included), in the order they were created."""
    return list(attention_paths(model).values())


def attention_paths(model):
    """{path: layer} of the model's attention layers, each path the names of the layers that
    hold it, outermost first ("vit_backbone/vit_encoder/transformer_block_1/mha"), as `layer=`
    accepts them (a layer's own name too, where it is unique)."""
    found = {}

    def visit(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            path = f"{prefix}{child.name}"
            if isinstance(child, keras.layers.MultiHeadAttention):
                if all(child is not f for f in found.values()):
                    found[path] = child
            else:
                visit(child, path + "/")

    visit(model, "")
    return found


def find_attention(paths, name):
    """The attention layer named by `name` among `paths` (attention_paths' dict): a path, or
    a unique layer name; None when none is."""
    if name in paths:
        return paths[name]
    named = [layer for layer in paths.values() if layer.name == name]
    return named[0] if len(named) == 1 else None


class Watch:
    """While active (a context manager), the given attention layers report what they compute.

    Attributes filled during a call of the model:
        probabilities: [(B, heads, T, S) tensor] per attention call, in call order: the
            softmax of the scaled query-key products, the tensor the layer multiplies the values
            by (inference mode: no dropout), so gradients with respect to it are dS/dA.
        queries: [(B, T, D) tensor] per attention call: the query the layer received.

    `replace_query`: an optional {layer: fn(query) -> query} computing a layer's query input
    instead (Ablation-CAM's ablated tokens).
    """

    def __init__(self, layers, probabilities=True, replace_query=None):
        self.layers = list(layers)
        self.want_probabilities = probabilities
        self.replace_query = dict(replace_query or {})
        self.probabilities, self.queries, self.callers = [], [], []

    def __enter__(self):
        _LOCK.acquire()
        try:
            for layer in self.layers:
                self._watch(layer)
        except BaseException:
            self._restore()
            _LOCK.release()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._restore()
        finally:
            _LOCK.release()
        return False

    def _watch(self, layer):
        watch = self
        compute, call = layer._compute_attention, layer.call
        flash = getattr(layer, "_flash_attention", False)
        asks = "return_attention_scores" in inspect.signature(compute).parameters

        def compute_attention(query, key, value, attention_mask=None, training=None, *args, **kwargs):
            if not watch.want_probabilities:
                return compute(query, key, value, attention_mask, training, *args, **kwargs)
            if asks:  # Keras >= 3.5 forms the probabilities only when asked (else a fused kernel)
                kwargs["return_attention_scores"] = True
            output, scores = compute(query, key, value, attention_mask, training, **kwargs)
            watch.probabilities.append(scores)
            return output, scores

        def watched_call(query, *args, **kwargs):
            if layer in watch.replace_query:
                # Self-attention passes one tensor as query, value (and key): it is replaced in
                # every role, as the tensor it stands for would be.
                original, query = query, watch.replace_query[layer](query)
                args = tuple(query if a is original else a for a in args)
                kwargs = {k: query if v is original else v for k, v in kwargs.items()}
            watch.queries.append(query)
            watch.callers.append(layer)
            return call(query, *args, **kwargs)

        # What the instance itself held (a user's or a profiler's wrapper, an enclosing Watch)
        # is put back on exit, in reverse order.
        saved = {name: layer.__dict__[name] for name in ("_compute_attention", "call", "_flash_attention")
                 if name in layer.__dict__}
        self.__dict__.setdefault("_restore_list", []).append((layer, saved))
        # Flash attention never forms the probabilities; the plain path computes the same output.
        if flash:
            object.__setattr__(layer, "_flash_attention", False)
        object.__setattr__(layer, "_compute_attention", compute_attention)
        object.__setattr__(layer, "call", watched_call)

    def _restore(self):
        for layer, saved in reversed(self.__dict__.pop("_restore_list", [])):
            for name in ("_compute_attention", "call", "_flash_attention"):
                if name in saved:
                    object.__setattr__(layer, name, saved[name])
                else:
                    layer.__dict__.pop(name, None)


def _sizes(value, rank):
    """A patch size as a tuple of `rank` ints, or None."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * rank
    if isinstance(value, (tuple, list)) and len(value) == rank and all(isinstance(v, (int, np.integer)) for v in value):
        return tuple(int(v) for v in value)
    return None


def patch_size(model, rank=2):
    """(p_h, p_w) (or (p,) for signals): the model's patch size, from a layer's `patch_size`
    or the patch-embedding convolution (stride equal to its kernel, larger than 1), and the
    name of the layer it was read from; None when the model has neither."""
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv1D
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    for layer in layers:
        size = _sizes(getattr(layer, "patch_size", None), rank)
        if size is not None and min(size) >= 1:
            return size, layer.name
    for layer in layers:
        if isinstance(layer, conv):
            kernel, strides = _sizes(layer.kernel_size, rank), _sizes(layer.strides, rank)
            if kernel is not None and kernel == strides and max(kernel) > 1:
                return kernel, layer.name
    return None


class TokenGrid:
    """Where the patch tokens of a (B, T, D) tensor lie: `grid` (h, w) (or (l,) for signals),
    `extra` tokens in front (class, distillation, register tokens), dropped from maps."""

    def __init__(self, grid, extra, source):
        self.grid, self.extra, self.source = tuple(grid), int(extra), source

    @property
    def dropped(self):
        """Indices of the tokens maps leave out."""
        return tuple(range(self.extra))

    def to_map(self, tokens):
        """(B, T, D) -> (B, *grid, D): the patch tokens on their grid."""
        patches = tokens[:, self.extra:]
        return tf.reshape(patches, tf.concat([tf.shape(patches)[:1], self.grid, tf.shape(patches)[2:]], 0))

    def __repr__(self):
        return f"TokenGrid(grid={self.grid}, extra={self.extra}, from {self.source!r})"

    def __eq__(self, other):
        return isinstance(other, TokenGrid) and (self.grid, self.extra) == (other.grid, other.extra)

    def __hash__(self):
        return hash((self.grid, self.extra))


def flattened_grids(model, rank=2):
    """[(grid, layer name)] of the feature maps (B, *grid, D) the model's graph flattens into
    tokens (B, prod(grid), D) by a Reshape: a hybrid ViT's convolutional stem, whose grid no
    patch size gives."""
    from keras_interp.graph import _RESHAPE_OPS, _sites, graph_of

    graph = graph_of(model)
    found = []
    for site in [] if graph is None else _sites(graph):
        node = site.nodes[-1]
        if not isinstance(site.operation, (keras.layers.Reshape,) + _RESHAPE_OPS):
            continue
        inputs = node.input_tensors
        before, after = (tuple(inputs[0].shape) if inputs else None), site.shape
        if before is None or len(before) != rank + 2 or len(after) != 3 or None in before[1:]:
            continue
        if after[1] == int(np.prod(before[1:-1])) and after[2] == before[-1]:
            found.append((tuple(before[1:-1]), site.path))
    return found


_GRID_SOURCES = weakref.WeakKeyDictionary()


def _grid_sources(model, rank):
    """(patch_size(model, rank), flattened_grids(model, rank)), found once per model: a
    functional graph's layers do not change, and the default layer tries many token tensors."""
    known = _GRID_SOURCES.setdefault(model, {})
    if rank not in known:
        known[rank] = (patch_size(model, rank), flattened_grids(model, rank))
    return known[rank]


def token_grid(model, tokens, input_shape, what):
    """The TokenGrid of `tokens` ((B, T, D) shape) in a model whose input is `input_shape`
    ((B, H, W, C) or (B, L, C)): from the model's patch size (see patch_size), else from a
    feature map its graph flattens into tokens (see flattened_grids). ValueError when the
    model defines no grid the tokens fit."""
    rank = len(input_shape) - 2
    count = tokens[1]
    spatial = input_shape[1:-1]
    found, flattened = _grid_sources(model, rank)
    candidates, tried = [], []
    if found is not None:
        size, source = found
        if any(s is None for s in spatial) or count is None:
            raise ValueError(
                f"{what} has {count} tokens and the model takes inputs of shape {tuple(input_shape[1:])}: the "
                "patch grid needs a fixed input size."
            )
        grid = tuple(int(s) // p for s, p in zip(spatial, size))
        candidates.append((grid, source))
        tried.append(f"its {'x'.join(map(str, size))} patches (from layer {source!r}) on its "
                     f"{'x'.join(map(str, spatial))} input make a {'x'.join(map(str, grid))} grid of {int(np.prod(grid))}")
    for grid, source in flattened:
        candidates.append((grid, source))
        tried.append(f"layer {source!r} flattens a {'x'.join(map(str, grid))} map into {int(np.prod(grid))} tokens")
    if not candidates:
        raise ValueError(
            f"{what} has {count} tokens, but model {model.name!r} defines no patch grid: no layer has a "
            "`patch_size`, no convolution has a stride equal to its kernel (a patch embedding) and no Reshape "
            "flattens a feature map into tokens. Class activation maps on tokens need the grid the patches lie on."
        )
    # Of the grids the tokens fit, the one with the fewest extra tokens: a patch size on an image
    # side it does not divide ('same' padding) undercounts the patches, the flattened map does not.
    fits = [(count - int(np.prod(grid)), grid, source) for grid, source in candidates
            if count is not None and 0 <= count - int(np.prod(grid)) < int(np.prod(grid))]
    if fits:
        extra, grid, source = min(fits, key=lambda f: f[0])
        return TokenGrid(grid, extra, source)
    raise ValueError(
        f"{what} has {count} tokens, but {'; '.join(tried)}: these tokens are not such a grid's patches (plus a "
        "few class or register tokens in front)."
    )


def attention_probe(scorer):
    """The attention calls of the model on one probe example, watched once per scorer (the
    default layer, its shape and the rollouts' checks all read it): a list of (layer, query
    shape, probabilities shape) in call order; None when the model takes no single input of
    known size."""
    if "_attention_probe" not in scorer.__dict__:
        x, calls = _probe(scorer), None
        layers = attention_layers(scorer.model)
        if x is not None and layers:
            with Watch(layers) as watch:
                scorer._run(x)
            calls = [(layer, tuple(q.shape), tuple(a.shape))
                     for layer, q, a in zip(watch.callers, watch.queries, watch.probabilities)]
        scorer.__dict__["_attention_probe"] = [] if x is not None and not layers else calls
    return scorer.__dict__["_attention_probe"]


def _probe(scorer):
    """One seeded standard-normal example of the model's input, or None for several inputs."""
    shapes = scorer.input_shapes
    if shapes is None or len(shapes) != 1 or any(d is None for d in shapes[0][1:]):
        return None
    dtype = scorer.model.inputs[0].dtype if getattr(scorer.model, "inputs", None) else "float32"
    return tf.cast(np.random.default_rng(0).standard_normal((1,) + tuple(shapes[0][1:])), dtype)


class TokenLayer:
    """A (B, T, D) token tensor read as a feature map: a graph Site's output, or the query input
    of an attention layer (watched while the model runs; the way into keras-hub's blocks).

    Attributes: `path` (the layer's name or path), `shape`, `grid` (TokenGrid), and `nodes`,
    `index` (a Site's, to key what is shared per layer)."""

    def __init__(self, scorer, where, rank):
        from keras_interp.graph import Site

        self.scorer, self.rank = scorer, rank
        model = scorer.model
        if isinstance(where, Site):
            self.attention, self.site = None, where
            self.path, self.shape, self.nodes, self.index = where.path, where.shape, where.nodes, where.index
        else:
            self.attention, self.site = where, None
            path = next((p for p, a in attention_paths(model).items() if a is where), where.name)
            self.path, self.nodes, self.index = path, (), ("attention", path)
            built = getattr(where, "_build_shapes_dict", None) or {}
            query = built.get("query_shape")
            self.shape = tuple(query) if query is not None else None
            if self.shape is not None and len(self.shape) == 3 and self.shape[1] is None:
                self.shape = self._probed_shape()  # keras-hub's blocks are built for any length
            if self.shape is None or len(self.shape) != 3:
                raise ValueError(f"Attention layer {where.name!r} does not take (batch, tokens, features) "
                                 f"queries (query shape {self.shape}), so its input is no token map.")
        if len(self.shape) != 3:
            raise ValueError(f"Layer {self.path!r} has output shape {self.shape}, not tokens (batch, tokens, features).")
        what = f"Layer {self.path!r}" + (" (its query input)" if self.attention is not None else "")
        if rank == 3 and patch_size(model, 1) is None:
            self.grid = TokenGrid((self.shape[1],), 0, None)  # a signal's positions are its tokens
        else:
            self.grid = token_grid(model, self.shape, scorer.input_shapes[0], what)

    def _probed_shape(self):
        shapes = [query for layer, query, _ in attention_probe(self.scorer) or () if layer is self.attention]
        return (None,) + shapes[-1][1:] if shapes else None

    def features(self, x):
        """(tokens in the layer's dtype, logits float32) for a batch."""
        if self.site is not None:
            output, (tokens,) = self.scorer._run(x, [self.site])
            return tokens, self.scorer._as_logits(output)
        with Watch([self.attention], probabilities=False) as watch:
            output, _ = self.scorer._run(x)
        return watch.queries[-1], self.scorer._as_logits(output)

    def replaced_logits(self, fn, x):
        """Logits with the tokens computed by fn(tokens) instead."""
        if self.site is not None:
            return self.scorer.with_replaced({self.site.nodes: lambda *a, **k: fn()})(x)
        with Watch([self.attention], probabilities=False, replace_query={self.attention: lambda q: fn()}):
            output, _ = self.scorer._run(x)
        return self.scorer._as_logits(output)

    def reaches(self):
        """Whether the score depends on the patch tokens (False when only the extra tokens reach
        it, as after the last attention of a class-token ViT); None when it cannot be told."""
        x = _probe(self.scorer)
        if x is None:
            return None
        with tf.GradientTape() as tape:
            tokens, logits = self.features(x)
            total = tf.reduce_sum(logits)
        grads = tape.gradient(total, tokens)
        if grads is None:
            return False
        grads = np.abs(np.asarray(tf.cast(grads, tf.float32)))
        if not np.isfinite(grads).all() or grads.max() == 0:
            return None
        return bool(grads[:, self.grid.extra:].max() > 0)

    def check_reach(self):
        if self.reaches() is False:
            last = last_attention(self.scorer)
            hint = f" the input of the last attention (layer={last.name!r})" if last is not None else " a layer before"
            raise ValueError(
                f"The patch tokens of layer {self.path!r} do not reach the score: after the last attention a "
                f"class-token model reads only its first {self.grid.extra} token(s), so class activation maps there "
                f"are zero everywhere. Choose{hint}, as the default does."
            )

    @classmethod
    def default(cls, scorer, rank):
        """The last token tensor on the graph whose patch tokens reach the score (a model that
        pools all tokens), else the query input of the last attention layer (the last block's
        first normalization, pytorch-grad-cam's choice for class-token ViTs)."""
        candidate = _last_token_site(scorer, rank)
        if candidate is not None and candidate.reaches():
            return candidate
        last = last_attention(scorer)
        if last is None:
            raise ValueError(f"Model {scorer.model.name!r}: no attention layer was called on its input.")
        return cls.of_attention(scorer, last, rank)

    @classmethod
    def of_attention(cls, scorer, attention, rank):
        """The query input of `attention`: the graph tensor it is (the block's first norm) where
        the layer is a node of the model's graph, else watched inside the layer that calls it."""
        from keras_interp.graph import Cursor, _sites, graph_of

        graph = graph_of(scorer.model)
        nodes = [] if graph is None else [s for s in _sites(graph) if s.operation is attention]
        if len(nodes) == 1:
            query = Cursor.input_of(nodes[0]).producer()
            if query is not None:
                return cls(scorer, query, rank)
        return cls(scorer, attention, rank)


def last_attention(scorer):
    """The attention layer the model calls last (see attention_probe), or None."""
    calls = attention_probe(scorer)
    if calls is None:  # not probed: the last created
        layers = attention_layers(scorer.model)
        return layers[-1] if layers else None
    return calls[-1][0] if calls else None


def _last_token_site(scorer, rank):
    """The graph's last (B, T, D) float tensor whose tokens fit the model's patch grid, or None."""
    from keras_interp.graph import _sites, graph_of

    graph = graph_of(scorer.model)
    if graph is None:
        return None
    for site in reversed(list(_sites(graph))):
        shape = site.shape
        if len(shape) == 3 and "float" in str(site.tensor.dtype) and shape[1] is not None and shape[1] > 1:
            try:
                return TokenLayer(scorer, site, rank)
            except ValueError:
                continue
    return None
