"""Deep Dream (Mordvintsev et al., 2015): make a photo show more of what some layers see."""

import warnings

import numpy as np
import tensorflow as tf

from keras_interp import graph
from keras_interp.checks import check_image_model_input
from keras_interp.targets import Scorer, inner_scorer, output_names
from keras_interp.visualize.engine import GradientAscent, Jitter, resolve_value_range

__all__ = ["DeepDream"]


def _tiles(size, tile):
    """Start and stop of each tile along one axis: equal tiles of at most `tile` pixels."""
    count = max(1, -(-size // tile))
    edges = np.linspace(0, size, count + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


class DeepDream:
    """Deep Dream: gradient ascent on a real photo of the activation norm of some layers.

    The objective is the sum over `layers` of the mean squared activation. The photo is
    processed at `octaves` scales, smallest first, each `octave_scale` times the previous; the
    detail added at one scale is carried up to the next (detail transfer). Each step rolls the
    image by a random offset (jitter), takes the gradient tile by tile (tiles of at most
    `tile_size` pixels a side, one after the other, so a 1024x768 photo needs the memory of one
    tile), rolls it back and normalizes it by its mean magnitude. Only the model's layers up to
    `layers` run, so the photo can have any size when that part of the model is fully
    convolutional. The same gradient-ascent engine as the class models does the steps.

    With `target=c` the objective is instead class c's pre-softmax score (the lecture's Deep
    Dream that "boosts the confidence" of a class): the whole model runs on each tile, so the
    photo, its octaves and its tiles can have any size only when the model takes any size (a
    convolutional network with global pooling); a model with a fixed-size head (Flatten -> Dense,
    a ViT's position embedding) needs the photo at its input size, one octave and one tile, and
    says so.

    Args:
        model: single-input image model with a functional graph.
        layers: a layer name ("nested/path" included) or a list of them; None: the last layer
            with a spatial output on the path to the output.
        output: for a model with several outputs and layers=None, the output (name or index)
            whose path gives the default layer (or whose class `target` is); not needed when the
            outputs share it, or with `layers`.
        target: a class index: ascend that class's pre-softmax score instead of `layers`.

    Example:
        >>> dream = ki.DeepDream(model, layers=["conv2", "conv3"]).dream(photo, steps=20, seed=0)
        >>> cats = ki.DeepDream(model, target=3).dream(photo, steps=20, seed=0)
    """

    def __init__(self, model, layers=None, output=None, target=None):
        self.model = model
        self.target = None
        if target is not None:
            if layers is not None:
                raise ValueError("DeepDream takes layers= (amplify what they see) or target= (boost a class), not both.")
            self.scorer = Scorer(model, output=output)
            classes = self.scorer.num_classes
            if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or classes is None or not (
                    0 <= target < classes):
                raise ValueError(f"target must be a class index in [0, {classes}) for a classifier; received "
                                 f"{target!r} (model output shape {self.scorer.output_shape}).")
            self.target, self._sites, self.layers, self._engines = int(target), [], [], {}
            return
        self.scorer = inner_scorer(model, output)
        if layers is None:
            sites = [self._default_site(model, output)]
        else:
            sites = [self.scorer.site(name) for name in ([layers] if isinstance(layers, str) else layers)]
        if not sites:
            raise ValueError("layers is empty; name at least one layer, or pass None for the default.")
        self._sites = sites
        self.layers = [s.path for s in sites]
        self._engines = {}

    def _default_site(self, model, output):
        if output is not None or len(output_names(model) or ()) < 2:
            return graph.last_spatial_site(model, output=self.scorer.output_index or 0)
        # Several outputs: their common last feature map, or ask which one.
        sites = [graph.last_spatial_site(model, output=i) for i in range(len(model.outputs))]
        if len({s.path for s in sites}) > 1:
            raise ValueError(
                f"Model {model.name!r} has {len(sites)} outputs {output_names(model)} whose last feature maps "
                f"differ ({[s.path for s in sites]}); pass output= (a name or an index) or layers=."
            )
        return sites[0]

    def _runnable(self, sizes, channels):
        """The octave sizes the dreamed layers can run on (smallest first): sizes below the
        smallest that runs are dropped with one warning (a pooling stage needs a few pixels);
        if not even the photo's own size runs, a one-line ValueError."""
        known = self.__dict__.setdefault("_runs_on", {})  # (size, channels) -> None or why not
        for k, size in enumerate(sizes):
            key = (tuple(size), channels)
            if key not in known:
                # Traced, not run: shape inference refuses a size the layers cannot take (an eager
                # run may not), and tracing computes nothing. Once per size and explainer.
                trace = tf.function(self._objective)
                try:
                    trace.get_concrete_function(tf.TensorSpec((1,) + key[0] + (channels,), tf.float32))
                    known[key] = None
                except Exception as exc:  # noqa: BLE001 - Keras and TensorFlow raise many types for a too-small input
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    known[key] = lines[-1][:160] if lines else type(exc).__name__  # tf.function puts the cause last
            if known[key] is not None:
                reason = known[key]
                continue
            if k:
                warnings.warn(
                    f"DeepDream: layers {self.layers} cannot run on images smaller than about {size[0]}x{size[1]}, "
                    f"so the {k} smallest of {len(sizes)} octaves are skipped (pass fewer octaves or a smaller "
                    "octave_scale to silence this).", stacklevel=3)
            return sizes[k:]
        if self.target is not None:
            fixed = tuple(self.scorer.input_shape[1:3]) if self.scorer.input_shape else (None, None)
            need = "inputs of a fixed size" if None in fixed else f"{fixed[0]}x{fixed[1]} inputs"
            raise ValueError(
                f"DeepDream: the model cannot run on a {sizes[-1][0]}x{sizes[-1][1]} image ({reason}); a class target "
                f"runs the whole model, whose head needs {need}: give the photo at that size "
                "with octaves=1 and tile_size at least its side, or dream on layers (layers=[...])."
            )
        raise ValueError(
            f"DeepDream: layers {self.layers} cannot run on a {sizes[-1][0]}x{sizes[-1][1]} image ({reason}); "
            "give a larger image, or dream on earlier layers (layers=[...])."
        )

    def _objective(self, x):
        if self.target is not None:
            return self.scorer(x)[:, self.target]
        _, features = graph.run(self.model, x, self._sites, stop_after_taps=True)
        return tf.add_n([tf.reduce_mean(tf.square(tf.cast(f, tf.float32)), axis=list(range(1, len(f.shape))))
                         for f in features])

    def _tiled_gradient(self, tile_size):
        def gradient(x, state, view, objective):
            with tf.GradientTape() as outer:
                outer.watch(x)
                seen = view(x, state)  # the rolled image: tiles move every step, so no seams stay put
            rows, cols = _tiles(x.shape[1], tile_size), _tiles(x.shape[2], tile_size)
            grad_rows, total, done = [], 0.0, []
            for r0, r1 in rows:
                grad_cols = []
                for c0, c1 in cols:
                    # One tile after the other: the next starts when the previous gradient exists.
                    with tf.control_dependencies(done[-1:]):
                        tile = tf.identity(seen[:, r0:r1, c0:c1])
                    with tf.GradientTape() as tape:
                        tape.watch(tile)
                        score = objective(tile)
                    tile_grad = tape.gradient(score, tile)
                    done = [tile_grad]
                    total += score * float((r1 - r0) * (c1 - c0))
                    grad_cols.append(tile_grad)
                grad_rows.append(tf.concat(grad_cols, axis=2))
            grad_seen = tf.concat(grad_rows, axis=1)
            scores = total / float(x.shape[1] * x.shape[2])
            return scores, outer.gradient(seen, x, output_gradients=grad_seen)

        return gradient

    def _engine(self, value_range, step_size, tile_size, jitter):
        key = (value_range, step_size, tile_size, jitter)
        if key not in self._engines:
            self._engines[key] = GradientAscent(
                self._objective, [Jitter(jitter)], value_range, step_size, gradient=self._tiled_gradient(tile_size)
            )
        return self._engines[key]

    @property
    def trace_count(self):
        return sum(engine.trace_count for engine in self._engines.values())

    def dream(self, image, octaves=4, octave_scale=1.4, steps=10, step_size=0.01, seed=0, tile_size=512,
              jitter=32, value_range=None):
        """The dreamed image, of the input's shape ((H, W, C) or (N, H, W, C)) and range.

        Args:
            image: the photo, as the model takes it (already preprocessed).
            octaves: number of scales.
            octave_scale: ratio between successive scales (1.3-1.4 is usual).
            steps: gradient steps per octave.
            step_size: mean pixel change per step as a fraction of the value range.
            seed: seeds the jitter, so a run is repeatable.
            tile_size: largest tile side the gradient is computed on.
            jitter: largest roll in pixels (each direction) per step.
            value_range: (low, high) the pixels stay in; None: the photo's own min and max.
        """
        # Any size (the octaves resize it), but the model's channels: one line, not a traceback.
        shape = self.scorer.input_shape
        x, single = check_image_model_input(image, shape, what="the photo")
        if not (isinstance(octaves, (int, np.integer)) and not isinstance(octaves, bool) and octaves >= 1
                and isinstance(octave_scale, (int, float, np.integer, np.floating)) and octave_scale > 1):
            raise ValueError(f"octaves must be an int >= 1 and octave_scale > 1; received {octaves!r}, {octave_scale!r}.")
        if not isinstance(tile_size, (int, np.integer)) or isinstance(tile_size, bool) or tile_size < 1:
            raise ValueError(f"tile_size must be an int >= 1 (pixels); received {tile_size!r}.")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int; received {seed!r}.")
        value_range = resolve_value_range(x if value_range is None else value_range)
        engine = self._engine(value_range, float(step_size), int(tile_size), int(jitter))
        height, width = x.shape[1:3]
        sizes = [(max(1, round(height / octave_scale ** k)), max(1, round(width / octave_scale ** k)))
                 for k in reversed(range(octaves))]
        sizes = self._runnable(sizes, x.shape[-1])
        base = [tf.image.resize(x, size, method="bilinear").numpy() for size in sizes]
        detail = np.zeros_like(base[0])
        self.history = []
        for octave, (size, start) in enumerate(zip(sizes, base)):  # smallest first
            if detail.shape[1:3] != tuple(size):
                detail = tf.image.resize(detail, size, method="bilinear").numpy()
            result = engine.run(start + detail, steps, seed=seed * 1000 + octave)
            self.history.append(result.history)
            detail = result.images - start
        out = result.images
        return out[0] if single else out
