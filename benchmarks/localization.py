"""Boxes and masks from maps on the built-in shapes: which rule localizes best?

    python benchmarks/localization.py [--images 64] [--model saved.keras] [--methods cam gradcam ...]

Trains the reference CNN (seed 0) unless --model gives a saved one, explains held-out shapes for
their true class and, per method and rule, prints the mean mask IoU and box IoU against the
shapes' object masks and the localization accuracy (box IoU >= 0.5, ILSVRC's criterion):

- threshold 0.2 (the CAM paper's rule), and the same at 0.3 and 0.5 of the map's maximum;
- grabcut: GrabCut on the image seeded by the map's 95% / 30% quantiles (Simonyan et al. 3.2);
- grabcut on the threshold region: GrabCut seeded with foreground at >= 0.5 of the maximum and
  background below 0.2 of it (the CAM rule's region refined by the image's colours).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402
from keras_interp.callbacks import METHODS  # noqa: E402
from keras_interp.images import to_uint8  # noqa: E402
from keras_interp.metrics import box_iou, mask_boxes, mask_iou  # noqa: E402
from keras_interp.metrics._maps import pixel_maps  # noqa: E402


def grabcut_on_threshold(maps, images, core=0.5, outside=0.2):
    masks = []
    for m, image in zip(maps, images):
        peak = float(m.max())
        seeds = np.full(m.shape, cv2.GC_PR_BGD, np.uint8)
        if peak > 0:
            seeds[m >= outside * peak] = cv2.GC_PR_FGD
            seeds[m < outside * peak] = cv2.GC_BGD
            seeds[m >= core * peak] = cv2.GC_FGD
        if peak <= 0 or not (seeds == cv2.GC_BGD).any():
            masks.append(np.zeros(m.shape, bool))
            continue
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(np.ascontiguousarray(to_uint8(image)[..., ::-1]), seeds, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
        region = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
        masks.append(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else region)
    return np.stack(masks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--model")
    parser.add_argument("--methods", nargs="*", default=["cam", "gradcam", "saliency", "occlusion", "sobol"])
    args = parser.parse_args()
    model = ki.load_model(args.model) if args.model else ki.models.train_on_shapes(seed=0, verbose=0)[0]
    data = ki.datasets.shapes(args.images, seed=1234)
    truth_boxes = mask_boxes(data.masks)
    print(f"{args.images} held-out shapes; mask IoU, box IoU (means) and accuracy at box IoU >= 0.5")
    print(f"{'method':12s} {'rule':24s} {'mask IoU':>9s} {'box IoU':>8s} {'acc@0.5':>8s}")
    for name in args.methods:
        maps = METHODS[name](model, 0, baselines=data.images).explain(data.images, target=data.labels)
        maps = pixel_maps(maps, data.images.shape[1:3], len(maps), "images")
        rules = {f"threshold {t}": (lambda t=t: ki.localize(maps, threshold=t).masks) for t in (0.2, 0.3, 0.5)}
        rules["grabcut (quantiles)"] = lambda: ki.localize(maps, data.images, method="grabcut").masks
        rules["grabcut on threshold"] = lambda: grabcut_on_threshold(maps, data.images)
        for rule, run in rules.items():
            masks = run()
            boxes = mask_boxes(masks)
            iou = box_iou(boxes, truth_boxes)
            print(f"{name:12s} {rule:24s} {mask_iou(masks, data.masks).mean():9.3f} {iou.mean():8.3f} "
                  f"{(iou >= 0.5).mean():8.3f}", flush=True)


if __name__ == "__main__":
    main()
