"""Rendering only: normalise maps, colour them with OpenCV, overlay, tile into grids, save PNG.

Explainers return raw float32 maps; this module is the only place where they become uint8
pictures. Images are RGB throughout; OpenCV's BGR order is confined to `_colorize` and `save`.
Pictures for every input rank: `overlay` (images), `band` (1-D signals), `slices` (volumes), and
`render`, which picks one by the input's rank.
"""

import os

import cv2
import numpy as np

__all__ = [
    "plot_signal", "slice_indices", "flat_picture", "flat_map", "chart", "bars",
    "normalize", "heatmap", "overlay", "to_uint8", "resize_map", "grid", "colorbar", "save", "band", "slices", "render",
]


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


def _colorize(values, colormap):
    """Already-normalised (H, W) values in [0, 1] as RGB uint8, without renormalising.

    Split from `heatmap` so that `band` and `slices` can normalise once over a whole signal or
    volume and colour pieces of it on one common scale.
    """
    levels = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, _colormap(colormap)), cv2.COLOR_BGR2RGB)


def heatmap(map_, colormap="jet", method="minmax"):
    """A (H, W) map as an RGB uint8 picture (H, W, 3) through an OpenCV colormap."""
    values = normalize(map_, method=method)
    if values.ndim != 2:
        raise ValueError(f"heatmap takes one (H, W) map; received shape {np.shape(map_)}.")
    return _colorize(values, colormap)


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


def _check_alpha(alpha):
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; received {alpha!r}.")


def overlay(image, map_, alpha=0.5, colormap="jet", method="minmax"):
    """The map coloured and blended over the image: RGB uint8 (H, W, 3).

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3), uint8 or float (see `to_uint8`).
        map_: (h, w) map; resized to the image if needed.
        alpha: weight of the heatmap in the blend, in [0, 1].
        colormap: OpenCV colormap name ("jet", "inferno", "viridis", ...).
        method: normalisation passed to `normalize`.
    """
    _check_alpha(alpha)
    base = to_uint8(image)
    coloured = heatmap(resize_map(map_, base.shape[:2]), colormap=colormap, method=method)
    return cv2.addWeighted(coloured, alpha, base, 1.0 - alpha, 0.0)


_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Label font scales: the largest used, and the smallest that stays legible (about 9 px capitals);
# a label that does not fit at the smallest is wrapped onto more lines, not shrunk further.
_SCALE, _MIN_SCALE = 0.5, 0.4
_LINE = 16  # pixels per label line at the largest scale


def _text_width(text, scale):
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _wrap(text, width, scale):
    """The lines of `text` (its own line breaks kept) wrapped at spaces to fit `width` pixels;
    a word wider than that is cut."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width(candidate, scale) > width:
                lines.append(line)
                candidate = word
            while _text_width(candidate, scale) > width and len(candidate) > 1:
                candidate = candidate[:-1]
            line = candidate
        lines.append(line)
    return lines


def _layout(text, width):
    """(lines, scale) of a label in a box `width` pixels wide: the largest scale down to the
    legible minimum at which every line fits, else the minimum with lines wrapped."""
    scale = _SCALE
    while scale >= _MIN_SCALE - 1e-9:
        lines = str(text).split("\n")
        if all(_text_width(line, scale) <= width - 2 for line in lines):
            return lines, scale
        scale -= 0.05
    return _wrap(text, width - 2, _MIN_SCALE), _MIN_SCALE


def _label_height(texts, width):
    """Pixels a row of labels needs: the most lines any of them takes."""
    return max((len(_layout(t, width)[0]) for t in texts), default=1) * _LINE + 4


def _label(canvas, text, x, y, width, height):
    """Write text centred in a box, at the largest legible scale that fits, wrapped if needed."""
    lines, scale = _layout(text, width)
    top = y + max(0, (height - len(lines) * _LINE) // 2)
    for i, line in enumerate(lines):
        (tw, th), _ = cv2.getTextSize(line, _FONT, scale, 1)
        org = (x + max(0, (width - tw) // 2), top + i * _LINE + (_LINE + th) // 2)
        cv2.putText(canvas, line, org, _FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)


def colorbar(width, colormap="jet", low="low", high="high", height=12):
    """A horizontal colour bar (RGB uint8) with its ends labelled below it: the legend of maps
    drawn with `colormap`."""
    ramp = np.tile(np.linspace(0.0, 1.0, max(2, int(width)), dtype=np.float32), (height, 1))
    bar = _colorize(ramp, colormap)
    canvas = np.full((height + _LINE + 2, bar.shape[1], 3), 255, np.uint8)
    canvas[:height] = bar
    half = bar.shape[1] // 2
    for text, x, align in ((low, 0, "left"), (high, half, "right")):
        (tw, th), _ = cv2.getTextSize(str(text), _FONT, _MIN_SCALE, 1)
        left = x if align == "left" else bar.shape[1] - tw
        cv2.putText(canvas, str(text), (max(0, left), height + 2 + th + 2), _FONT, _MIN_SCALE, (20, 20, 20), 1,
                    cv2.LINE_AA)
    return canvas


def grid(cells, col_labels=None, row_labels=None, cell_size=None, pad=4, background=255, legend=None,
         row_label_width=90):
    """Tile pictures into one labelled sheet (RGB uint8).

    Labels are written at a legible size: one too long for its cell is wrapped onto more lines
    (a "\\n" in a label starts a new line), and the header or the row-label column grows to fit.

    Args:
        cells: rows of pictures, a nested list (R, C) or an array (R, C, H, W[, 3]); any
            accepted by `to_uint8`.
        col_labels: C strings written above the columns.
        row_labels: R strings written left of the rows.
        cell_size: (height, width) each picture is scaled to (nearest neighbour, so pixels stay
            crisp); default: the first picture's size.
        pad: pixels between cells.
        background: grey level of the sheet.
        legend: a picture (e.g. `colorbar(...)`) placed under the grid, or None.
        row_label_width: pixels of the row-label column.
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
    top = max(20, _label_height(col_labels, cw)) if col_labels is not None else 0
    left = row_label_width if row_labels is not None else 0
    footer = None if legend is None else to_uint8(legend)
    below = 0 if footer is None else footer.shape[0] + pad
    height = top + len(rows) * (ch + pad) + pad + below
    width = max(left + ncols * (cw + pad) + pad, 0 if footer is None else left + footer.shape[1] + 2 * pad)
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
    if footer is not None:
        y = height - footer.shape[0]
        if footer.ndim == 2:
            footer = np.repeat(footer[..., None], 3, axis=-1)
        canvas[y:, left + pad:left + pad + footer.shape[1]] = footer
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


# Channel colours for `band` (RGB, from matplotlib's tab10): dark enough to read on white and
# distinct from one another; channels beyond the palette reuse it in order.
_PALETTE = (
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; received {value!r}.")
    return int(value)


def _check_finite(name, array):
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} has {bad} non-finite values (NaN or inf); expected finite numbers.")


def _resample_1d(values, width):
    """A (L,) array resampled to `width` columns, sample i centred at x = (i + 0.5) * width / L - 0.5.

    This is OpenCV's half-pixel convention, the same one `resize_map` uses for images, so a band
    lines up with the signal drawn above it. Shrinking uses INTER_AREA (each column the mean of
    the samples it covers) so a narrow peak is kept as a smaller bump instead of falling between
    two columns as INTER_LINEAR would let it.
    """
    values = np.asarray(values, dtype=np.float32)[None]
    mode = cv2.INTER_AREA if width < values.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(values, (width, 1), interpolation=mode)[0]


def _trace(signal, width):
    """Polyline x, y-value vertices of one channel at `width` columns (same alignment as `_resample_1d`).

    Growing: one vertex per sample at its exact (sub-pixel) x, so peaks are drawn at their true
    height rather than cut where column centres happen to fall, plus the end samples held out to
    the picture's edges, like OpenCV's replicated border in the band below. Shrinking: each column
    gets its minimum and maximum, the usual waveform envelope, so spikes stay visible instead of
    being skipped by the resampling.
    """
    length = signal.shape[0]
    if width >= length:
        xs = (np.arange(length) + 0.5) * width / length - 0.5
        return np.r_[0.0, xs, width - 1.0], np.r_[signal[0], signal, signal[-1]]
    columns = np.arange(width, dtype=np.float64)
    # Sample i belongs to the column its centre falls in; with L > width each column holds one or more.
    owner = np.floor((np.arange(length) + 0.5) * width / length).astype(np.int64)
    starts = np.searchsorted(owner, np.arange(width))
    low, high = np.minimum.reduceat(signal, starts), np.maximum.reduceat(signal, starts)
    return np.repeat(columns, 2), np.stack([low, high], axis=1).ravel()


def plot_signal(signal, height=96, width=None):
    """A 1-D input drawn as curves: RGB uint8 (height, W, 3), W = width or max(L, 256).

    Each channel is an antialiased polyline on white, all channels min-max scaled together with
    a 4-pixel margin; sample i is centred at x = (i + 0.5) * W / L - 0.5 (see `band`).
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim not in (1, 2) or signal.size == 0:
        raise ValueError(f"plot_signal takes a signal (L,) or (L, C) with L, C >= 1; received shape {signal.shape}.")
    if signal.ndim == 1:
        signal = signal[:, None]
    _check_finite("signal", signal)
    height = _positive_int("height", height)
    width = max(signal.shape[0], 256) if width is None else _positive_int("width", width)
    canvas = np.full((height, width, 3), 255, np.uint8)
    margin = min(4, (height - 1) // 4)  # tiny plots keep most of their rows for the curve
    low, high = float(signal.min()), float(signal.max())
    for c in range(signal.shape[1]):
        xs, values = _trace(signal[:, c], width)
        if high > low:
            ys = margin + (high - values) / (high - low) * (height - 1 - 2 * margin)
        else:
            ys = np.full_like(values, (height - 1) / 2.0)
        # shift=4: vertices in 1/16 pixel, so the antialiased line follows sub-pixel values.
        points = np.round(np.stack([xs, ys], axis=-1) * 16).astype(np.int32).reshape(-1, 1, 2)
        colour = _PALETTE[c % len(_PALETTE)]
        cv2.polylines(canvas, [points], False, colour, 1, cv2.LINE_AA, shift=4)

    return canvas


def _volume_pictures(volume):
    """(D, H, W[, C]) -> (D, H, W, 3) uint8 slices from one to_uint8 call over the stacked
    slices: one intensity scale for the whole volume."""
    depth, rows, cols = volume.shape[:3]
    return to_uint8(volume.reshape((depth * rows,) + volume.shape[2:])).reshape(depth, rows, cols, -1)


def slice_indices(depth, num=8):
    """Depth indices a volume is shown at: all when depth <= num, else num evenly spaced ones
    (first and last included)."""
    if depth <= num:
        return np.arange(depth)
    return np.unique(np.round(np.linspace(0, depth - 1, num)).astype(np.int64))


def flat_picture(example, num=8, width=None):
    """One example as a single 2-D picture on which a map from `flat_map` lies pixel for pixel:
    an image as it is (uint8), a signal (L, C) as its curves (`plot_signal`), a volume
    (D, H, W, C) as `num` depth slices side by side on one intensity scale."""
    example = np.asarray(example)
    if example.ndim == 3:
        return to_uint8(example)
    if example.ndim == 2:
        return plot_signal(example, width=width)
    if example.ndim == 4:
        return np.concatenate(list(_volume_pictures(example)[slice_indices(len(example), num)]), axis=1)
    raise ValueError(
        "flat_picture takes one example: an image (H, W, C), a signal (L, C) or a volume (D, H, W, C); "
        f"received shape {example.shape}."
    )


def flat_map(map_, num=8):
    """The map of one example laid out like `flat_picture`: an (H, W) map as it is, an (L,) map
    as one row (1, L) that a viewer stretches over the curves, a (D, H, W) map as the same depth
    slices side by side. Raw values; scale them once for the whole picture."""
    map_ = np.asarray(map_, dtype=np.float32)
    if map_.ndim == 2:
        return map_
    if map_.ndim == 1:
        return map_[None]
    if map_.ndim == 3:
        return np.concatenate(list(map_[slice_indices(map_.shape[0], num)]), axis=1)
    raise ValueError(f"flat_map takes an (H, W), (L,) or (D, H, W) map; received shape {map_.shape}.")


def band(signal, map_, height=96, band_height=24, colormap="jet", method="minmax", width=None):
    """A 1-D input (audio, ECG, a time series) drawn as curves above its importance as a colour band.

    Returns RGB uint8 (height + band_height, W, 3). The top `height` rows show each channel as an
    antialiased polyline on white, all channels min-max scaled together (so their relative sizes
    survive) with a 4-pixel margin; a constant signal is a flat line in the middle. The bottom
    `band_height` rows show the map coloured like `heatmap`. Sample i of both is centred at
    x = (i + 0.5) * W / L - 0.5, so a peak in the band sits under the same instant of the signal.

    Args:
        signal: (L,) or (L, C) array, C channels.
        map_: (L,) importance, one value per sample (higher = more important).
        height: rows of the signal plot.
        band_height: rows of the colour band.
        colormap: OpenCV colormap name ("jet", "inferno", "viridis", ...).
        method: normalisation passed to `normalize` (over the whole map).
        width: picture width W; default max(L, 256), so short signals are still readable.
    """
    signal = np.asarray(signal, dtype=np.float32)
    map_ = np.asarray(map_, dtype=np.float32)
    if signal.ndim not in (1, 2) or signal.size == 0:
        raise ValueError(
            f"band takes a signal (L,) or (L, C) with L, C >= 1; received shape {signal.shape}."
        )
    if signal.ndim == 1:
        signal = signal[:, None]
    length = signal.shape[0]
    if map_.shape != (length,):
        raise ValueError(
            f"band needs a map of shape ({length},), one value per sample of the signal; "
            f"received shape {map_.shape}."
        )
    _check_finite("signal", signal)
    _check_finite("map_", map_)
    height = _positive_int("height", height)
    band_height = _positive_int("band_height", band_height)
    width = max(length, 256) if width is None else _positive_int("width", width)

    canvas = plot_signal(signal, height, width)
    # Normalise before resampling, so colours reflect the map's values, not where the columns fell.
    values = _resample_1d(normalize(map_[None], method=method)[0], width)
    strip = _colorize(np.repeat(values[None], band_height, axis=0), colormap)
    return np.concatenate([canvas, strip], axis=0)


def slices(volume, map_=None, num=8, alpha=0.5, colormap="jet", method="minmax", cell_size=None):
    """Evenly spaced depth slices of a 3-D input, optionally overlaid with its map, in one row.

    Returns an RGB uint8 sheet from `grid`, columns labelled "d=<index>". The volume is scaled to
    uint8 once over all its slices and the map is normalised once over the whole volume, so a
    slice that looks hotter is hotter: colours are comparable across slices.

    Args:
        volume: (D, H, W) or (D, H, W, C); channels as in `to_uint8` (1 grey, 3 RGB, others show
            their first channel).
        map_: (D, H', W') importance or None (slices only); each slice is resized to (H, W).
        num: how many slices; all of them when D <= num, else indices
            round(linspace(0, D - 1, num)) (first and last included).
        alpha: weight of the heatmap in the blend, in [0, 1].
        colormap: OpenCV colormap name.
        method: normalisation passed to `normalize`, over the whole volume.
        cell_size: (height, width) each slice is scaled to in the sheet; default: native size.
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4) or volume.size == 0:
        raise ValueError(
            f"slices takes a volume (D, H, W) or (D, H, W, C), none empty; received shape {volume.shape}."
        )
    num = _positive_int("num", num)
    _check_alpha(alpha)
    depth, rows, cols = volume.shape[:3]
    pictures = _volume_pictures(volume)
    picks = slice_indices(depth, num)

    if map_ is None:
        cells = [pictures[d] for d in picks]
    else:
        map_ = np.asarray(map_, dtype=np.float32)
        if map_.ndim != 3 or map_.shape[0] != depth or map_.size == 0:
            raise ValueError(
                f"slices needs a map (D, H, W) with D = {depth} like the volume {volume.shape}; "
                f"received shape {map_.shape}."
            )
        _check_finite("map_", map_)
        # normalize() works per (H, W) map; stacking the slices into one map scales the volume as a whole.
        values = normalize(map_.reshape(1, -1, map_.shape[2]), method=method).reshape(map_.shape)
        cells = [
            cv2.addWeighted(
                _colorize(resize_map(values[d], (rows, cols)), colormap), alpha, pictures[d], 1.0 - alpha, 0.0
            )
            for d in picks
        ]
    return grid([cells], col_labels=[f"d={d}" for d in picks], cell_size=cell_size)


def render(inputs, map_, alpha=0.5, colormap="jet", method="minmax", **kwargs):
    """One example and its map as a picture, for any input rank (used by the logger and the CLI).

    (H, W, C) images -> `overlay`; (L, C) signals -> `band`; (D, H, W, C) volumes -> `slices`.

    Args:
        inputs: one example, without the batch axis.
        map_: its map: (H, W), (L,) or (D, H, W) respectively.
        alpha: heatmap weight for images and volumes (a band is not blended, so it ignores it).
        colormap, method: as in `heatmap`.
        **kwargs: passed on to the function chosen (e.g. width= for `band`, num= for `slices`).
    """
    inputs = np.asarray(inputs)
    map_ = np.asarray(map_)
    if inputs.ndim not in (2, 3, 4):
        raise ValueError(
            "render takes one example: an image (H, W, C), a signal (L, C) or a volume (D, H, W, C); "
            f"received shape {inputs.shape}."
        )
    # The map covers every input axis but the channels; check here so the message names both shapes.
    if map_.ndim != inputs.ndim - 1 or (inputs.ndim != 3 and map_.shape[:1] != inputs.shape[:1]):
        expected = {2: "(L,)", 3: "(H, W)", 4: "(D, H, W)"}[inputs.ndim]
        raise ValueError(
            f"render needs a map {expected} for inputs of shape {inputs.shape}; received shape {map_.shape}."
        )
    if inputs.ndim == 3:
        return overlay(inputs, map_, alpha=alpha, colormap=colormap, method=method, **kwargs)
    if inputs.ndim == 2:
        return band(inputs, map_, colormap=colormap, method=method, **kwargs)
    return slices(inputs, map_, alpha=alpha, colormap=colormap, method=method, **kwargs)


_INK, _GRID = (40, 40, 40), (215, 215, 215)


_KEY = 150  # pixels right of the plot area for the legend


def _axes(size, xlim, ylim, title, xlabel, ylabel):
    """A white picture with a framed plot area (a legend column kept free on its right), grid
    lines and tick labels at quarters of each axis (xlim None: no x ticks), a title and axis
    labels; returns it and the plot area's (left, right, top, bottom) pixels."""
    height, width = (_positive_int("size", n) for n in size)
    if width < 2 * _KEY or height < 100:
        raise ValueError(f"charts need size (height, width) of at least (100, {2 * _KEY}); received {size!r}.")
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 44, width - _KEY, 26, height - 34
    scale = 0.4
    for k in range(5):
        py = int(round(bottom - (bottom - top) * k / 4))
        cv2.line(canvas, (left, py), (right, py), _GRID, 1)
        cv2.putText(canvas, f"{ylim[0] + (ylim[1] - ylim[0]) * k / 4:.2g}", (4, py + 4), _FONT, scale, _INK, 1,
                    cv2.LINE_AA)
        if xlim is not None:
            px = int(round(left + (right - left) * k / 4))
            cv2.putText(canvas, f"{xlim[0] + (xlim[1] - xlim[0]) * k / 4:.2g}", (px - 8, bottom + 14), _FONT, scale,
                        _INK, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (right, bottom), _INK, 1)
    cv2.putText(canvas, title, (left, 17), _FONT, 0.5, _INK, 1, cv2.LINE_AA)
    cv2.putText(canvas, xlabel, (left + (right - left) // 2 - _text_width(xlabel, scale) // 2, height - 6),
                _FONT, scale, _INK, 1, cv2.LINE_AA)
    if ylabel:
        label = np.full((14, _text_width(ylabel, scale) + 4, 3), 255, np.uint8)
        cv2.putText(label, ylabel, (2, 11), _FONT, scale, _INK, 1, cv2.LINE_AA)
        label = np.rot90(label)  # reads bottom to top
        h = min(label.shape[0], bottom - top)
        y = top + (bottom - top - h) // 2
        canvas[y:y + h, 30:30 + label.shape[1]] = np.minimum(canvas[y:y + h, 30:30 + label.shape[1]], label[:h])
    return canvas, (left, right, top, bottom)


def _fitted(text, width, scale=0.4):
    """`text` cut to fit `width` pixels at `scale`."""
    while text and _text_width(text, scale) > width:
        text = text[:-1]
    return text


def _limits(ylim):
    low, high = (float(v) for v in ylim)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"ylim must be (low, high) with low < high; received {ylim!r}.")
    return low, high


def _key(canvas, right, top, row, label, mark):
    """One legend entry right of the plot area: its mark (drawn by `mark(baseline y)`) and label."""
    y = top + 10 + 14 * row
    mark(y)
    cv2.putText(canvas, _fitted(label, _KEY - 28), (right + 24, y), _FONT, 0.4, _INK, 1, cv2.LINE_AA)


def chart(series, title="", xlabel="", ylabel="", size=(260, 460), ylim=None):
    """Curves on labelled axes: RGB uint8 (height, width, 3), for reports.

    Args:
        series: {label: (xs, ys)} with xs and ys of equal length (>= 2 points each), drawn in
            the palette's colours in order, with a legend.
        title, xlabel, ylabel: text above the plot and along its axes.
        size: (height, width) of the picture.
        ylim: (low, high) of the vertical axis; None: the data's range.
    """
    if not series:
        raise ValueError("chart needs at least one series {label: (xs, ys)}; received none.")
    curves = {}
    for label, (xs, ys) in series.items():
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2:
            raise ValueError(f"series {label!r} needs xs and ys of one equal length >= 2; received shapes "
                             f"{xs.shape} and {ys.shape}.")
        _check_finite(f"series {label!r}", np.r_[xs, ys])
        curves[label] = xs, ys
    every_x = np.concatenate([xs for xs, _ in curves.values()])
    every_y = np.concatenate([ys for _, ys in curves.values()])
    x0, x1 = float(every_x.min()), float(every_x.max())
    y0, y1 = (float(every_y.min()), float(every_y.max())) if ylim is None else _limits(ylim)
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)
    canvas, (left, right, top, bottom) = _axes(size, (x0, x1), (y0, y1), title, xlabel, ylabel)
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        px = left + (xs - x0) / (x1 - x0) * (right - left)
        py = bottom - (np.clip(ys, y0, y1) - y0) / (y1 - y0) * (bottom - top)
        points = np.round(np.stack([px, py], axis=-1) * 16).astype(np.int32).reshape(-1, 1, 2)
        colour = _PALETTE[i % len(_PALETTE)]
        cv2.polylines(canvas, [points], False, colour, 2, cv2.LINE_AA, shift=4)
        _key(canvas, right, top, i, str(label), lambda y: cv2.line(canvas, (right + 8, y - 4), (right + 20, y - 4),
                                                                colour, 2, cv2.LINE_AA))
    return canvas


def bars(groups, title="", ylabel="", size=(260, 460), ylim=(0.0, 1.0)):
    """Grouped bars: RGB uint8 (height, width, 3), for reports.

    Args:
        groups: {group label: {bar label: value}}: one cluster per group (e.g. a method), the
            bars in the palette's colours by bar label, with a legend.
        title, ylabel: text above the plot and along its axis.
        size: (height, width); ylim: the value axis.
    """
    names = list(dict.fromkeys(k for bars_ in groups.values() for k in bars_))
    if not groups or not names:
        raise ValueError("bars needs at least one group with one bar {group: {bar: value}}; received none.")
    _check_finite("bar values", np.array([v for bars_ in groups.values() for v in bars_.values()], np.float64))
    low, high = _limits(ylim)
    canvas, (left, right, top, bottom) = _axes(size, None, (low, high), title, "", ylabel)
    slot = (right - left) / len(groups)
    bar = max(2.0, slot * 0.8 / len(names))
    for g, (group, values) in enumerate(groups.items()):
        x0 = left + g * slot + slot * 0.1
        for b, name in enumerate(names):
            if name not in values:
                continue
            share = (np.clip(values[name], low, high) - low) / (high - low)
            y = int(round(bottom - share * (bottom - top)))
            cv2.rectangle(canvas, (int(x0 + b * bar), y), (int(x0 + (b + 1) * bar) - 1, bottom - 1),
                          _PALETTE[b % len(_PALETTE)], -1)
        label = _fitted(str(group), int(slot) - 4)
        cv2.putText(canvas, label, (int(left + g * slot + slot / 2 - _text_width(label, 0.4) / 2), bottom + 14),
                    _FONT, 0.4, _INK, 1, cv2.LINE_AA)
    for b, name in enumerate(names):
        colour = _PALETTE[b % len(_PALETTE)]
        _key(canvas, right, top, b, str(name), lambda y: cv2.rectangle(canvas, (right + 8, y - 8), (right + 19, y),
                                                                       colour, -1))
    return canvas
