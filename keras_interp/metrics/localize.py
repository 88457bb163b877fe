"""Boxes and masks from maps: weakly supervised localization (Zhou et al. 2016; Simonyan et al.
2014, section 3.2), and how well they match ground truth (box and mask IoU, the ILSVRC criterion).
"""

import dataclasses

import cv2
import numpy as np

from keras_interp.images import to_uint8
from keras_interp.metrics._maps import pixel_maps

__all__ = ["Localization", "localize", "box_iou", "mask_iou", "localization_accuracy", "mask_boxes"]

METHODS = ("threshold", "grabcut")
# Simonyan et al. 3.2: foreground seeds above the map's 95% quantile, background below its 30%.
GRABCUT_QUANTILES = (0.30, 0.95)


@dataclasses.dataclass
class Localization:
    """What `localize` found: `masks` (B, H, W) bool, one region per image (empty where the map
    marks nothing), and `boxes` (B, 4) int (top, left, bottom, right), bottom and right exclusive;
    an empty region has the empty box (0, 0, 0, 0)."""

    masks: np.ndarray
    boxes: np.ndarray


def _largest_component(region):
    """The largest 8-connected component of a bool (H, W) region (empty stays empty)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(region, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def mask_boxes(masks):
    """(B, 4) int boxes (top, left, bottom, right; exclusive) around each mask's True pixels, the
    empty box (0, 0, 0, 0) for an empty mask."""
    masks = np.asarray(masks, bool)
    boxes = np.zeros((len(masks), 4), np.int64)
    for b, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size:
            boxes[b] = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
    return boxes


def _threshold(map_, threshold):
    peak = float(map_.max())
    if not np.isfinite(peak) or peak <= 0 or peak <= float(map_.min()):
        return np.zeros(map_.shape, bool)  # nothing marked: a constant or non-positive map
    return _largest_component(map_ >= threshold * peak)


def _grabcut(map_, image, iterations):
    low, high = np.quantile(map_, GRABCUT_QUANTILES)
    if not high > low:
        return np.zeros(map_.shape, bool)
    seeds = np.full(map_.shape, cv2.GC_PR_BGD, np.uint8)
    seeds[map_ <= low] = cv2.GC_BGD
    seeds[map_ >= high] = cv2.GC_FGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    picture = np.ascontiguousarray(to_uint8(image)[..., ::-1])  # OpenCV's BGR order
    cv2.grabCut(picture, seeds, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK)
    return _largest_component((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD))


def localize(maps, images=None, method="threshold", threshold=0.2, iterations=5):
    """Object masks and boxes from maps (B, h, w), one region per image.

    "threshold" (the CAM paper's rule): the largest 8-connected region of pixels at or above
    `threshold` times the map's maximum. "grabcut" (Simonyan et al. 2014, 3.2): OpenCV's GrabCut
    on the image, seeded with the map's pixels above its 95% quantile as foreground and below its
    30% quantile as background (the rest left to GrabCut, `iterations` rounds), keeping the
    largest region it calls foreground. Maps of another size than the images are resized to them
    bilinearly (with images); without images, the regions are at the maps' size.

    Returns a Localization (.masks (B, H, W) bool, .boxes (B, 4): top, left, bottom, right,
    exclusive).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}.")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a fraction of the map's maximum in [0, 1]; received {threshold!r}.")
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"Expected maps of shape (batch, height, width); received shape {maps.shape}.")
    if images is not None:
        images = np.asarray(images)
        if images.ndim not in (3, 4) or len(images) != len(maps):
            raise ValueError(
                f"images must be (B, H, W) or (B, H, W, C) with one image per map ({len(maps)}); received shape "
                f"{images.shape}."
            )
        maps = pixel_maps(maps, images.shape[1:3], len(maps), "images")
    elif method == "grabcut":
        raise ValueError('method="grabcut" segments the images: pass images=.')
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values.")
    if method == "threshold":
        masks = np.stack([_threshold(m, threshold) for m in maps])
    else:
        masks = np.stack([_grabcut(m, image, iterations) for m, image in zip(maps, images)])
    return Localization(masks=masks, boxes=mask_boxes(masks))


def box_iou(boxes, truth):
    """(B,) intersection over union of boxes (B, 4) and true boxes (B, 4), each (top, left, bottom,
    right) with bottom and right exclusive; 0 where both are empty."""
    a, b = np.asarray(boxes, np.float64), np.asarray(truth, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"Expected two (B, 4) arrays of boxes; received shapes {a.shape} and {b.shape}.")
    height = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    width = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = height * width
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_iou(masks, truth):
    """(B,) intersection over union of bool masks (B, H, W) and true masks; 0 where both are empty."""
    a, b = np.asarray(masks, bool), np.asarray(truth, bool)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"Expected two (B, H, W) masks of one shape; received {a.shape} and {b.shape}.")
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def localization_accuracy(boxes, truth, at=0.5):
    """The share of images whose box overlaps the true box with IoU >= `at` (ILSVRC's criterion)."""
    return float((box_iou(boxes, truth) >= at).mean())
