"""The methods, declared once: their names, classes and traits.

The logger (keras_interp.callbacks.METHODS), the command line (`keras-interp explain --method`,
`--layer`), the package's exports (`ki.GradCAM`) and the docs read this table. A new method is
its class plus one entry here. Nothing is imported until a class is asked for (`load()`), so
`keras-interp --help` and `import keras_interp` stay instant.

How a viewer should read a method's maps (`signed`, `display_clip`) is declared on its class,
where the maps are made.
"""

import dataclasses
import importlib

__all__ = ["Method", "METHODS", "method"]


@dataclasses.dataclass(frozen=True)
class Method:
    """One method.

    Attributes:
        name: the logger's and the CLI's name ("gradcam++").
        cls: its class's name, exported as `ki.<cls>`.
        module: the module that defines the class.
        title: its display name.
        layer: takes `layer=` (a feature layer for the CAM family; a layer whose channel is
            projected for deconvnet and guided backprop, see `channel`).
        channel: with a layer, `target` is a channel of it, not a class.
        drawn: draws its maps on one input of a model with several (`input=`).
        seeded: takes `seed=` (random draws).
        settings: the constructor arguments the logger and the CLI use.
        logged_signed: the logger logs the signed channel sum of the attribution (Integrated
            Gradients: the sum still adds up to the score's change) instead of `explain`'s map.
        fallback: the method the logger and the CLI use instead where the class refuses the
            model (CAM without a GAP head: Grad-CAM), logged as "<name>_as_<fallback>".
        fallback_note: why, in a few words, for the column's label and the warning.
        needs_baselines: takes a data set of reference examples (`baselines`, its second
            argument); the logger and the CLI give it their own inputs.
        attention: reads the attention of `keras.layers.MultiHeadAttention` layers, so it
            applies to transformers only (a ViT), not to a CNN.
    """

    name: str
    cls: str
    module: str
    title: str
    layer: bool = False
    channel: bool = False
    drawn: bool = False
    seeded: bool = False
    settings: tuple = ()
    logged_signed: bool = False
    fallback: str = None
    fallback_note: str = ""
    needs_baselines: bool = False
    attention: bool = False

    def load(self):
        """The class (importing its module)."""
        return getattr(importlib.import_module(self.module), self.cls)


_GRADIENTS = "keras_interp.explainers.gradients"
_CAM = "keras_interp.explainers.cam"
_DECONV = "keras_interp.explainers.deconv"
_SENSITIVITY = "keras_interp.explainers.sensitivity"
_SURROGATE = "keras_interp.explainers.surrogate"

METHODS = {m.name: m for m in (
    Method("saliency", "Saliency", _GRADIENTS, "Saliency"),
    Method("gradient_input", "GradientInput", _GRADIENTS, "Gradient x Input"),
    Method("smoothgrad", "SmoothGrad", _GRADIENTS, "SmoothGrad", seeded=True),
    Method("squaregrad", "SquareGrad", _GRADIENTS, "SquareGrad", seeded=True),
    Method("vargrad", "VarGrad", _GRADIENTS, "VarGrad", seeded=True),
    Method("integrated_gradients", "IntegratedGradients", _GRADIENTS, "Integrated Gradients", logged_signed=True),
    Method("expected_gradients", "ExpectedGradients", _GRADIENTS, "Expected Gradients", seeded=True,
           needs_baselines=True),
    Method("guided_ig", "GuidedIntegratedGradients", "keras_interp.explainers.guided_ig",
           "Guided Integrated Gradients", logged_signed=True),
    Method("blur_ig", "BlurIntegratedGradients", "keras_interp.explainers.blur_ig", "Blur Integrated Gradients",
           logged_signed=True),
    Method("occlusion", "Occlusion", "keras_interp.explainers.occlusion", "Occlusion", drawn=True),
    # Black-box: scores of masked copies only, no gradient. The logger and the CLI draw a quarter
    # to a half of the papers' samples (the classes' defaults), sized for a map every epoch.
    Method("rise", "RISE", "keras_interp.explainers.rise", "RISE", drawn=True, seeded=True,
           settings=(("masks", 1000),)),
    Method("sobol", "SobolAttribution", _SENSITIVITY, "Sobol attribution", drawn=True,
           settings=(("nb_design", 16),)),
    Method("hsic", "HSICAttribution", _SENSITIVITY, "HSIC attribution", drawn=True, settings=(("samples", 500),)),
    Method("lime", "LIME", _SURROGATE, "LIME", drawn=True, seeded=True, settings=(("samples", 500),)),
    Method("kernel_shap", "KernelSHAP", _SURROGATE, "Kernel SHAP", drawn=True, seeded=True,
           settings=(("samples", 500),)),
    Method("cam", "CAM", _CAM, "CAM", drawn=True, fallback="gradcam", fallback_note="no GAP head"),
    Method("gradcam", "GradCAM", _CAM, "Grad-CAM", layer=True, drawn=True),
    Method("gradcam++", "GradCAMPlusPlus", _CAM, "Grad-CAM++", layer=True, drawn=True),
    Method("layercam", "LayerCAM", _CAM, "LayerCAM", layer=True, drawn=True),
    Method("hirescam", "HiResCAM", _CAM, "HiResCAM", layer=True, drawn=True),
    Method("xgradcam", "XGradCAM", _CAM, "XGradCAM", layer=True, drawn=True),
    Method("eigencam", "EigenCAM", _CAM, "Eigen-CAM", layer=True, drawn=True),
    Method("fem", "FEM", _CAM, "FEM", layer=True, drawn=True),
    Method("ablationcam", "AblationCAM", _CAM, "Ablation-CAM", layer=True, drawn=True),
    Method("scorecam", "ScoreCAM", _CAM, "Score-CAM", layer=True, drawn=True, settings=(("max_channels", 32),)),
    # Token models (a Vision Transformer): the attention of its MultiHeadAttention layers.
    Method("attention_rollout", "AttentionRollout", "keras_interp.explainers.rollout", "Attention rollout",
           attention=True),
    Method("gradient_rollout", "GradientAttentionRollout", "keras_interp.explainers.rollout",
           "Gradient-weighted rollout", attention=True),
    Method("deconvnet", "Deconvnet", _DECONV, "Deconvnet", layer=True, channel=True),
    Method("guided_backprop", "GuidedBackprop", _DECONV, "Guided Backprop", layer=True, channel=True),
)}


def method(name):
    """The entry named `name`, or a ValueError listing the names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown method {name!r}; choose from {sorted(METHODS)}.") from None
