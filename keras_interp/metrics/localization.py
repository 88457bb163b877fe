"""Localization: does the map point at the object?

Both measures take maps (B, h, w) from any explainer and boolean object masks (B, H, W);
maps of another size are resized to the masks bilinearly with aligned pixel centres.
"""

import cv2
import numpy as np

from keras_interp.metrics._maps import pixel_maps

__all__ = ["pointing_game", "pointing_hits", "energy_pointing_game", "energy_in_mask"]


def _check(maps, masks):
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"Expected masks of shape (batch, height, width); received shape {masks.shape}.")
    masks = masks.astype(bool)
    empty = np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1))
    if empty.size:
        raise ValueError(
            f"{empty.size} masks are empty (first: index {int(empty[0])}); every mask must mark the "
            "object with at least one True pixel."
        )
    return pixel_maps(maps, masks.shape[1:], len(masks), "masks"), masks


def pointing_hits(maps, masks, tolerance=0):
    """Per example: True when the map's maximum lies in the mask, or within `tolerance` pixels
    of it (Euclidean distance to the nearest mask pixel).

    Zhang et al. (2016), who defined the pointing game, allow 15 pixels on 224-pixel images
    (about 4 on 64-pixel ones), since a map computed at feature resolution cannot place its
    peak more finely than one feature cell. A constant map points nowhere and counts as a
    miss. With ties, the first maximum in row-major order is used.
    """
    if isinstance(tolerance, (bool, np.bool_)) or not isinstance(tolerance, (int, float, np.integer, np.floating)) \
            or not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0; received {tolerance!r}.")
    maps, masks = _check(maps, masks)
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(axis=1)
    if tolerance > 0:
        # Distance of every pixel to the object: 0 inside the mask.
        near = np.stack([
            cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= tolerance
            for m in masks
        ])
    else:
        near = masks
    hits = near.reshape(len(near), -1)[np.arange(len(maps)), peak]
    constant = flat.max(axis=1) <= flat.min(axis=1)
    return hits & ~constant


def pointing_game(maps, masks, tolerance=0):
    """Fraction of examples whose map's maximum falls inside the object mask (or within
    `tolerance` pixels of it; see `pointing_hits`)."""
    return float(pointing_hits(maps, masks, tolerance).mean())


def energy_in_mask(maps, masks):
    """Per example: share of the map's positive mass inside the mask (0 when there is none)."""
    maps, masks = _check(maps, masks)
    positive = np.maximum(maps, 0.0)
    total = positive.sum(axis=(1, 2))
    inside = (positive * masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


def energy_pointing_game(maps, masks):
    """Mean share of positive map mass inside the object masks (Score-CAM's energy measure)."""
    return float(energy_in_mask(maps, masks).mean())
