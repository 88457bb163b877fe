"""ExplanationLogger: explanations of a fixed set of images in TensorBoard every few epochs."""

import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_interp import images as render
from keras_interp import metrics, summary
from keras_interp.explainers.base import Explainer, check_images
from keras_interp.explainers.cam import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from keras_interp.explainers.gradients import IntegratedGradients, Saliency, SmoothGrad
from keras_interp.explainers.occlusion import Occlusion

__all__ = ["ExplanationLogger", "METHODS"]


def _cam_or_gradcam(model, seed):
    try:
        return CAM(model)
    except ValueError:
        warnings.warn(
            f"ExplanationLogger: model {model.name!r} has no GAP -> Dense head, so 'cam' uses Grad-CAM.",
            stacklevel=3,
        )
        return GradCAM(model)


# Method name -> factory(model, seed) -> explainer. A new method is one more entry.
METHODS = {
    "saliency": lambda model, seed: Saliency(model),
    "smoothgrad": lambda model, seed: SmoothGrad(model, seed=seed),
    "integrated_gradients": lambda model, seed: IntegratedGradients(model),
    "occlusion": lambda model, seed: Occlusion(model),
    "cam": _cam_or_gradcam,
    "gradcam": lambda model, seed: GradCAM(model),
    "gradcam++": lambda model, seed: GradCAMPlusPlus(model),
    "layercam": lambda model, seed: LayerCAM(model),
    "scorecam": lambda model, seed: ScoreCAM(model, max_channels=32),
}


class ExplanationLogger(keras.callbacks.Callback):
    """Explain a fixed set of images every `freq` epochs and write the results for TensorBoard.

    Explanations use the current weights in inference mode. Training is never changed: nothing
    is drawn from the global random state (SmoothGrad's noise is seeded and stateless), the
    model is not modified or recompiled, and BatchNorm statistics and the optimizer are not
    touched. It never breaks training either: a method that fails logs one warning and is
    skipped for the rest of the run. What is written is documented in keras_interp.summary.

    Args:
        images: (N, H, W, C) images, as the model takes them.
        log_dir: TensorBoard log folder; summaries go to `<log_dir>/explanations`, so it can be
            shared with keras.callbacks.TensorBoard.
        methods: names from METHODS ("saliency", "smoothgrad", "integrated_gradients",
            "occlusion", "cam", "gradcam", "gradcam++", "layercam", "scorecam") or explainer
            instances. "cam" falls back to Grad-CAM when the model has no GAP head.
        freq: log every `freq` epochs.
        labels: optional (N,) class per image: the class explained and scored. Without it, the
            predicted class is explained.
        masks: optional (N, H, W) object masks: adds pointing game and energy scalars.
        class_names: optional names shown next to the class indices.
        overlays: also write overlay grids to TensorBoard's Images dashboard.
        seed: seed of SmoothGrad's noise.

    Example:
        >>> logger = ki.ExplanationLogger(x_val[:8], "logs", methods=("saliency", "cam"))
        >>> model.fit(x, y, epochs=10, callbacks=[logger])
    """

    def __init__(self, images, log_dir, methods=("saliency", "cam"), freq=1, labels=None, masks=None,
                 class_names=None, overlays=True, seed=0):
        super().__init__()
        self.images = check_images(images)
        n = len(self.images)
        if not isinstance(freq, (int, np.integer)) or isinstance(freq, bool) or freq < 1:
            raise ValueError(f"freq must be an int >= 1 (log every freq epochs); received {freq!r}.")
        if isinstance(methods, (str, Explainer)):
            methods = (methods,)
        if not methods:
            raise ValueError("methods is empty; name at least one, e.g. methods=('saliency',).")
        self._requested = []
        for method in methods:
            if isinstance(method, Explainer):
                self._requested.append((type(method).__name__.lower(), method))
            elif method in METHODS:
                self._requested.append((method, None))
            else:
                raise ValueError(
                    f"Unknown method {method!r}; choose from {sorted(METHODS)} or pass an explainer instance."
                )
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per image; received {self.labels.shape}.")
        self.masks = None if masks is None else np.asarray(masks, dtype=bool)
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise ValueError(
                f"masks must have shape {self.images.shape[:3]} (one per image); received {self.masks.shape}."
            )
        self.log_dir = os.fspath(log_dir)
        self.freq = int(freq)
        self.class_names = list(class_names) if class_names is not None else None
        self.overlays = overlays
        self.seed = int(seed)
        self._explainers = None
        self._writer = None
        self._inputs_written = False

    def _build(self):
        check_images(self.images, tuple(self.model.inputs[0].shape) if getattr(self.model, "inputs", None) else None)
        self._explainers = {}
        for name, instance in self._requested:
            self._explainers[name] = instance if instance is not None else METHODS[name](self.model, self.seed)
        self._scorer = next(iter(self._explainers.values())).scorer
        classes = self._scorer.num_classes
        if self.labels is not None and classes is not None and not np.all((self.labels >= 0) & (self.labels < classes)):
            raise ValueError(
                f"labels must be class indices in [0, {classes - 1}] for this model; received {self.labels.tolist()}."
            )

    def on_train_begin(self, logs=None):
        # Model-dependent checks (image size, CAM head) run here, before the first batch.
        self._build()

    def _writer_default(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, summary.SUBDIR))
        return self._writer.as_default()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.freq:
            return
        if self._explainers is None:
            self._build()
        self.log(epoch)

    def log(self, step):
        """Explain the images with the current weights and write everything at `step`."""
        logits = self._scorer(self.images)
        probabilities = self._scorer.probabilities(logits).numpy()
        predicted = probabilities.argmax(axis=1) if probabilities.ndim == 2 else np.zeros(len(self.images), int)
        explained = predicted if self.labels is None else self.labels
        confidence = probabilities[np.arange(len(self.images)), explained] if probabilities.ndim == 2 else probabilities[:, 0]
        with self._writer_default():
            if not self._inputs_written:
                for i, image in enumerate(self.images):
                    label = None if self.labels is None else self.labels[i]
                    summary.write_input(i, image, step, label=label, class_names=self.class_names)
                self._inputs_written = True
            for i in range(len(self.images)):
                summary.write_prediction(i, predicted[i], confidence[i], explained[i], step)
            tf.summary.scalar(f"{summary.SCALAR_PREFIX}confidence", float(np.mean(confidence)), step=step)
            for name in list(self._explainers):
                try:
                    maps = self._explainers[name].explain(self.images, target=explained)
                except Exception as exc:  # noqa: BLE001 - a failing method must not stop training
                    warnings.warn(
                        f"ExplanationLogger: method {name!r} failed and is skipped for the rest of "
                        f"training: {type(exc).__name__}: {exc}",
                        stacklevel=2,
                    )
                    del self._explainers[name]
                    continue
                self._write_method(name, maps, step)
        self._writer.flush()

    def _write_method(self, name, maps, step):
        for i, map_ in enumerate(maps):
            summary.write_map(name, i, map_, step)
        if self.masks is not None:
            tf.summary.scalar(f"{summary.SCALAR_PREFIX}{name}/pointing_game", metrics.pointing_game(maps, self.masks), step=step)
            tf.summary.scalar(f"{summary.SCALAR_PREFIX}{name}/energy", metrics.energy_pointing_game(maps, self.masks), step=step)
        if self.overlays:
            rows = [[image, render.overlay(image, map_)] for image, map_ in zip(self.images, maps)]
            grid = render.grid(rows)
            tf.summary.image(f"{summary.SCALAR_PREFIX}{name}", grid[None], step=step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
