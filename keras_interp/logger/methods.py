"""The logger's methods and pictures: explainers built from the registry's entries (with their
settings, seed and fallback), and the kinds of pictures logged besides the maps."""

import warnings

import numpy as np

from keras_interp import registry
from keras_interp.explainers.gradients import sum_over_channels
from keras_interp.logger.inside import Features, TopPatches
from keras_interp.search.dataset import DatasetSearch
from keras_interp.visualize.class_model import ClassModelVisualization, FeatureVisualization, _indices

__all__ = ["METHODS", "PICTURES", "PICTURE_INSTANCES", "CAM_FALLBACK", "make_explainer", "fallback_name",
           "ClassModels"]


_SIGNED = {}


def _signed_class(cls):
    """`cls` logging the signed channel sum of its attribution (registry's logged_signed): for
    Integrated Gradients the sum still adds up to the score's change from the baseline, so the
    dashboard shows the evidence for the class and against it (`explain` gives |that sum|). One
    class per explainer class, so its compiled functions are shared."""
    if cls not in _SIGNED:
        _SIGNED[cls] = type(f"Signed{cls.__name__}", (cls,), {
            "reduce": staticmethod(sum_over_channels), "signed": True, "__module__": __name__,
            "__doc__": f"{cls.__name__} whose map is the signed channel sum of its attribution."})
    return _SIGNED[cls]


def make_explainer(entry, model, seed, output=None, input=None, baselines=None, **extra):
    """The explainer a registry entry stands for, with its settings: `output` is the output
    explained; `input` the input maps are drawn on (for entries that draw on one); `seed` for the
    seeded ones; `baselines` the reference examples of the ones that need them (the logger and
    the CLI give their own inputs); `extra` (e.g. layer=) added to its settings."""
    cls = entry.load()
    cls = _signed_class(cls) if entry.logged_signed else cls
    if entry.needs_baselines:
        if baselines is None:
            raise ValueError(f"{entry.title} ({entry.name!r}) needs baselines: reference examples to compare with.")
        return cls(model, baselines, **dict(entry.settings, output=output, seed=seed, **extra))
    options = dict(entry.settings, output=output, **extra)
    if entry.drawn:
        options["input"] = input
    if entry.seeded:
        options["seed"] = seed
    return cls(model, **options)


def _factory(entry):
    """factory(model, seed, output=None, input=None) -> explainer for a registry entry. Where the
    class refuses the model and the entry names a fallback (CAM without a GAP head), the
    fallback's explainer, with one warning; it is logged as "<name>_as_<fallback>"."""

    def make(model, seed, output=None, input=None, baselines=None):
        try:
            return make_explainer(entry, model, seed, output=output, input=input, baselines=baselines)
        except ValueError:
            if entry.fallback is None:
                raise
            instead = registry.METHODS[entry.fallback]
            warnings.warn(
                f"ExplanationLogger: model {model.name!r} does not fit {entry.title} ({entry.fallback_note}), so "
                f"{entry.name!r} uses {instead.title} (logged as {fallback_name(entry)!r}).",
                stacklevel=3,
            )
            return make_explainer(instead, model, seed, output=output, input=input)

    return make


def fallback_name(entry):
    return f"{entry.name}_as_{entry.fallback}"


# Method name -> factory(model, seed, output=None, input=None, baselines=None) -> explainer, from the registry
# (keras_interp.registry): a new method is its class plus one entry there.
METHODS = {name: _factory(entry) for name, entry in registry.METHODS.items()}
CAM_FALLBACK = fallback_name(registry.METHODS["cam"])


class ClassModels:
    """The logger's "class_model" pictures: one class-model image per class, from the current
    weights, with the same seed every epoch (so what changes is the model, not the start).

    Classes: `classes` if given, else one per class name, else every class, at most `cap`.
    Pixels stay in the logged images' value range; pictures are scaled from it to [0, 1]. The
    default recipe (Lucid's), without its redirected ReLU steps; pass a ClassModelVisualization
    for other settings.
    """

    kind = "class_model"
    steps = 100
    cap = 16

    def __init__(self, model, images, classes=None, class_names=None, generator=None):
        # The logged images give the value range (constant ones cannot: then [0, 1]).
        value_range = images if float(np.ptp(images)) > 0 else None
        # Without the redirected ReLU steps: on trained CNNs they never fired (the recipe bench's
        # images were the same to the last digit), and they cost every run a second trace.
        self.generator = generator or ClassModelVisualization(model, value_range=value_range, redirect_relu_steps=0)
        count = self.generator.scorer.num_classes
        if classes is not None:
            chosen = _indices(classes, count, "class", "classes", "the model").tolist()
        else:
            available = min(count, len(class_names)) if class_names else count
            chosen = list(range(min(available, self.cap)))
            if available > self.cap:
                warnings.warn(
                    f"ExplanationLogger: 'class_model' shows the first {self.cap} of {available} classes; "
                    "pass classes=[...] to choose them.",
                    stacklevel=4,
                )
        self.classes = chosen
        self.labels = [class_names[c] if class_names and c < len(class_names) else str(c) for c in chosen]

    def pictures(self, seed):
        """(classes, pictures (N, H, W, C) in [0, 1], labels)."""
        images = self.generator.visualize(self.classes, steps=self.steps, seed=seed)
        low, high = self.generator.value_range
        return self.classes, (images - low) / (high - low), self.labels


# Picture kind -> factory(model, images, classes, class_names, instance): kinds logged as pictures
# (one per class or channel) rather than as maps of the logged images. A new kind is one entry.
PICTURES = {
    "class_model": lambda model, images, classes, names, instance: ClassModels(
        model, images, classes, names, generator=instance),
    # The inside view (keras_interp.logger.inside): chosen channels of a layer, every logged epoch.
    "features": lambda model, images, classes, names, instance: Features(model, images, generator=instance),
    "top_patches": lambda model, images, classes, names, instance: TopPatches(model, images, search=instance),
}
PICTURE_INSTANCES = {ClassModelVisualization: "class_model", FeatureVisualization: "features",
                     DatasetSearch: "top_patches"}
