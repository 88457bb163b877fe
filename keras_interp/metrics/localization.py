"""Localization: does the map point at the object?

Both measures take maps (B, h, w) from any explainer and boolean object masks (B, H, W);
maps of another size are resized to the masks bilinearly with aligned pixel centres.
"""

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


def pointing_hits(maps, masks):
    """Per example: True when the map's maximum lies inside the mask.

    A constant map points nowhere and counts as a miss. With ties, the first maximum in
    row-major order is used.
    """
    maps, masks = _check(maps, masks)
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(axis=1)
    hits = masks.reshape(len(masks), -1)[np.arange(len(maps)), peak]
    constant = flat.max(axis=1) <= flat.min(axis=1)
    return hits & ~constant


def pointing_game(maps, masks):
    """Fraction of examples whose map's maximum falls inside the object mask."""
    return float(pointing_hits(maps, masks).mean())


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
