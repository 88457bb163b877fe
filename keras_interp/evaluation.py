"""One report to choose a method for a model: the chosen methods run on the user's images and
judged side by side.

Faithfulness: deletion and insertion areas (Petsiuk et al.), ROAD in both orders (Rong et al.),
MuFidelity (Bhatt et al.); on request infidelity and max-sensitivity (Yeh et al.). Given object
masks, localization too: pointing game and energy, and the box and mask the CAM paper's rule
draws from each map (`ki.localize`) against the mask's, with the ILSVRC accuracy (box IoU >= 0.5).
`keras-interp evaluate` writes the same report from a folder of image files.
"""

import csv
import dataclasses
import os
import time

import numpy as np

from keras_interp import images as render
from keras_interp import metrics
from keras_interp.logger.methods import METHODS
from keras_interp.checks import check_inputs
from keras_interp.metrics._maps import single_images
from keras_interp.metrics.faithfulness import _area, _area_over
from keras_interp.metrics.road import PERCENTAGES
from keras_interp.targets import Scorer, top_classes

__all__ = ["evaluate", "Evaluator", "Evaluation", "MEASURES", "DEFAULT_MEASURES", "LOCALIZATION"]

# Each measure: (what it is, which way is better).
MEASURES = {
    "deletion": ("deletion AUC, blurred substrate", "lower"),
    "insertion": ("insertion AUC, blurred substrate", "higher"),
    "road_morf": ("ROAD, most relevant removed first", "lower"),
    "road_lerf": ("ROAD, least relevant removed first", "higher"),
    "mu_fidelity": ("MuFidelity (logit)", "higher"),
    "infidelity": ("infidelity (logit), optimally scaled", "lower"),
    "max_sensitivity": ("max-sensitivity, radius 0.02", "lower"),
    "pointing_game": ("pointing game", "higher"),
    "energy": ("energy in the mask", "higher"),
    "box_iou": ("box IoU, CAM rule (20% of max)", "higher"),
    "mask_iou": ("mask IoU, CAM rule (20% of max)", "higher"),
    "localization_accuracy": ("box IoU >= 0.5", "higher"),
}
DEFAULT_MEASURES = ("deletion", "insertion", "road_morf", "road_lerf", "mu_fidelity")
LOCALIZATION = ("pointing_game", "energy", "box_iou", "mask_iou", "localization_accuracy")
CURVES = ("deletion", "insertion", "road_morf", "road_lerf")


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` found: per method, each measure per image and its mean, the mean curves,
    and the seconds its explanations took.

    Attributes:
        methods: the method names, in the order asked.
        measures: the measures computed, in table order.
        per_image: {method: {measure: (N,) float64}}.
        curves: {method: {"deletion" | "insertion" | "road_morf" | "road_lerf": (xs, mean ys)}}.
        seconds: {method: seconds spent explaining}.
    """

    methods: list
    measures: list
    per_image: dict
    curves: dict
    seconds: dict

    def mean(self, method, measure):
        values = self.per_image[method][measure]
        return float(np.mean(values)) if len(values) else float("nan")

    def rows(self, digits=9):
        """The table as rows of strings: a header, then one row per method, each mean with `digits`
        significant digits (infidelity's 1e-5 stays readable)."""
        header = ["method", "images"] + [f"{m} ({MEASURES[m][1]} is better)" for m in self.measures] + ["seconds"]
        rows = [header]
        for method in self.methods:
            count = len(next(iter(self.per_image[method].values()), ()))
            rows.append([method, str(count)] + [f"{self.mean(method, m):.{digits}g}" for m in self.measures]
                        + [f"{self.seconds[method]:.2f}"])
        return rows

    def markdown(self):
        rows = self.rows(digits=4)
        best = {m: self._best(m) for m in self.measures}
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
        for method, row in zip(self.methods, rows[1:]):
            cells = [f"**{cell}**" if 2 <= i < 2 + len(self.measures) and best[self.measures[i - 2]] == method
                     else cell for i, cell in enumerate(row)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n\nBold: the best method on each measure (none where the best is tied).\n"

    def _best(self, measure):
        means = {m: self.mean(m, measure) for m in self.methods}
        means = {m: v for m, v in means.items() if np.isfinite(v)}
        if len(means) < 2:
            return None
        pick = min if MEASURES[measure][1] == "lower" else max
        best = pick(means, key=means.get)
        if sum(v == means[best] for v in means.values()) > 1:
            return None  # a tie: no method is best
        return best

    def figure(self):
        """RGB uint8: the mean deletion, insertion and ROAD curves per method side by side, and
        the localization measures where masks were given."""
        panels = []
        titles = {"deletion": "deletion (lower is better)", "insertion": "insertion (higher is better)",
                  "road_morf": "ROAD MoRF (lower is better)", "road_lerf": "ROAD LeRF (higher is better)"}
        for kind in CURVES:
            series = {m: self.curves[m][kind] for m in self.methods if kind in self.curves[m]}
            if series:
                panels.append(render.chart(series, titles[kind], "fraction of pixels removed" if kind != "insertion"
                                           else "fraction of pixels inserted", "probability", ylim=(0.0, 1.0)))
        located = [m for m in _LOCATED if m in self.measures]
        if located:
            short = {"box_iou": "box IoU", "mask_iou": "mask IoU", "localization_accuracy": "accuracy"}
            groups = {m: {short[k]: self.mean(m, k) for k in located} for m in self.methods}
            panels.append(render.bars(groups, "localization (higher is better)", "IoU / accuracy"))
        if not panels:
            raise ValueError("Nothing to draw: the evaluation has no curves and no localization measures.")
        if len(panels) % 2:
            panels.append(np.full_like(panels[0], 255))
        return np.concatenate([np.concatenate(panels[i:i + 2], axis=1) for i in range(0, len(panels), 2)], axis=0)

    def save(self, folder):
        """Write evaluation.csv, evaluation.md and evaluation.png into `folder` (created if needed);
        returns their paths."""
        os.makedirs(folder, exist_ok=True)
        paths = {kind: os.path.join(folder, f"evaluation.{kind}") for kind in ("csv", "md", "png")}
        with open(paths["csv"], "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(self.rows())
        with open(paths["md"], "w", encoding="utf-8") as handle:
            handle.write(self.markdown())
        try:
            render.save(paths["png"], self.figure())
        except ValueError:  # no curves and no localization: no figure, and none left from an earlier run
            if os.path.exists(paths["png"]):
                os.remove(paths["png"])
            del paths["png"]
        return paths


def _measures(measures, masks_given):
    if measures is not None and (isinstance(measures, str) or not len(measures)):
        raise ValueError(f"measures must be a sequence of names from {', '.join(MEASURES)} (or None for the "
                         f"default); received {measures!r}.")
    chosen = list(DEFAULT_MEASURES if measures is None else measures)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        raise ValueError(f"Unknown measure {unknown[0]!r}; choose from {', '.join(MEASURES)}.")
    located = [m for m in chosen if m in LOCALIZATION]
    if located and not masks_given:
        raise ValueError(f"{located[0]!r} compares maps with object masks: pass masks (--masks on the command line).")
    if measures is None and masks_given:
        chosen += list(LOCALIZATION)
    return list(dict.fromkeys(chosen))


class Evaluator:
    """The report built batch by batch (`add`), for inputs that do not fit in memory at once;
    `evaluate` is one `add` and `result`.

    Args: as for `evaluate` (less inputs, target and masks, which `add` takes per batch).
    """

    def __init__(self, model, methods=("saliency", "gradcam", "occlusion"), measures=None, masks=False, steps=16,
                 seed=0, output=None, batch_size=64):
        if isinstance(methods, str):
            methods = (methods,)
        if not methods:
            raise ValueError(f"methods is empty; give one or more of {', '.join(sorted(METHODS))}.")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown method {unknown[0]!r}; choose from {', '.join(sorted(METHODS))}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
        self._scorer = Scorer(model, output=output)
        if self._scorer.input_shapes is not None and len(self._scorer.input_shapes) > 1:
            raise ValueError(f"evaluate judges maps of single-input image models; this model takes "
                             f"{len(self._scorer.input_shapes)} inputs (use the metrics in ki.metrics directly).")
        self.model, self.methods, self.steps = model, list(dict.fromkeys(methods)), steps
        self.seed, self.output, self.batch_size = seed, output, batch_size
        self.measures = _measures(measures, masks)
        self._explainers, self._count = {}, 0
        self._per_image = {m: {k: [] for k in self.measures} for m in self.methods}
        self._curve_sums = {m: {} for m in self.methods}  # {measure: [curves, their sum]}
        self._seconds = dict.fromkeys(self.methods, 0.0)

    def _explainer(self, method, images):
        if method not in self._explainers:  # methods that need reference examples take the first batch
            self._explainers[method] = METHODS[method](self.model, self.seed, output=self.output, baselines=images)
        return self._explainers[method]

    def add(self, images, target=None, masks=None):
        """Explain and judge one batch: `images` (B, H, W, C) as the model takes them, `target`
        as for the explainers (None: each image's top class), `masks` (B, H, W) bool objects."""
        images = self._images(images)
        return self._judge(images, target, self._masks(masks, images.shape[:3], self._count))

    def _images(self, images):
        return single_images(check_inputs(images, self._scorer.input_shapes, self._scorer.input_names)[0],
                             "evaluate needs")

    def _masks(self, masks, shape, first):
        """The masks as bool (B, H, W), checked: one per image, each marking something (`first`:
        the evaluation's index of the first image, for the message)."""
        if masks is None:
            if any(m in LOCALIZATION for m in self.measures):
                raise ValueError("This evaluation compares maps with object masks: pass masks= with every batch.")
            return None
        masks = np.asarray(masks).astype(bool)
        if masks.shape != shape:
            raise ValueError(f"masks must have shape {shape} (one per image); received {masks.shape}.")
        empty = np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1))
        if empty.size:
            raise ValueError(f"{empty.size} masks are empty (first: image {first + int(empty[0])} of the "
                             "evaluation); every mask must mark the object.")
        return masks

    def _judge(self, images, target, masks):
        """`add` on checked images and masks."""
        return self.merge(self._part(images, target, masks))

    def part(self, images, target=None, masks=None):
        """Explain and judge one batch as `add` does, but return what it found instead of adding
        it: plain lists and numbers (JSON-able, exact), for `merge` here or in another process.
        Merging a job's parts in the batches' order gives the Evaluation adding them would."""
        images = self._images(images)
        return self._part(images, target, self._masks(masks, images.shape[:3], self._count))

    def _part(self, images, target, masks):
        if target is None:  # the class explained is the class judged: fixed once, from the clean image
            target = top_classes(self._scorer, images, self.batch_size)
        part = {"count": len(images), "per_image": {}, "curves": {}, "seconds": {}}
        for method in self.methods:
            explainer = self._explainer(method, images)
            start = time.perf_counter()
            maps = np.asarray(explainer.explain(images, target=target))
            part["seconds"][method] = time.perf_counter() - start
            located, values_of, curves_of = None, {}, {}
            for measure in self.measures:
                if measure in _LOCATED:  # one localization serves its three measures
                    located = located or _located(maps, masks)
                    values, curve = located[measure], None
                else:
                    values, curve = self._measure(measure, explainer, images, maps, target, masks)
                values_of[measure] = np.asarray(values, np.float64).reshape(-1).tolist()
                if curve is not None:
                    total = curve.sum(axis=0)
                    curves_of[measure] = [len(curve), total.tolist(), str(total.dtype)]
            part["per_image"][method], part["curves"][method] = values_of, curves_of
        return part

    def merge(self, part):
        """Add a batch's `part` (from `part`, possibly made by another process); returns self."""
        for method in self.methods:
            self._seconds[method] += part["seconds"][method]
            for measure in self.measures:
                self._per_image[method][measure].append(np.asarray(part["per_image"][method][measure], np.float64))
            for measure, (count, total, dtype) in part["curves"][method].items():
                sums = self._curve_sums[method].setdefault(measure, [0, 0.0])
                sums[0], sums[1] = sums[0] + count, sums[1] + np.asarray(total, dtype)
        self._count += part["count"]
        return self

    def _measure(self, measure, explainer, x, maps, target, masks):
        """(per-image values, curves or None) of one measure that is not a localization's."""
        kw = dict(target=target, output=self.output, batch_size=self.batch_size)
        if measure in ("deletion", "insertion"):
            fn = metrics.deletion_curve if measure == "deletion" else metrics.insertion_curve
            curves = fn(self.model, x, maps, steps=self.steps, **kw)
            return _area(curves), curves
        if measure in ("road_morf", "road_lerf"):
            curves = metrics.road_curve(self.model, x, maps, order=measure[5:], seed=self.seed, **kw)
            return _area_over(curves, np.asarray(PERCENTAGES)), curves
        if measure == "mu_fidelity":
            return metrics.mu_fidelity(self.model, x, maps, seed=self.seed, **kw), None
        if measure == "infidelity":
            return metrics.infidelity(self.model, x, maps, seed=self.seed, **kw), None
        if measure == "max_sensitivity":
            return metrics.max_sensitivity(explainer, x, target=target, seed=self.seed), None  # the explainer's own batches
        if measure == "pointing_game":
            return metrics.pointing_hits(maps, masks), None
        return metrics.energy_in_mask(maps, masks), None

    def result(self):
        """The Evaluation of every batch added so far."""
        per_image = {m: {k: np.concatenate(v) if v else np.zeros(0) for k, v in values.items()}
                     for m, values in self._per_image.items()}
        curves = {method: {kind: (np.asarray(PERCENTAGES) if kind.startswith("road") else np.linspace(0.0, 1.0, len(sums)),
                                  sums / count) for kind, (count, sums) in kinds.items()}
                  for method, kinds in self._curve_sums.items()}
        return Evaluation(self.methods, self.measures, per_image, curves, dict(self._seconds))


_LOCATED = ("box_iou", "mask_iou", "localization_accuracy")


def _located(maps, masks):
    """The localization measures of the CAM paper's rule: {box_iou, mask_iou, localization_accuracy}."""
    found = metrics.localize(maps)
    iou = metrics.box_iou(found.boxes, metrics.mask_boxes(masks))
    return {"box_iou": iou, "mask_iou": metrics.mask_iou(found.masks, masks), "localization_accuracy": iou >= 0.5}


def evaluate(model, inputs, methods=("saliency", "gradcam", "occlusion"), target=None, masks=None, measures=None,
             steps=16, seed=0, output=None, batch_size=64, out=None):
    """Run `methods` on `inputs` and judge their maps; returns an Evaluation (`.markdown()`,
    `.figure()`, `.save(folder)`), written to `out` when given.

    Args:
        model: a Keras image classifier.
        inputs: (N, H, W, C) images, as the model takes them.
        methods: registry names (keras_interp.registry.METHODS), with the logger's settings.
        target: None (each image's top class on the clean image, explained and judged), an int,
            or one class per image (e.g. the true labels).
        masks: optional (N, H, W) object masks: adds pointing game, energy, box and mask IoU and
            localization accuracy.
        measures: names from MEASURES; None: deletion, insertion, ROAD both orders and
            MuFidelity, plus the localization measures when masks are given.
        steps: points of the deletion and insertion curves after the first.
        seed: seed of the random methods and measures.
        output: the output explained (name or index), for a model with several.
        batch_size: images explained and judged together.
        out: a folder for evaluation.csv, .md and .png.

    Example:
        >>> report = ki.evaluate(model, x_val[:64], methods=("saliency", "gradcam", "rise"), target=y_val[:64])
        >>> print(report.markdown())
    """
    evaluator = Evaluator(model, methods, measures, masks is not None, steps, seed, output, batch_size)
    x = evaluator._images(inputs)  # checked once, then judged in batches
    masks = evaluator._masks(masks, x.shape[:3], 0)
    labels = None if target is None or callable(target) or np.ndim(target) == 0 else np.asarray(target)
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"target has {len(labels)} classes for {len(x)} images; give one per image.")
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        evaluator._judge(x[part], target if labels is None else labels[part], None if masks is None else masks[part])
    report = evaluator.result()
    if out is not None:
        report.save(out)
    return report
