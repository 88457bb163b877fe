"""The logger's guarded writer: everything ExplanationLogger writes goes through here, and nothing
written can stop training (a failure is skipped with one warning per kind of write)."""

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_interp import images as render
from keras_interp import summary

__all__ = ["GuardedWriter"]


class GuardedWriter:
    """Summaries for one log folder (`<log_dir>/explanations`, made on the first write).

    `warn_once(key, message)` warns once per key ("ExplanationLogger: ..."); `guarded(what, fn)`
    runs fn and turns a failure into that warning. Each write method is guarded itself.

    It also keeps a record of what it wrote (images and labels, methods and their column settings,
    quality measures, pictures) and `index(step)` writes it as the run's index record, so the
    dashboard opens a run without listing its images x methods tags.
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None
        self._warned = set()
        # What this writer wrote so far: inputs {index: label}, methods {name: map metadata},
        # quality {name: fields}, pictures {kind: {index: label}}.
        self._inputs, self._class_names, self._methods, self._quality, self._pictures = {}, [], {}, {}, {}
        self._complete = True

    def as_default(self):
        if self._writer is None:
            folder = os.path.join(self.log_dir, summary.SUBDIR)
            # Event files already there (an earlier or older logger, another logger sharing the
            # folder) hold tags this writer's index does not know: its records say so, and the
            # dashboard lists such a run tag by tag instead of trusting the index.
            self._complete = not (tf.io.gfile.isdir(folder) and any(
                name.startswith("events.out.tfevents") for name in tf.io.gfile.listdir(folder)))
            self._writer = tf.summary.create_file_writer(folder)
        return self._writer.as_default()

    def warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"ExplanationLogger: {message}", stacklevel=4)

    def guarded(self, what, fn, *args):
        """fn(*args), or None with one warning per `what` if it raises: never break training."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - the callback must not stop training
            self.warn_once(what, f"{what} failed and is skipped: {type(exc).__name__}: {exc}")
            return None

    def flush(self):
        if self._writer is not None:
            self.guarded("flushing the summaries", self._writer.flush)

    def inputs(self, pictures, labels, class_names, step):
        def write():
            for i, picture in enumerate(pictures):
                label = None if labels is None else int(labels[i])
                summary.write_input(i, picture, step, label=label, class_names=class_names)
                self._inputs[i] = label
                self._class_names = list(class_names or [])

        self.guarded("writing the input images", write)

    def predictions(self, predicted, p_predicted, explained, p_explained, step):
        def write():
            for i in range(len(predicted)):
                summary.write_prediction(i, predicted[i], p_predicted[i], explained[i], p_explained[i], step)
            confidence = float(np.mean(p_explained))
            if np.isfinite(confidence):
                tf.summary.scalar(f"{summary.SCALAR_PREFIX}confidence", confidence, step=step)

        self.guarded("predictions", write)
        # The same values in one tensor: the dashboard reads a step of every image with one read.
        self.guarded("the predictions of all images", lambda: summary.write_predictions(
            range(len(predicted)), predicted, p_predicted, explained, p_explained, step))

    def maps(self, name, maps, step, label=None, signed=None, clip=None):
        def write():
            for i, map_ in enumerate(maps):
                summary.write_map(name, i, render.flat_map(map_), step, label=label, signed=signed, clip=clip)
                # Recorded once one map is written: the run has the method's column from then on.
                self._methods.setdefault(name, {"label": str(name) if label is None else str(label),
                                                "signed": None if signed is None else bool(signed),
                                                "clip": None if clip is None else [float(c) for c in clip]})

        self.guarded(f"writing the {name!r} maps", write)

    def quality(self, name, per_image, step):
        """Each measure's mean as a scalar (a non-finite one skipped with a warning), and the
        per-image values for the dashboard."""
        for metric, values in per_image.items():
            value = float(np.mean(values))
            if np.isfinite(value):
                self.guarded(f"the {name!r} {metric} scalar", lambda: tf.summary.scalar(
                    f"{summary.SCALAR_PREFIX}{name}/{metric}", value, step=step))
            else:
                self.warn_once(f"{name} {metric} non-finite", (
                    f"the {name!r} {metric} scalar is NaN or infinite at epoch {step + 1} (has training "
                    "diverged?); those epochs are not logged for it."
                ))
        if per_image:
            def write():
                summary.write_quality(name, per_image, step)
                self._quality.setdefault(name, list(per_image))

            self.guarded(f"writing the {name!r} quality per image", write)

    def overlays(self, name, pictures, images, maps, step):
        def write():
            rows = [[picture, render.render(image, map_)] for picture, image, map_ in zip(pictures, images, maps)]
            tf.summary.image(f"{summary.SCALAR_PREFIX}{name}", render.grid(rows)[None], step=step)

        self.guarded(f"the {name!r} overlay grid", write)

    def pictures(self, kind, indices, pictures, labels, step, grid=True):
        def write():
            for index, picture, label in zip(indices, pictures, labels):
                summary.write_picture(kind, index, picture, step, label=label)
                self._pictures.setdefault(kind, {}).setdefault(int(index), str(index) if label is None else str(label))

        self.guarded(f"writing the {kind!r} pictures", write)
        if grid:
            self.guarded(f"the {kind!r} grid", lambda: tf.summary.image(
                f"{summary.SCALAR_PREFIX}{kind}", render.grid([list(pictures)], col_labels=labels)[None], step=step))

    def index(self, step):
        """The run's index record at `step`: everything this writer wrote so far (summary.index_content)."""
        if not (self._inputs or self._methods or self._pictures):
            return
        self.guarded("the run's index", lambda: summary.write_index(summary.index_content(
            self._inputs, self._class_names, self._methods, self._quality, self._pictures,
            complete=self._complete), step))
