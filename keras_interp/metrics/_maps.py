"""Maps as every quality measure reads them: (B, h, w), finite, resized to the pixels."""

import numpy as np

from keras_interp.images import resize_map


def pixel_maps(maps, size, batch, against):
    """Check maps (B, h, w) and resize them to size=(H, W), pixel centres aligned.

    `against` names what the maps are compared with in error messages ("masks", "inputs").
    A map may be smaller than the images (a CAM at feature resolution) but must have their
    aspect ratio within one map cell, so that resizing cannot silently stretch it.
    """
    try:
        maps = np.asarray(maps, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"Expected maps as a numeric array of shape (batch, height, width); received {type(maps).__name__} "
            "that cannot be read as float32."
        ) from None
    if maps.ndim != 3 or 0 in maps.shape[1:]:
        raise ValueError(
            f"Expected maps of shape (batch, height, width); received shape {maps.shape}. "
            "Pass explainer.explain(...) output, or maps[None] for a single map."
        )
    if len(maps) != batch:
        raise ValueError(f"{len(maps)} maps but {batch} {against}; give one map per example.")
    height, width = size
    h, w = maps.shape[1:]
    if h > height or w > width or abs(h * width - w * height) > max(height, width):
        raise ValueError(
            f"Maps of size {(h, w)} do not fit {against} of size {(height, width)}: expected maps of "
            "that size or smaller with the same aspect ratio (e.g. a CAM before upsampling)."
        )
    bad = ~np.isfinite(maps)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"The maps contain {int(bad.sum())} NaN or infinite values (first at {first}).")
    return np.stack([resize_map(m, (height, width)) for m in maps])


def single_images(x, what):
    """x (checked inputs: an array, or a tuple for several inputs) if it is one batch of images
    (B, H, W, C), else a ValueError naming `what` needs them."""
    if isinstance(x, tuple) or x.ndim != 4:
        shapes = [a.shape for a in x] if isinstance(x, tuple) else x.shape
        raise ValueError(
            f"{what} a single-input image model, inputs (batch, height, width, channels); received inputs of "
            f"shape {shapes}."
        )
    return x
