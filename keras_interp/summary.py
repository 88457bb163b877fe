"""Explanation summaries for TensorBoard: the contract between the logger and the plugin.

Everything is written under `<log_dir>/explanations` so the logger can share a log_dir with
`keras.callbacks.TensorBoard` (which writes train/ and validation/). TensorBoard keeps only the
first event's metadata per tag, so the method and image are in the tag and the epoch is the step.
Image indices have at least three digits (7 -> "007", 1000 -> "1000").

Plugin summaries (plugin name PLUGIN_NAME, data_class set so third-party plugins can read them):

| tag | step | value | data_class |
| --- | --- | --- | --- |
| `keras_interp/input/{i:03d}` | first logged epoch | [PNG] of input image i | BLOB_SEQUENCE |
| `keras_interp/map/{method}/{i:03d}` | epoch | [PNG] the map's real values (`encode_map`: 16-bit levels over [min, max] in R and G, the range in a tEXt chunk) | BLOB_SEQUENCE |
| `keras_interp/prediction/{i:03d}` | epoch | float32 [predicted class, predicted probability, explained class, explained probability]; NaN = unknown | TENSOR |
| `keras_interp/quality/{method}` | epoch | float32 (n_images, n_measures): each image's pointing game hit, energy, deletion and insertion AUC (those computed; metadata `fields` names them) | TENSOR |
| `keras_interp/{kind}/{k:03d}` | epoch | [PNG] RGB picture k of a kind in PICTURE_KINDS (class_model: k is the class) | BLOB_SEQUENCE |
| `keras_interp/index` | epoch | string: JSON of what the run holds so far (`index_content`) | TENSOR |
| `keras_interp/predictions` | epoch | float32 (n_images, 5): [image index, the 4 prediction values] per image | TENSOR |

The last two are an index, written by the logger at the end of each logged epoch, so the dashboard
reads a run without listing its images x methods tags (logs without them, older ones included, are
read from the per-image tags, which the logger still writes).

The metadata content (JSON) of each tag holds `kind` and `index`; inputs add the true `label`
(or null) and `class_names`; maps add `method` and `label`, the column's display name (e.g.
"Grad-CAM (cam fallback: no GAP head)"); predictions add `fields`, the names of the vector's
entries. Older logs (metadata version 1) hold 3 values with fields ["predicted_class",
"confidence", "explained_class"], "confidence" being the explained class's probability, and maps
without a label; the plugin reads both. Maps also hold `signed` (whether the method's maps can be
negative) and `clip` (its default percentile clip), or null where unknown. Maps of metadata version 3 add `encoding` ("rg16"); older
ones are grey PNGs of the min-max scaled map without its range (`decode_map` reads both, the
dashboard too). Pictures add `label` (e.g. the class name) and `title`
(the kind's display name, from PICTURE_KINDS). The names, tag builders and patterns are in
keras_interp.tags, which the plugin imports too: a new kind of picture is one entry there.

Standard summaries: `explanations/{method}` (Images dashboard: a grid of overlays, one row per
image), `explanations/{kind}` (a labelled grid of that kind's pictures) and scalars
`explanations/confidence`, `explanations/{method}/pointing_game` and `.../energy` (when masks are
given), `explanations/{method}/deletion_auc`, `.../insertion_auc`, `.../road_morf` and
`.../road_lerf` (with faithfulness=True).
The dashboard charts every `explanations/...` scalar.
"""

import json
import struct
import zlib

import cv2
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

from keras_interp import images as render
from keras_interp.tags import (  # noqa: F401  (the contract, re-exported)
    INDEX_TAG, INDEX_VERSION, PREDICTIONS_TAG, PICTURE_KINDS, PLUGIN_NAME, PREDICTION_FIELDS, SCALAR_PREFIX, SUBDIR, _index, input_tag, map_tag, picture_tag,
    prediction_tag, quality_tag,
)

__all__ = ["PLUGIN_NAME", "SUBDIR", "input_tag", "map_tag", "prediction_tag", "picture_tag", "write_input",
           "write_map", "write_prediction", "write_picture", "write_quality", "write_index", "write_predictions", "index_content", "ranges", "quality_tag", "encode_png", "encode_map", "decode_map", "SCALAR_PREFIX", "PREDICTION_FIELDS",
           "PICTURE_KINDS"]



def _metadata(kind, data_class, **content):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = PLUGIN_NAME
    metadata.plugin_data.content = json.dumps({"version": 3, "kind": kind, **content}).encode("utf-8")
    metadata.data_class = data_class
    return metadata


def encode_png(picture):
    """PNG bytes of an RGB or grey uint8 picture."""
    picture = np.asarray(picture)
    if picture.ndim == 3:
        picture = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", picture)
    if not ok:
        raise ValueError(f"Could not encode a picture of shape {picture.shape} as PNG.")
    return data.tobytes()


def write_input(index, image, step, label=None, class_names=None):
    """Input image i as a PNG (to the default summary writer)."""
    meta = _metadata("input", summary_pb2.DATA_CLASS_BLOB_SEQUENCE, index=_index(index),
                     label=None if label is None else int(label), class_names=list(class_names or []))
    tf.summary.write(input_tag(index), tf.constant([encode_png(render.to_uint8(image))]), step=step, metadata=meta)


# Maps are written as 16-bit values in an RGB PNG (R = high byte, G = low byte, B = 0) with their
# real range in a tEXt chunk: a browser decodes RGB losslessly, so the dashboard recovers the real
# values to 1/65535 of the range (a true zero for signed maps, percentiles, the value under the
# cursor) from one request, and any image viewer still opens the file.
MAP_ENCODING = "rg16"
_TEXT_KEY = b"keras_interp"
_LEVELS = 65535


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _with_text(png, text):
    """`png` with a tEXt chunk (keyword keras_interp) right after IHDR (8-byte signature + 25-byte IHDR)."""
    return png[:33] + _png_chunk(b"tEXt", _TEXT_KEY + b"\0" + text.encode("latin-1")) + png[33:]


def _text_of(png):
    """The keras_interp tEXt chunk's JSON ({} when absent: a grey map of an older log)."""
    offset = 8
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I", png[offset:offset + 4])[0], png[offset + 4:offset + 8]
        data = png[offset + 8:offset + 8 + length]
        if kind == b"tEXt" and data.startswith(_TEXT_KEY + b"\0"):
            return json.loads(data[len(_TEXT_KEY) + 1:].decode("latin-1"))
        if kind == b"IDAT":
            break
        offset += 12 + length
    return {}


def encode_map(map_):
    """PNG bytes of a finite (H, W) map: 16-bit levels over [min, max] in R and G, the range in tEXt."""
    values = np.asarray(map_, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    q = np.round((values - lo) / span * _LEVELS).astype(np.uint16) if span > 0 else np.zeros(values.shape, np.uint16)
    high, low = (q >> 8).astype(np.uint8), (q & 255).astype(np.uint8)
    png = encode_png(np.stack([high, low, np.zeros_like(high)], axis=-1))  # B = 0 compresses best
    return _with_text(png, json.dumps({"encoding": MAP_ENCODING, "lo": lo, "hi": hi}))


def decode_map(png):
    """The real values of a map PNG written by `write_map` (float64 (H, W)).

    Older logs hold a grey PNG of the min-max scaled map without its range: those decode to
    v / 255 in [0, 1].
    """
    info = _text_of(png)
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise ValueError("decode_map: not a PNG.")
    if info.get("encoding") != MAP_ENCODING:
        grey = picture if picture.ndim == 2 else picture[..., 0]
        return grey.astype(np.float64) / 255
    rgb = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB).astype(np.float64)
    return info["lo"] + (rgb[..., 0] * 256 + rgb[..., 1]) / _LEVELS * (info["hi"] - info["lo"])


def write_map(method, index, map_, step, label=None, signed=None, clip=None):
    """A raw (H, W) map as a PNG holding its real values (`encode_map`; `decode_map` reads it back).

    `label` is the display name of the method's column in the dashboard (None: the method name).
    `signed` says whether the method's maps can be negative and `clip` its default (low, high)
    percentile clip (an explainer's `signed` and `display_clip`); None leaves the viewer to judge
    from each map. Non-finite maps raise a ValueError: they have no meaningful picture.
    """
    values = np.asarray(map_, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"write_map expects one (H, W) map; received shape {values.shape} for method {method!r}.")
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(
            f"write_map: the {method!r} map of image {index} has {int((~finite).sum())} non-finite values "
            f"(NaN or inf) of {values.size}; only finite maps can be written."
        )
    if clip is not None:
        clip = [float(c) for c in clip]
        if len(clip) != 2 or not 0 <= clip[0] < clip[1] <= 100:
            raise ValueError(f"clip must be two percentiles 0 <= low < high <= 100; received {clip!r}.")
    meta = _metadata("map", summary_pb2.DATA_CLASS_BLOB_SEQUENCE, method=method, index=_index(index),
                     label=str(method) if label is None else str(label), encoding=MAP_ENCODING,
                     signed=None if signed is None else bool(signed), clip=clip)
    tf.summary.write(map_tag(method, index), tf.constant([encode_map(values)]), step=step, metadata=meta)


def write_prediction(index, predicted, predicted_probability, explained, explained_probability, step):
    """float32 [predicted class, its probability, explained class, its probability] at `step`.

    Any value may be NaN (or None, written as NaN) where it is unknown, e.g. a model without class
    outputs has no predicted class.
    """
    meta = _metadata("prediction", summary_pb2.DATA_CLASS_TENSOR, index=_index(index), fields=list(PREDICTION_FIELDS))
    values = [np.nan if v is None else float(v) for v in (predicted, predicted_probability, explained, explained_probability)]
    tf.summary.write(prediction_tag(index), tf.constant(values, tf.float32), step=step, metadata=meta)


def write_quality(method, values, step):
    """Per-image quality of one method's maps at `step`: {measure: (n_images,) values}.

    Written as one float32 (n_images, n_measures) tensor, the measures' names in the metadata's
    `fields` (in the order given; NaN where a value is unknown), so the dashboard can sort the
    images by any of them.
    """
    fields = list(values)
    columns = [np.asarray(values[f], dtype=np.float32).reshape(-1) for f in fields]
    if not columns or len({len(c) for c in columns}) != 1:
        raise ValueError(f"write_quality expects equally long per-image values; received lengths "
                         f"{ {f: len(c) for f, c in zip(fields, columns)} } for method {method!r}.")
    meta = _metadata("quality", summary_pb2.DATA_CLASS_TENSOR, method=method, fields=fields)
    tf.summary.write(quality_tag(method), tf.constant(np.stack(columns, axis=1)), step=step, metadata=meta)


def write_picture(kind, index, picture, step, label=None):
    """Picture `index` of `kind` (e.g. the class model of class `index`) as an RGB PNG at `step`.

    `picture` is anything `images.to_uint8` takes (float in [0, 1], uint8, ...); `label` is its
    caption (a class name). Non-finite pictures raise a ValueError.
    """
    tag = picture_tag(kind, index)  # checks the kind first
    values = np.asarray(picture)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"write_picture: {kind!r} picture {index} has non-finite values; only finite ones can be written.")
    meta = _metadata(kind, summary_pb2.DATA_CLASS_BLOB_SEQUENCE, index=_index(index), title=PICTURE_KINDS[kind],
                     label=str(index) if label is None else str(label))
    tf.summary.write(tag, tf.constant([encode_png(render.to_uint8(values))]), step=step, metadata=meta)


def ranges(indices):
    """Sorted non-negative ints as half-open [start, stop] ranges: [0, 1, 2, 5] -> [[0, 3], [5, 6]]."""
    out = []
    for i in sorted({int(i) for i in indices}):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def index_content(inputs, class_names, methods, quality, pictures, complete=True):
    """The JSON-able content of one `keras_interp/index` record.

    inputs: {image index: true label or None}; class_names: [str]; methods: {method: {"label",
    "signed", "clip"}} (the map metadata's fields); quality: {method: [measure names]}; pictures:
    {kind: {picture index: label}}. The record holds `images` as half-open ranges and `labels` in
    their order (null when no image has one), so it grows with the images but not with images x
    methods; pictures hold their kind's `title`, `indices` and `labels`. complete=False: the run
    also holds tags this index does not describe (its writer found event files already there), so
    a reader must list its tags instead.
    """
    images = sorted(inputs)
    for kind in pictures:
        if kind not in PICTURE_KINDS:
            raise ValueError(f"Unknown picture kind {kind!r}; known kinds: {sorted(PICTURE_KINDS)}.")
    return {
        "version": INDEX_VERSION,
        "complete": bool(complete),
        "images": ranges(images),
        "labels": None if all(inputs[i] is None for i in images) else [None if inputs[i] is None else int(inputs[i]) for i in images],
        "class_names": [str(n) for n in class_names or []],
        "methods": {str(m): {"label": str(v.get("label") or m), "signed": v.get("signed"), "clip": v.get("clip")}
                    for m, v in methods.items()},
        "quality": {str(m): [str(f) for f in fields] for m, fields in quality.items()},
        "pictures": {kind: {"title": PICTURE_KINDS[kind], "indices": sorted(int(k) for k in by_index),
                            "labels": [str(by_index[k]) for k in sorted(by_index)]}
                     for kind, by_index in pictures.items()},
    }


def write_index(content, step):
    """One `keras_interp/index` record (`index_content`'s dict) at `step`."""
    meta = _metadata("index", summary_pb2.DATA_CLASS_TENSOR)
    text = json.dumps(content, allow_nan=False, separators=(",", ":"))
    tf.summary.write(INDEX_TAG, tf.constant(text), step=step, metadata=meta)


def write_predictions(indices, predicted, predicted_probability, explained, explained_probability, step):
    """Every image's prediction at `step` in one float32 (n, 5) tensor: [index, the 4 values of
    `write_prediction`] per image (NaN where unknown), so a reader gets a step with one read."""
    columns = [np.asarray(indices, np.float64).reshape(-1)]
    columns += [np.asarray([np.nan if v is None else float(v) for v in np.asarray(c, dtype=object).reshape(-1)], np.float64)
                for c in (predicted, predicted_probability, explained, explained_probability)]
    if len({len(c) for c in columns}) != 1:
        raise ValueError(f"write_predictions expects one value per image; received lengths {[len(c) for c in columns]}.")
    meta = _metadata("predictions", summary_pb2.DATA_CLASS_TENSOR, fields=["index", *PREDICTION_FIELDS])
    tf.summary.write(PREDICTIONS_TAG, tf.constant(np.stack(columns, axis=1).astype(np.float32)), step=step, metadata=meta)
