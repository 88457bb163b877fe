"""Built-in data: synthetic shapes with object masks, and scikit-image's sample photos.

Nothing is downloaded: the shapes are drawn with OpenCV from a seed, and the photos ship
inside the scikit-image wheel.
"""

from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["Shapes", "SHAPE_CLASSES", "shapes", "photos", "PHOTO_NAMES"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


class Shapes(NamedTuple):
    """images (N, S, S, 3) float32 in [0, 1]; labels (N,) int32; masks (N, S, S) bool."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple


def _background(rng, size):
    """Smooth colour clouds plus oriented stripes: texture the model must learn to ignore."""
    coarse = rng.uniform(0.15, 0.85, size=(4, 4, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 12)
    stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period)
    bg += rng.uniform(0.03, 0.1) * stripes[..., None]
    bg += rng.normal(0, 0.03, size=bg.shape).astype(np.float32)
    return bg


def _draw(mask, label, cx, cy, r, angle):
    """Fill shape `label` of radius r centred at (cx, cy) into a uint8 mask."""
    if SHAPE_CLASSES[label] == "circle":
        cv2.circle(mask, (cx, cy), r, 1, -1)
        return
    if SHAPE_CLASSES[label] == "square":
        corners = [(-r, -r), (r, -r), (r, r), (-r, r)]
    elif SHAPE_CLASSES[label] == "triangle":
        corners = [(np.cos(a) * r * 1.2, np.sin(a) * r * 1.2) for a in np.deg2rad([-90, 30, 150])]
    else:  # cross: two bars of a third of the width
        t = max(1, r // 3)
        corners = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r),
                   (-t, t), (-r, t), (-r, -t), (-t, -t)]
    c, s = np.cos(angle), np.sin(angle)
    points = np.array([(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners])
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)


def shapes(n, image_size=64, seed=0, num_classes=len(SHAPE_CLASSES)):
    """Coloured shapes at random positions, sizes, angles and colours on textured backgrounds.

    Deterministic for a given (n, image_size, seed, num_classes). Objects cover about 5.5% of
    the image on average (no image more than 12%), so localisation can be scored with the
    masks, e.g. by `keras_interp.metrics.pointing_game`.

    Args:
        n: number of images.
        image_size: side of the square images (at least 16).
        seed: random seed.
        num_classes: how many of SHAPE_CLASSES to use (2 to 4).

    Returns:
        Shapes(images, labels, masks, class_names).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; received {n!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16; received {image_size!r}.")
    if not 2 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(SHAPE_CLASSES)}]; received {num_classes!r}.")
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), np.float32)
    masks = np.zeros((n, image_size, image_size), bool)
    labels = rng.integers(0, num_classes, size=n).astype(np.int32)
    for i, label in enumerate(labels):
        bg = _background(rng, image_size)
        r = int(round(image_size * rng.uniform(0.11, 0.16)))
        margin = int(np.ceil(r * 1.25)) + 1
        cx, cy = rng.integers(margin, image_size - margin, size=2)
        mask = np.zeros((image_size, image_size), np.uint8)
        _draw(mask, label, int(cx), int(cy), r, rng.uniform(0, 2 * np.pi))
        # An object colour far enough from the background under it to be visible.
        under = bg[mask.astype(bool)].mean(axis=0)
        colour = rng.uniform(0, 1, size=3)
        while np.abs(colour - under).max() < 0.35:
            colour = rng.uniform(0, 1, size=3)
        m = mask.astype(np.float32)[..., None]
        images[i] = np.clip(bg * (1 - m) + colour * m, 0.0, 1.0)
        masks[i] = mask.astype(bool)
    return Shapes(images, labels, masks, SHAPE_CLASSES[:num_classes])


def photos(image_size=None, names=PHOTO_NAMES):
    """scikit-image's sample photos as float32 RGB in [0, 1].

    Args:
        image_size: None for the original sizes (a list of arrays), or an int: each photo is
            centre-cropped to a square and resized with OpenCV's area interpolation, and a
            (N, S, S, 3) array is returned.
        names: which photos (of PHOTO_NAMES).

    Returns:
        (images, names).
    """
    try:
        from skimage import data
    except ImportError:
        raise ImportError(
            "keras_interp.datasets.photos needs scikit-image: pip install 'keras-interp[photos]'"
        ) from None
    unknown = [name for name in names if name not in PHOTO_NAMES]
    if unknown:
        raise ValueError(f"Unknown photo names {unknown}; choose from {PHOTO_NAMES}.")
    out = []
    for name in names:
        img = getattr(data, name)().astype(np.float32) / 255.0
        if image_size is not None:
            h, w = img.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            img = cv2.resize(img[top:top + side, left:left + side], (image_size, image_size),
                             interpolation=cv2.INTER_AREA)
        out.append(img)
    return (np.stack(out) if image_size is not None else out), tuple(names)
