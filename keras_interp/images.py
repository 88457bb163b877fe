"""Rendering only: normalise maps, colour them with OpenCV, overlay, tile into grids, save PNG.

Explainers return raw float32 maps; this module is the only place where they become uint8
pictures. Images are RGB throughout; OpenCV's BGR order is confined to `heatmap` and `save`.
"""

import os

import cv2
import numpy as np

__all__ = ["normalize", "heatmap", "overlay", "to_uint8", "resize_map", "grid", "save"]


def normalize(maps, method="minmax", percentile=99.0):
    """Scale each map to [0, 1] independently.

    Args:
        maps: (H, W) or (B, H, W) array.
        method: "minmax" (min -> 0, max -> 1) or "percentile" (values clipped to the
            [100 - percentile, percentile] percentiles first, so a few extreme pixels do not
            wash out the rest).
        percentile: upper percentile for method="percentile".

    A constant map becomes all zeros.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim not in (2, 3):
        raise ValueError(f"Expected a map (H, W) or a batch of maps (B, H, W); received shape {maps.shape}.")
    batch = maps if maps.ndim == 3 else maps[None]
    axes = (1, 2)
    if method == "minmax":
        lo, hi = batch.min(axis=axes, keepdims=True), batch.max(axis=axes, keepdims=True)
    elif method == "percentile":
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100]; received {percentile!r}.")
        lo = np.percentile(batch, 100.0 - percentile, axis=axes, keepdims=True)
        hi = np.percentile(batch, percentile, axis=axes, keepdims=True)
    else:
        raise ValueError(f"Unknown method {method!r}; use 'minmax' or 'percentile'.")
    span = hi - lo
    out = np.where(span > 0, (np.clip(batch, lo, hi) - lo) / np.where(span > 0, span, 1), 0.0)
    out = out.astype(np.float32)
    return out if maps.ndim == 3 else out[0]


def _colormap(name):
    code = getattr(cv2, f"COLORMAP_{str(name).upper()}", None)
    if code is None:
        known = sorted(k[9:].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ValueError(f"Unknown colormap {name!r}; OpenCV provides {known}.")
    return code


def heatmap(map_, colormap="jet", method="minmax"):
    """A (H, W) map as an RGB uint8 picture (H, W, 3) through an OpenCV colormap."""
    values = normalize(map_, method=method)
    if values.ndim != 2:
        raise ValueError(f"heatmap takes one (H, W) map; received shape {np.shape(map_)}.")
    coloured = cv2.applyColorMap(np.round(values * 255).astype(np.uint8), _colormap(colormap))
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def to_uint8(image):
    """An image as RGB uint8 (H, W, 3).

    uint8 passes through; float images in [0, 1] are scaled by 255; float images outside
    [0, 1] (e.g. preprocessed to [-1, 1]) are min-max scaled for display. Grey images
    (H, W) or (H, W, 1) are repeated to three channels; RGBA (H, W, 4) shows its RGB channels;
    any other channel count (2, or 5 and more: not a picture) shows its first channel in grey.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    elif image.ndim == 3 and image.shape[-1] != 3:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0:
        raise ValueError(f"Expected an image (H, W) or (H, W, C); received shape {image.shape}.")
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    finite = np.isfinite(image)
    if not finite.all():
        image = np.where(finite, image, 0.0)
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.round(image * 255).astype(np.uint8)


def resize_map(map_, size):
    """Bilinear resize of a (h, w) map to size=(H, W), pixel centres aligned (OpenCV)."""
    map_ = np.asarray(map_, dtype=np.float32)
    if map_.shape[:2] == tuple(size):
        return map_
    return cv2.resize(map_, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def overlay(image, map_, alpha=0.5, colormap="jet", method="minmax"):
    """The map coloured and blended over the image: RGB uint8 (H, W, 3).

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3), uint8 or float (see `to_uint8`).
        map_: (h, w) map; resized to the image if needed.
        alpha: weight of the heatmap in the blend, in [0, 1].
        colormap: OpenCV colormap name ("jet", "inferno", "viridis", ...).
        method: normalisation passed to `normalize`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; received {alpha!r}.")
    base = to_uint8(image)
    coloured = heatmap(resize_map(map_, base.shape[:2]), colormap=colormap, method=method)
    return cv2.addWeighted(coloured, alpha, base, 1.0 - alpha, 0.0)


def _label(canvas, text, x, y, width, height):
    """Write text centred in a box, shrinking the font until it fits."""
    scale = 0.5
    while scale > 0.25:
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if tw <= width - 2:
            break
        scale -= 0.05
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (x + max(0, (width - tw) // 2), y + (height + th) // 2)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def grid(cells, col_labels=None, row_labels=None, cell_size=None, pad=4, background=255):
    """Tile pictures into one labelled sheet (RGB uint8).

    Args:
        cells: rows of pictures, a nested list (R, C) or an array (R, C, H, W[, 3]); any
            accepted by `to_uint8`.
        col_labels: C strings written above the columns.
        row_labels: R strings written left of the rows.
        cell_size: (height, width) each picture is scaled to (nearest neighbour, so pixels stay
            crisp); default: the first picture's size.
        pad: pixels between cells.
        background: grey level of the sheet.
    """
    rows = [[to_uint8(c) for c in row] for row in cells]
    if not rows or not rows[0]:
        raise ValueError("grid needs at least one row with one picture.")
    ncols = max(len(r) for r in rows)
    ch, cw = cell_size or rows[0][0].shape[:2]
    if col_labels is not None and len(col_labels) != ncols:
        raise ValueError(f"{len(col_labels)} column labels for {ncols} columns.")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows.")
    top = 20 if col_labels is not None else 0
    left = 90 if row_labels is not None else 0
    height = top + len(rows) * (ch + pad) + pad
    width = left + ncols * (cw + pad) + pad
    canvas = np.full((height, width, 3), background, np.uint8)
    for j, text in enumerate(col_labels or []):
        _label(canvas, str(text), left + pad + j * (cw + pad), 0, cw, top)
    for i, row in enumerate(rows):
        y = top + pad + i * (ch + pad)
        if row_labels is not None:
            _label(canvas, str(row_labels[i]), 0, y, left, ch)
        for j, picture in enumerate(row):
            x = left + pad + j * (cw + pad)
            if picture.shape[:2] != (ch, cw):
                picture = cv2.resize(picture, (cw, ch), interpolation=cv2.INTER_NEAREST)
            canvas[y:y + ch, x:x + cw] = picture
    return canvas


def save(path, image):
    """Write an RGB (or grey) picture as PNG, creating parent folders; returns the path."""
    path = os.fspath(path)
    picture = to_uint8(image)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise OSError(f"OpenCV could not write {path!r}; use a .png path in a writable folder.")
    return path
