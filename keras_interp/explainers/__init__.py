"""Explainers: one class per method, each built once per model and called many times."""

from keras_interp.explainers.base import Explainer
from keras_interp.explainers.cam import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from keras_interp.explainers.deconv import Deconvnet, GuidedBackprop
from keras_interp.explainers.gradients import (
    GradientExplainer,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from keras_interp.explainers.occlusion import Occlusion

__all__ = [
    "CAM",
    "Deconvnet",
    "GuidedBackprop",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "ScoreCAM",
    "GradientExplainer",
    "IntegratedGradients",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
]
