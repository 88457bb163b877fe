"""ExplanationLogger: explanations of a fixed set of images in TensorBoard every few epochs."""

import numbers
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_interp import images as render
from keras_interp import metrics, registry
from keras_interp.checks import check_images, check_inputs
from keras_interp.explainers.base import Explainer, choose_input
from keras_interp.explainers.occlusion import Occlusion
from keras_interp.logger.methods import (  # noqa: F401  (re-exported: the logger's method names and glue)
    CAM_FALLBACK, METHODS, PICTURE_INSTANCES, PICTURES, fallback_name, make_explainer,
)
from keras_interp.logger.writer import GuardedWriter
from keras_interp.targets import Scorer
from keras_interp.visualize.class_model import ClassModelVisualization, _indices

__all__ = ["ExplanationLogger", "METHODS"]


# The logger's default: maps from saliency and CAM, and class-model pictures (DESIGN's contract).
DEFAULT_METHODS = ("saliency", "cam", "class_model")
DEFAULT_BUDGET = 0.1  # with freq=None: the share of training time the logger may take
FAITHFULNESS_STEPS = 16  # deletion / insertion curve points per logged epoch with faithfulness=True


def is_chief(strategy):
    """Whether this process writes: always, except on non-chief workers of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None or task_type == "chief":
        return True
    if task_type == "worker":
        try:
            has_chief = "chief" in resolver.cluster_spec().as_dict()
        except Exception:  # noqa: BLE001 - no cluster spec: a single worker
            has_chief = False
        return not has_chief and resolver.task_id == 0
    return False


class ExplanationLogger(keras.callbacks.Callback):
    """Explain a fixed set of images during training and write the results for TensorBoard.

    Which epochs: by default (`freq=None`) the logger keeps its own time within `budget` (10%)
    of the training time. It logs the first epoch of `fit` and the last (fit's `epochs`, or an
    epoch after which a callback listed before the logger set `model.stop_training`, as
    EarlyStopping does). It logs an epoch in between when (1) the training time since its
    latest log is at least one log's cost / `budget` (logs are spread out, not bunched) and
    (2) its time so far, plus this log and the final one, stays within `budget` x the
    training time so far. A log is assumed to cost what the latest one took (the first
    includes tracing, so the estimate starts high). So, as far as logs cost what the latest
    did, the logger's time stays within `budget` x the training time, or within the cost of
    its first and last logs when those alone exceed that (a short run with slow logs). The
    first epoch it skips warns once, with the measured cost per log and per training epoch.
    `freq=k` logs every k-th epoch whatever the cost; `budget=None` logs every epoch. After
    `fit`, `logged_epochs` lists the epoch indices logged (the TensorBoard steps), and
    `logging_time` and `training_time` give the seconds of the latest fit (training time:
    fit's wall time less the logger's own).

    Explanations use the current weights in inference mode. Training is never changed: nothing
    is drawn from the global random state (SmoothGrad's noise is seeded and stateless), the
    model is not modified or recompiled, and BatchNorm statistics and the optimizer are not
    touched. It never breaks training either: bad configurations fail in `on_train_begin`,
    before the first batch; after that everything runs under a guard: a method that fails is
    warned about once and dropped, maps that are not finite (a diverging run) are skipped for
    that epoch with one warning, and a prediction, scalar, picture or write that fails is
    skipped with one warning. Under a multi-worker strategy only the chief writes. What is
    written is documented in keras_interp.summary.

    Args:
        images: (N, H, W, C) images as the model takes them; (N, L, C) signals or
            (N, D, H, W, C) volumes for 1-D and 3-D models (pictures show a signal's curves with
            its map as colour behind them, and 8 depth slices of a volume side by side). For a
            model with several inputs, a dict keyed by input name or a tuple in model order.
        log_dir: TensorBoard log folder; summaries go to `<log_dir>/explanations`, so it can be
            shared with keras.callbacks.TensorBoard.
        methods: method names (keras_interp.registry.METHODS: "saliency", "smoothgrad",
            "integrated_gradients", "occlusion", "cam", "gradcam", "gradcam++", "layercam",
            "scorecam", "deconvnet", "guided_backprop", ...) or explainer instances (two of one
            class are logged as "saliency" and "saliency_2"). "cam" falls back to Grad-CAM when
            the model has no GAP head, logged as "cam_as_gradcam".
            "class_model" (or a ki.ClassModelVisualization instance, for its settings) logs one
            class-model image per class instead of maps: 100 gradient-ascent steps from the
            current weights, same seed every epoch, pixels in the logged images' value range.
            The default is ("saliency", "cam", "class_model"); its class models are left out
            for models without a class axis (segmentation, regression).
        freq: None (default): choose the epochs to keep within `budget` (above); an int k:
            log every k-th epoch (epochs k-1, 2k-1, ... counted from 0), whatever the cost, and
            ignore `budget`.
        budget: with freq=None, the share of training time the logger may take, in (0, 1]
            (default 0.1). Training time is the wall time of `fit` (batches, validation and
            other callbacks) less the logger's own. None: no limit, every epoch is logged.
        labels: optional (N,) class per image: the class explained and scored. Without it, the
            predicted class is explained.
        masks: optional (N, H, W) object masks: adds pointing game and energy scalars.
        faithfulness: True also logs each method's mean deletion and insertion AUC
            (`ki.metrics.deletion_auc` / `insertion_auc`, blurred substrate) and ROAD with the
            most and the least relevant pixels removed first (`ki.metrics.road`, 10%..90%) as
            scalars `explanations/{method}/deletion_auc`, `.../insertion_auc`, `.../road_morf`
            and `.../road_lerf`; an int sets the deletion and insertion curves' steps (True:
            16). Costs (steps + 1) x 2 + 18 forward passes per image and method, and ROAD's
            imputations; with freq=None the budget keeps the total within its share.
        class_names: optional names shown next to the class indices.
        overlays: also write overlay grids to TensorBoard's Images dashboard.
        seed: seed of SmoothGrad's noise.
        target: optional callable `logits -> (N,)` score, for models whose output has no
            class axis (segmentation, regression); it receives the model's outputs before a
            final softmax or sigmoid, as every explainer's callable target does. Replaces
            labels for the explanations.
        classes: the classes "class_model" draws (None: one per class name, else every class;
            at most 16 unless listed here).
        output: the output explained (name or index), for a model with several.
        input: for a model with several inputs, the one whose maps are logged (name or index;
            None: the first signal, image or volume input). Masks, faithfulness and class
            models need a single-input image model.

    Example:
        >>> logger = ki.ExplanationLogger(x_val[:8], "logs", methods=("saliency", "cam"))
        >>> model.fit(x, y, epochs=10, callbacks=[logger])
    """

    _clock = staticmethod(time.perf_counter)  # seconds; tests replace it with a fake clock

    def __init__(self, images, log_dir, methods=DEFAULT_METHODS, freq=None, labels=None, masks=None,
                 class_names=None, overlays=True, seed=0, target=None, classes=None, faithfulness=False,
                 output=None, input=None, budget=DEFAULT_BUDGET):
        super().__init__()
        # Several inputs (a dict or a tuple) are checked against the model in _build; the one
        # drawn is chosen there. A list of arrays of one shape may be either a batch or one
        # array per input: only the model can tell, so the checks that need the count wait.
        self._given = images
        if isinstance(images, list) and len({np.shape(a) for a in images}) > 1:
            images = self._given = tuple(images)  # arrays of different shapes: one per model input
        ambiguous = isinstance(images, list) and len(images) > 1 and all(np.ndim(a) >= 2 for a in images)
        if ambiguous:
            self.images, n = None, None
        elif isinstance(images, (dict, tuple)):
            arrays = list(images.values()) if isinstance(images, dict) else list(images)
            if not arrays:
                raise ValueError("images is empty; pass one array per model input.")
            self.images = None
            n = len(np.asarray(arrays[0]))
        else:
            self.images = check_images(images)
            n = len(self.images)
        self.output, self.input = output, input
        if freq is not None and (not isinstance(freq, (int, np.integer)) or isinstance(freq, bool) or freq < 1):
            raise ValueError(
                f"freq must be an int >= 1 (log every freq epochs) or None (choose the epochs within "
                f"budget); received {freq!r}."
            )
        if budget is not None and (not isinstance(budget, numbers.Real) or isinstance(budget, (bool, np.bool_))
                                   or not 0 < budget <= 1):
            raise ValueError(
                f"budget must be None (no limit) or a share of training time in (0, 1], e.g. 0.1 for "
                f"10%; received {budget!r}."
            )
        # The default's class models are for classifiers; on other models it logs only the maps.
        self._optional_pictures = {"class_model"} if methods is DEFAULT_METHODS else set()
        if isinstance(methods, (str, Explainer, ClassModelVisualization)):
            methods = (methods,)
        if not methods:
            raise ValueError("methods is empty; name at least one, e.g. methods=('saliency',).")
        self._requested, self._pictures_requested = [], {}
        names = []
        for method in methods:
            kind = method if isinstance(method, str) else PICTURE_INSTANCES.get(type(method))
            if kind in PICTURES:
                if kind in self._pictures_requested:
                    raise ValueError(f"Method {kind!r} is listed twice in methods.")
                self._pictures_requested[kind] = None if isinstance(method, str) else method
                continue
            if isinstance(method, Explainer):
                base = type(method).__name__.lower()
                name, k = base, 2
                while name in names:
                    name, k = f"{base}_{k}", k + 1
                self._requested.append((name, method))
            elif isinstance(method, str) and method in METHODS:
                if method in names:
                    raise ValueError(f"Method {method!r} is listed twice in methods.")
                name = method
                self._requested.append((method, None))
            else:
                raise ValueError(
                    f"Unknown method {method!r}; choose from {sorted(METHODS) + sorted(PICTURES)} or pass an "
                    "explainer instance."
                )
            names.append(name)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        if n is not None:
            self._check_labels(n)
        self.masks = None if masks is None else np.asarray(masks, dtype=bool)
        if self.masks is not None and self.images is not None:
            self._check_masks()
        if target is not None and not callable(target):
            raise TypeError(f"target must be None or a callable logits -> (N,) score; received {target!r}.")
        if target is not None and labels is not None:
            raise ValueError("Give labels (classes to explain) or a callable target, not both.")
        if isinstance(faithfulness, (bool, np.bool_)):
            self.faithfulness = FAITHFULNESS_STEPS if faithfulness else 0
        elif isinstance(faithfulness, (int, np.integer)) and faithfulness >= 1:
            self.faithfulness = int(faithfulness)
        else:
            raise ValueError(f"faithfulness must be False, True or a number of steps >= 1; received {faithfulness!r}.")
        self.log_dir = os.fspath(log_dir)
        self.freq = None if freq is None else int(freq)
        self.budget = None if budget is None else float(budget)
        self.logged_epochs = []  # every epoch logged, over every fit
        self.logging_time = self.training_time = 0.0  # seconds, in the current (or last) fit
        self._fit_start = None
        self._last_cost = None  # seconds the latest log took
        self._trained_at_log = 0.0  # training time when the latest log began
        self._logs_this_fit = self._epochs_this_fit = 0
        self.class_names = list(class_names) if class_names is not None else None
        self.overlays = overlays
        self.seed = int(seed)
        self.target = target
        if classes is not None:
            _indices(classes, np.iinfo(np.int32).max, "class", "classes", "the model")  # type checks now; range at build
        self.classes = classes
        self._target = target if target is not None else self.labels  # what every method explains
        self._substrate = None
        self._explainers = None
        self._pictures = {}
        self._labels_of = {}
        self._out = GuardedWriter(self.log_dir)  # every write, guarded
        self._inputs_written = False

    def _check_labels(self, n):
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per image; received {self.labels.shape}.")

    def _check_masks(self):
        if self.images.ndim != 4:
            raise ValueError(
                f"masks (pointing game) need (N, H, W, C) images; the logged inputs have shape {self.images.shape}."
            )
        if self.masks.shape != self.images.shape[:3]:
            raise ValueError(
                f"masks must have shape {self.images.shape[:3]} (one per image); received {self.masks.shape}."
            )

    def _build(self):
        scorer = Scorer(self.model, output=self.output)
        self._inputs, form = check_inputs(self._given, scorer.input_shapes, scorer.input_names)
        self._drawn = choose_input(scorer, self.input)
        self.images = self._inputs[self._drawn] if form is not None else self._inputs
        # The logged inputs as pictures (a signal's curves, a volume's slices), drawn once.
        self._pictures_of_inputs = [render.flat_picture(example) for example in self.images]
        self._check_labels(len(self.images))
        if self.masks is not None:
            self._check_masks()
        single_image = form is None and self.images.ndim == 4
        shapes = [a.shape for a in tf.nest.flatten(self._inputs)]
        if self.faithfulness and not single_image:
            raise ValueError(
                "faithfulness=True needs a single-input image model (deletion and insertion blur "
                f"images); the logged inputs have shapes {shapes}."
            )
        self._explainers = {}
        for name, instance in self._requested:
            explainer = instance if instance is not None else METHODS[name](
                self.model, self.seed, output=self.output, input=self.input, baselines=self._inputs)
            label = None
            entry = registry.METHODS.get(name)
            if instance is None and entry.fallback and not isinstance(explainer, entry.load()):
                instead = registry.METHODS[entry.fallback]
                name, label = fallback_name(entry), f"{instead.title} ({entry.name} fallback: {entry.fallback_note})"
            if isinstance(explainer, Occlusion):  # a patch larger than the input fails now, not at epoch 1
                drawn = tf.nest.flatten(self._inputs)[explainer.input_index]
                explainer.windows(*drawn.shape[1:-1])
            self._explainers[name] = explainer
            self._labels_of[name] = label
        # An explainer's scorer learns a subclassed model's output shape on its first call.
        self._scorer = next(iter(self._explainers.values())).scorer if self._explainers else scorer
        classes = self._scorer.num_classes
        self._pictures = {}
        for kind, instance in self._pictures_requested.items():
            try:
                if not single_image or len(scorer.output_names or ()) > 1:
                    raise ValueError(
                        f"{kind!r} pictures need a single-input, single-output image model; the logged inputs "
                        f"have shapes {shapes}, the outputs are {scorer.output_names}."
                    )
                self._pictures[kind] = PICTURES[kind](self.model, self.images, self.classes, self.class_names, instance)
            except ValueError as exc:
                if kind not in self._optional_pictures:
                    raise
                # Only there by default (a segmentation or subclassed model): log the maps alone.
                self._out.warn_once(kind, f"the default {kind!r} pictures are left out for this model: {exc}")
        if self.labels is not None and classes is not None and not np.all((self.labels >= 0) & (self.labels < classes)):
            raise ValueError(
                f"labels must be class indices in [0, {classes - 1}] for this model; received {self.labels.tolist()}."
            )
        if self.labels is not None and classes is None:
            raise ValueError(
                f"labels need a model with (batch, classes) outputs; this model's output has shape "
                f"{self._scorer.output_shape}. Pass a callable target instead."
            )
        if self.target is None and classes is None and self._scorer.output_shape is not None:
            raise ValueError(
                f"The model's output has shape {self._scorer.output_shape}, not (batch, classes): pass "
                "ExplanationLogger(..., target=callable) mapping the outputs to one score per image."
            )
        channels = self.images.shape[-1]
        if self.images.ndim != 3 and channels not in (1, 3, 4):  # a signal's channels are all drawn
            warnings.warn(
                f"ExplanationLogger: the images have {channels} channels, so pictures show their first "
                "channel in grey.",
                stacklevel=3,
            )
        strategy = getattr(self.model, "distribute_strategy", None) or tf.distribute.get_strategy()
        self._chief = is_chief(strategy)

    def on_train_begin(self, logs=None):
        # The budget is per fit; building the explainers counts as the logger's time.
        start = self._fit_start = self._clock()
        self.logging_time = self.training_time = self._trained_at_log = 0.0
        self._logs_this_fit = self._epochs_this_fit = 0
        # Model-dependent checks (image size, CAM head, labels) run here, before the first batch.
        self._build()
        self.logging_time = self._clock() - start

    def on_epoch_end(self, epoch, logs=None):
        start = self._clock()
        if self._fit_start is None:  # called outside fit: the training time starts now
            self._fit_start = start
        self.training_time = start - self._fit_start - self.logging_time
        self._epochs_this_fit += 1
        if not self._due(epoch):
            return
        if self._explainers is None:
            self._build()
        if self._chief:
            self._out.guarded("logging", self.log, epoch)
            self.logged_epochs.append(int(epoch))
        self._logs_this_fit += 1
        self._trained_at_log = self.training_time
        self._last_cost = self._clock() - start
        self.logging_time += self._last_cost

    def _due(self, epoch):
        """Whether to log this epoch: every freq-th, or the rule of the class docstring."""
        if self.freq is not None:
            return (epoch + 1) % self.freq == 0
        epochs = (self.params or {}).get("epochs")
        last = (epochs is not None and epoch + 1 >= epochs) or bool(getattr(self.model, "stop_training", False))
        if self.budget is None or self._logs_this_fit == 0 or last:
            return True
        cost, allowed = self._last_cost, self.budget * self.training_time
        spread = self.budget * (self.training_time - self._trained_at_log) >= cost
        if spread and self.logging_time + 2 * cost <= allowed:  # this log and the final one fit
            return True
        self._out.warn_once("budget", (
            f"one log takes {self._last_cost:.2f} s and training {self.training_time / self._epochs_this_fit:.2f} s "
            f"an epoch, so to keep within budget={self.budget:g} of the training time it logs the first and last "
            f"epochs and others as the budget allows (epoch {epoch + 1} is not logged; see logger.logged_epochs). "
            "Pass freq=1 to log every epoch whatever the cost, or budget=None (no limit) or a larger budget."
        ))
        return False

    def _predictions(self):
        """(predicted, predicted probability, explained, explained probability), NaN where unknown."""
        n = len(self.images)
        nan = np.full(n, np.nan)
        if self._scorer.num_classes is None:
            return nan, nan, nan, nan
        probabilities = self._scorer.probabilities(self._scorer(self._inputs))
        if probabilities is None:
            return nan, nan, nan, nan
        p = np.asarray(probabilities, dtype=np.float64)
        ok = np.isfinite(p).all(axis=1)
        predicted = np.where(ok, p.argmax(axis=1), np.nan)
        p_predicted = np.where(ok, p.max(axis=1), np.nan)
        if self.labels is None:
            return predicted, p_predicted, predicted, p_predicted
        return predicted, p_predicted, self.labels.astype(np.float64), p[np.arange(n), self.labels]

    def log(self, step):
        """Explain the images with the current weights and write everything at `step`."""
        with self._out.as_default():
            if not self._inputs_written:
                labels = None if self.labels is None else self.labels
                self._out.inputs(self._pictures_of_inputs, labels, self.class_names, step)
                self._inputs_written = True
            self._out.guarded("predictions", lambda: self._out.predictions(*self._predictions(), step))
            for name in list(self._explainers):
                maps = self._produce(self._explainers, name, "method", "maps", step,
                                     lambda: self._drawn_maps(self._explainers[name].explain(self._inputs, target=self._target)))
                if maps is not None:
                    self._log_method(name, maps, step)
            for kind in list(self._pictures):
                produced = self._produce(self._pictures, kind, "pictures", "pictures", step,
                                         lambda: self._pictures[kind].pictures(self.seed))
                if produced is not None:
                    self._out.pictures(kind, *produced, step, grid=self.overlays)
            self._out.index(step)  # last: what this epoch wrote is in it
        self._out.flush()

    def _drawn_maps(self, maps):
        """The maps of the drawn input, from a method that maps every input (a list)."""
        return maps[self._drawn] if isinstance(maps, list) else maps

    def _produce(self, registry, name, what, noun, step, fn):
        """fn()'s result, or None: a failure warns once and drops `name` from `registry` for the
        rest of training; non-finite values (a diverging run) skip this epoch with one warning.
        The values checked are the result, or its second item for (indices, values, labels)."""
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - a failing method must not stop training
            self._out.warn_once(name, (
                f"{what} {name!r} failed and is skipped for the rest of training: {type(exc).__name__}: {exc}"
            ))
            del registry[name]
            return None
        values = result[1] if isinstance(result, tuple) else result
        if not np.isfinite(values).all():
            self._out.warn_once(f"{name} non-finite", (
                f"{what} {name!r} gave NaN or infinite {noun} at epoch {step + 1} (has training diverged?); "
                "those epochs are not logged for it."
            ))
            return None
        return result

    def _log_method(self, name, maps, step):
        """Write a method's maps, its quality measures (per image; the scalar is their mean) and
        overlay grid."""
        explainer = self._explainers.get(name)
        self._out.maps(name, maps, step, label=self._labels_of.get(name), signed=getattr(explainer, "signed", None),
                       clip=getattr(explainer, "display_clip", None))
        measures = []
        if self.masks is not None:
            measures += [("pointing_game", lambda: metrics.pointing_hits(maps, self.masks)),
                         ("energy", lambda: metrics.energy_in_mask(maps, self.masks))]
        if self.faithfulness:
            if self._substrate is None:  # the logged images never change: blur them once, not per method and epoch
                self._substrate = metrics.faithfulness.substrate_images(self.images, "blur")
            measures += [(metric, lambda fn=fn: fn(self.model, self.images, maps, target=self._target,
                                                   steps=self.faithfulness, substrate=self._substrate,
                                                   output=self.output))
                         for metric, fn in (("deletion_auc", metrics.deletion_auc),
                                            ("insertion_auc", metrics.insertion_auc))]
            measures += [(f"road_{order}", lambda order=order: metrics.road(
                self.model, self.images, maps, target=self._target, order=order, seed=self.seed,
                output=self.output)) for order in ("morf", "lerf")]
        per_image = {}
        for metric, compute in measures:
            values = self._out.guarded(f"the {name!r} {metric} scalar", compute)
            if values is not None:
                per_image[metric] = np.asarray(values, dtype=np.float64).reshape(-1)
        self._out.quality(name, per_image, step)
        if self.overlays:
            self._out.overlays(name, self._pictures_of_inputs, self.images, maps, step)

    def on_train_end(self, logs=None):
        self._out.flush()
