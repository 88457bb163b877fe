"""Class-model and feature (channel) visualization by regularized gradient ascent."""

import keras
import numpy as np
import tensorflow as tf

from keras_interp import graph
from keras_interp.targets import Scorer, _pre_activation, inner_scorer
from keras_interp.visualize.engine import GradientAscent, check_steps, resolve_value_range, yosinski_defaults
from keras_interp.visualize.parameterization import (
    Crop, FourierImage, MaCoImage, Noise, ParameterizedAscent, RandomScale, check_degrees, check_redirect_steps,
    robustness,
)

__all__ = ["ClassModelVisualization", "FeatureVisualization", "RECIPES", "fourier_recipe"]


class _FourierRecipe:
    def __init__(self, degrees):
        # Checked now, not at the first visualize; the transforms (TF constants) are built per
        # shape, so making RECIPES at import builds nothing.
        self.degrees = check_degrees(degrees)

    def __call__(self, shape):
        return FourierImage(decorrelate=shape[-1] == 3), robustness(shape[0], self.degrees), 0.05

    def __repr__(self):
        return f"fourier_recipe({self.degrees})"


def fourier_recipe(degrees=10):
    """Lucid's recipe (see RECIPES["fourier"]) with rotations drawn from -degrees to degrees:
    10, Lucid's, for upright photos; 180, any rotation, for data with no up (the built-in
    shapes, cells, aerial images), where a class's evidence should not depend on the angle.

    Returns:
        A recipe: a callable shape -> (parameterization, transforms, Adam's learning rate), to
        pass as `recipe=` to ClassModelVisualization or FeatureVisualization.
    """
    return _FourierRecipe(degrees)


def _maco(shape):
    # MaCo's random crops with noise (Fel et al. 2023), sized to the image.
    side = shape[0]
    return MaCoImage(), [Crop(max(1, side // 8)), RandomScale([0.9, 0.95, 1.0, 1.05, 1.1]), Noise(0.02)], 1.0


# Recipe name -> None (pixels, the engine's regularizers) or shape -> (parameterization,
# transforms, Adam's learning rate). `recipe=` also takes such a callable itself.
RECIPES = {"yosinski": None, "fourier": fourier_recipe(10), "maco": _maco}
# The Adam recipes' first steps with the redirected ReLU gradient (Lucid's 16), where
# redirect_relu_steps=None; see keras_interp.visualize.redirect.
REDIRECT_RELU_STEPS = 16


def _image_shape(model, size):
    """(H, W, C) of the images to optimize: the model's input, or `size` where it is open or
    unknown ((H, W, C) for a subclassed model, which declares no input)."""
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if size is not None:
        size = tuple(size)
        if len(size) not in (2, 3) or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in size):
            raise ValueError(f"size must be (height, width) or (height, width, channels) of ints >= 1; received {size!r}.")
        if shape is None and len(size) == 2:
            raise ValueError(f"Model {model.name!r} declares no input shape (a subclassed model): pass "
                             "size=(height, width, channels).")
        shape = tuple(int(n) for n in size) + (() if len(size) == 3 else (shape[2],))
    if shape is None:
        raise ValueError(f"Model {model.name!r} declares no input shape (a subclassed model): pass "
                         "size=(height, width, channels).")
    if len(shape) != 3:
        raise ValueError(f"Gradient ascent needs an image model with (H, W, C) inputs; the model takes {shape}.")
    if None in shape:
        raise ValueError(f"The model's input shape {shape} has open sizes; pass size=(height, width).")
    return shape


def _indices(values, count, what, plural, owner):
    """A non-empty list of ints in [0, count) (no bools), or a clear error."""
    values = [values] if isinstance(values, (int, np.integer)) and not isinstance(values, bool) else values
    try:
        chosen = list(values)
    except TypeError:
        chosen = None
    if not chosen or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in chosen):
        raise TypeError(f"{plural} must be an int or a non-empty sequence of ints; received {values!r}.")
    bad = [int(v) for v in chosen if not 0 <= v < count]
    if bad:
        raise ValueError(f"{what} {bad[0]} is out of range: {owner} has {count} {plural}, so {plural} lie in "
                         f"[0, {count - 1}].")
    return np.asarray(chosen, np.int32)


class _Visualization:
    """Shared by the generators: the engine settings, the start image, the run."""

    default_recipe = "yosinski"

    def __init__(self, model, value_range=None, regularizers=None, step_size=None, size=None, recipe=None,
                 redirect_relu_steps=None):
        if recipe is None:  # regularizers or a step size are the pixel recipe's: asking for them picks it
            pixel = regularizers is not None or step_size is not None
            recipe = "yosinski" if pixel else self.default_recipe
        if not callable(recipe) and not (isinstance(recipe, str) and recipe in RECIPES):
            raise ValueError(f"recipe must be one of {sorted(RECIPES)} or a callable shape -> (parameterization, "
                             f"transforms, learning rate) such as fourier_recipe(180); received {recipe!r}.")
        if recipe != "yosinski" and regularizers is not None:
            raise ValueError(f"regularizers are the pixel recipe's (recipe='yosinski'); recipe {recipe!r} has its "
                             "own transforms.")
        if recipe != "yosinski" and step_size is not None:
            raise ValueError(f"step_size is the pixel recipe's (recipe='yosinski'); recipe {recipe!r} steps by "
                             "Adam's learning rate.")
        redirect = None if redirect_relu_steps is None else check_redirect_steps(redirect_relu_steps)
        if recipe == "yosinski" and redirect:
            raise ValueError("redirect_relu_steps belongs to the Adam recipes ('fourier', 'maco'); the pixel recipe "
                             "'yosinski' has no redirected ReLU.")
        self.redirect_relu_steps = (0 if recipe == "yosinski" else REDIRECT_RELU_STEPS) if redirect is None else redirect
        self.model = model
        self.value_range = resolve_value_range(value_range)
        self.regularizers = regularizers
        self.step_size = 0.03 if step_size is None else step_size
        self.recipe = recipe
        self.image_shape = _image_shape(model, size)
        self._engines = {}

    def _engine(self, steps):
        check_steps(steps)  # before yosinski_defaults divides by it
        if self.recipe != "yosinski":
            if "adam" not in self._engines:
                recipe = self.recipe if callable(self.recipe) else RECIPES[self.recipe]
                made = recipe(self.image_shape)
                if not (isinstance(made, tuple) and len(made) == 3):
                    raise ValueError(f"recipe {self.recipe!r} must return (parameterization, transforms, learning "
                                     f"rate) for a shape; it returned {made!r}.")
                parameterization, transforms, rate = made
                self._engines["adam"] = ParameterizedAscent(self._objective, parameterization, transforms,
                                                            self.value_range, rate, self.redirect_relu_steps)
            return self._engines["adam"]
        # One engine (and so one compiled step) per step count: the default regularizers scale with it.
        key = steps if self.regularizers is None else None
        if key not in self._engines:
            regularizers = yosinski_defaults(steps) if self.regularizers is None else self.regularizers
            self._engines[key] = GradientAscent(self._objective, regularizers, self.value_range, self.step_size,
                                                keep_best=True)
        return self._engines[key]

    @property
    def trace_count(self):
        return sum(engine.trace_count for engine in self._engines.values())

    def _ascend(self, count, steps, seed, verbose):
        engine = self._engine(steps)
        if isinstance(engine, ParameterizedAscent):
            result = engine.run(count, self.image_shape, steps, seed=seed, verbose=verbose)
            self.history = result.history
            return result.images
        init = engine.initial((count,) + self.image_shape, seed)
        result = engine.run(init, steps, seed=seed, verbose=verbose)
        self.history = result.history
        return result.images


class ClassModelVisualization(_Visualization):
    """Class-model images (Simonyan et al., 2014; Yosinski et al., 2015).

    Each image maximizes one class's pre-softmax score (the logit, never the probability: the
    softmax can rise by lowering the other classes). By default with Lucid's recipe ("fourier",
    Olah et al. 2017): the class models a second model recognises most often (docs/inside.md,
    benchmarks/bench_visualize.py --evidence). With recipe="yosinski" (picked as well by
    passing `regularizers` or `step_size`), pixels with Yosinski et al.'s most used
    regularizers (L2 decay 1e-4, Gaussian blur of radius 1.0 every 4 steps over 1000 steps), the
    decay scaled to `steps` (see `yosinski_defaults`), each image returned being the iterate
    whose step saw the highest objective (the blur makes the objective saw-toothed). Pixels
    stay in `value_range`. All classes asked for are optimized together in one batch.
    `self.history` holds the objective per step (steps, N).

    Args:
        model: single-input image classifier.
        value_range: (low, high) of valid pixels, or example images to take it from; None: [0, 1].
        regularizers: the pixel recipe's regularizers (a list of callables, see
            keras_interp.visualize); None: Yosinski's, above.
        step_size: the pixel recipe's mean pixel change per step as a fraction of the range
            (None: 0.03).
        size: (H, W) for models whose input size is open.
        output: the output whose classes are drawn (name or index), for a model with several.
        recipe: None (the default: "fourier", or "yosinski" where `regularizers` or `step_size`
            is given), "yosinski" (pixels, the regularizers above), "fourier" (Lucid: a 1/f-scaled
            spectrum with colour decorrelation behind a sigmoid, seen through random pad,
            jitter, scale and rotation, Adam 0.05) or "maco" (MaCo: the spectrum's phase only,
            random crops and noise, Adam 1.0); see keras_interp.visualize.parameterization.
            Or a callable shape -> (parameterization, transforms, learning rate), such as
            `fourier_recipe(180)`: Lucid's recipe rotating the images all the way round, for
            data with no up (on the built-in shapes, the recipe whose class models a second
            model recognises; docs/inside.md).
        redirect_relu_steps: with "fourier" or "maco", the first steps in which every ReLU of
            the model passes Lucid's redirected gradient, so units that are off for an image
            still get the gradient that turns them on (keras_interp.visualize.redirect); None:
            the recipe's default (REDIRECT_RELU_STEPS), 0: the plain gradient throughout. The
            model itself is not changed.

    Example:
        >>> images = ki.ClassModelVisualization(model).visualize([0, 1, 2], steps=200, seed=0)
    """

    default_recipe = "fourier"

    def __init__(self, model, value_range=None, regularizers=None, step_size=None, size=None, output=None,
                 recipe=None, redirect_relu_steps=None):
        self.scorer = Scorer(model, output=output)
        super().__init__(model, value_range, regularizers, step_size, size, recipe, redirect_relu_steps)
        if self.scorer.output_shape is None:  # a subclassed model: learn its outputs from one call
            self.scorer.check_outputs(np.zeros((1,) + self.image_shape, np.float32))
        if self.scorer.num_classes is None:
            raise ValueError(
                f"ClassModelVisualization needs a classifier with (batch, classes) outputs; the model's "
                f"output has shape {self.scorer.output_shape}."
            )
        self._classes = tf.Variable(tf.zeros([0], tf.int32), shape=[None], trainable=False)

    def _objective(self, x):
        logits = self.scorer(x)
        return tf.gather(logits, self._classes, axis=1, batch_dims=1)

    def visualize(self, classes=None, steps=200, seed=0, verbose=False):
        """Images (N, H, W, C) float32, one per class (None: every class)."""
        count = self.scorer.num_classes
        classes = np.arange(count, dtype=np.int32) if classes is None else _indices(classes, count, "class", "classes", "the model")
        self._classes.assign(classes)
        return self._ascend(len(classes), steps, seed, verbose)


def _activation_input(site):
    """For an activation layer or op (ReLU forms, Activation, Softmax), the site of its input."""
    from keras_interp.layers.deconv_stack import _is_plain_relu

    operation = site.operation
    if _is_plain_relu(operation) or isinstance(operation, (keras.layers.Activation, keras.layers.Softmax)):
        return graph.Cursor.input_of(site).producer()
    return None


def gram_similarity(maps, group):
    """(N,) each image's mean cosine similarity to the other images of its group (`group`
    consecutive images) of the channels' covariance over positions of (N, h, w, C) maps."""
    shape = tf.shape(maps)
    flat = tf.reshape(maps, [shape[0], -1, shape[-1]])
    flat = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    gram = tf.math.l2_normalize(tf.reshape(tf.matmul(flat, flat, transpose_a=True), [shape[0], -1]), axis=1)
    grouped = tf.reshape(gram, [-1, group, tf.shape(gram)[1]])  # (channels, n, C * C)
    similarity = tf.matmul(grouped, grouped, transpose_b=True)  # (channels, n, n)
    others = (tf.reduce_sum(similarity, axis=2) - tf.linalg.diag_part(similarity)) / (group - 1)
    return tf.reshape(others, [-1])


class FeatureVisualization(_Visualization):
    """One image per channel of a layer, by the same gradient ascent as the class models.

    A conv channel's objective is its spatial mean (objective="mean") or the unit at the centre
    of the map (objective="center"); a dense layer's is the unit itself. Where the layer is an
    activation (a ReLU, `Activation`, `Softmax`) or fuses one, the pre-activation is optimized
    (as Lucid does): a channel that is off everywhere after a ReLU would otherwise have zero
    gradient and never move, and a softmax would be raised by lowering the others.

    Args:
        model: single-input image model with a functional graph.
        layer: layer or operation name, "nested/path" included.
        objective: "mean" or "center".
        value_range, regularizers, step_size, size: as for ClassModelVisualization.
        output: accepted for symmetry with the other tools; a channel of `layer` needs no output,
            so a model with several outputs needs none here.
        recipe, redirect_relu_steps: as for ClassModelVisualization, but the default stays
            "yosinski" (the evidence for "fourier" is on class models only); the chosen layer's
            own fused ReLU is already skipped: its pre-activation is optimized.

    Example:
        >>> images = ki.FeatureVisualization(model, "conv2").visualize([0, 5, 7], steps=200)
    """

    def __init__(self, model, layer, objective="mean", value_range=None, regularizers=None, step_size=None,
                 size=None, output=None, recipe=None, redirect_relu_steps=None):
        if objective not in ("mean", "center"):
            raise ValueError(f"objective must be 'mean' or 'center'; received {objective!r}.")
        self.scorer = inner_scorer(model, output)
        super().__init__(model, value_range, regularizers, step_size, size, recipe, redirect_relu_steps)
        site = self.scorer.site(layer)
        self.layer = site.path
        self.channels = site.shape[-1]
        before = _activation_input(site)
        replace = {}
        operation = site.operation
        fused = getattr(operation, "activation", None)
        if before is not None:
            site = before
        elif fused is not None and fused is not keras.activations.linear and not isinstance(operation, keras.Model):
            replace = {site.nodes: lambda *args, **kwargs: _pre_activation(operation, args[0])}
        self._site, self._replace, self.objective = site, replace, objective
        self._channels = tf.Variable(tf.zeros([0], tf.int32), shape=[None], trainable=False)
        self._diversity = 1

    def _objective(self, x):
        _, (features,) = graph.run(self.model, x, [self._site], self._replace, stop_after_taps=True)
        features = tf.cast(features, tf.float32)
        maps = features
        if len(features.shape) == 4 and self.objective == "center":
            features = features[:, features.shape[1] // 2, features.shape[2] // 2]
        elif len(features.shape) > 2:
            features = tf.reduce_mean(features, axis=list(range(1, len(features.shape) - 1)))
        scores = tf.gather(features, self._channels, axis=1, batch_dims=1)
        if self._diversity > 1 and len(maps.shape) == 4:
            # In the channel's own units: its group's mean |score| (held constant) times the weight.
            group = tf.reshape(tf.abs(scores), [-1, self._diversity])
            size = tf.repeat(tf.stop_gradient(tf.reduce_mean(group, axis=1)), self._diversity) + 1e-3
            scores = scores - self.diversity_weight * size * gram_similarity(maps, self._diversity)
        return scores

    diversity_weight = 1.0

    def visualize(self, channels=None, steps=200, seed=0, verbose=False, diversity=1):
        """Images (N, H, W, C) float32, one per channel (None: every channel).

        With diversity=n, n images per channel (N = n x channels, each channel's n images
        together) that differ: each image's objective loses its mean similarity to the other
        images of its channel (Lucid's diversity term, Olah et al. 2017: the cosine similarity
        of the layer's Gram matrices, here of its channels' covariance over positions),
        weighted by `diversity_weight` times the mean size of the channel's objectives, so a user sees a
        channel's range rather than one image of it."""
        if channels is None:
            chosen = np.arange(self.channels, dtype=np.int32)
        else:
            chosen = _indices(channels, self.channels, "channel", "channels", f"layer {self.layer!r}")
        if isinstance(diversity, bool) or not isinstance(diversity, (int, np.integer)) or diversity < 1:
            raise ValueError(f"diversity must be an int >= 1 (images per channel); received {diversity!r}.")
        if diversity != self._diversity:
            self._diversity = int(diversity)
            self._engines.clear()  # the objective reads the group size when it traces
        self._channels.assign(np.repeat(chosen, self._diversity))
        return self._ascend(len(chosen) * self._diversity, steps, seed, verbose)
