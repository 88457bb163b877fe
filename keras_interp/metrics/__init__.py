"""Explanation quality: does a map point at the object, is it faithful to the model, does it
depend on the model at all?

- Localization (`localization`): pointing game and energy against object masks.
- Boxes and masks from maps (`localize`, also `ki.localize`): the CAM paper's threshold rule and
  GrabCut seeded by the map, and box and mask IoU against ground truth.
- Faithfulness (`faithfulness`): deletion and insertion curves and their areas (Petsiuk et
  al., RISE, 2018).
- Remove And Debias (`road`): deletion with noisy linear imputation (Rong et al., 2022).
- Fidelity (`fidelity`): MuFidelity (Bhatt et al., 2020), infidelity and max-sensitivity (Yeh
  et al., 2019).
- Sanity (`randomization`): the cascading model-randomization check (Adebayo et al., 2018).

Maps come from any explainer as (B, h, w) arrays; maps smaller than the images are resized to
them bilinearly with aligned pixel centres.
"""

from keras_interp.metrics.faithfulness import (
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
)
from keras_interp.metrics.fidelity import infidelity, max_sensitivity, mu_fidelity
from keras_interp.metrics.localization import energy_in_mask, energy_pointing_game, pointing_game, pointing_hits
from keras_interp.metrics.localize import box_iou, localization_accuracy, localize, mask_boxes, mask_iou
from keras_interp.metrics.randomization import randomization_check, spearman
from keras_interp.metrics.road import road, road_curve

__all__ = [
    "pointing_game",
    "pointing_hits",
    "energy_pointing_game",
    "energy_in_mask",
    "deletion_auc",
    "insertion_auc",
    "deletion_curve",
    "insertion_curve",
    "road",
    "road_curve",
    "mu_fidelity",
    "infidelity",
    "max_sensitivity",
    "randomization_check",
    "spearman",
    "localize",
    "box_iou",
    "mask_iou",
    "mask_boxes",
    "localization_accuracy",
]
