"""Explanation summaries for TensorBoard: the contract between the logger and the plugin.

Everything is written under `<log_dir>/explanations` so the logger can share a log_dir with
`keras.callbacks.TensorBoard` (which writes train/ and validation/). TensorBoard keeps only the
first event's metadata per tag, so the method and image are in the tag and the epoch is the step.

Plugin summaries (plugin name PLUGIN_NAME, data_class set so third-party plugins can read them):

| tag | step | value | data_class |
| --- | --- | --- | --- |
| `keras_interp/input/{i:03d}` | first logged epoch | [PNG] of input image i | BLOB_SEQUENCE |
| `keras_interp/map/{method}/{i:03d}` | epoch | [PNG] grey map, min-max scaled | BLOB_SEQUENCE |
| `keras_interp/prediction/{i:03d}` | epoch | float32 [predicted class, confidence, explained class] | TENSOR |

Standard summaries: `explanations/{method}` (Images dashboard: a grid of overlays, one row per
image) and scalars `explanations/confidence`, `explanations/{method}/pointing_game`,
`explanations/{method}/energy` (the last two when masks are given).
"""

import json

import cv2
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

from keras_interp import images as render

__all__ = ["PLUGIN_NAME", "SUBDIR", "input_tag", "map_tag", "prediction_tag", "write_input", "write_map",
           "write_prediction", "encode_png", "SCALAR_PREFIX"]

PLUGIN_NAME = "keras_interp"
SUBDIR = "explanations"
SCALAR_PREFIX = "explanations/"  # standard Images and Scalars summaries of the logger


def input_tag(index):
    return f"{PLUGIN_NAME}/input/{index:03d}"


def map_tag(method, index):
    return f"{PLUGIN_NAME}/map/{method}/{index:03d}"


def prediction_tag(index):
    return f"{PLUGIN_NAME}/prediction/{index:03d}"


def _metadata(kind, data_class, **content):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = PLUGIN_NAME
    metadata.plugin_data.content = json.dumps({"version": 1, "kind": kind, **content}).encode("utf-8")
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
    meta = _metadata("input", summary_pb2.DATA_CLASS_BLOB_SEQUENCE, index=index,
                     label=None if label is None else int(label), class_names=list(class_names or []))
    tf.summary.write(input_tag(index), tf.constant([encode_png(render.to_uint8(image))]), step=step, metadata=meta)


def write_map(method, index, map_, step):
    """A raw map as a grey PNG, min-max scaled to 0-255."""
    grey = np.round(render.normalize(map_) * 255).astype(np.uint8)
    meta = _metadata("map", summary_pb2.DATA_CLASS_BLOB_SEQUENCE, method=method, index=index)
    tf.summary.write(map_tag(method, index), tf.constant([encode_png(grey)]), step=step, metadata=meta)


def write_prediction(index, predicted, confidence, explained, step):
    meta = _metadata("prediction", summary_pb2.DATA_CLASS_TENSOR, index=index,
                     fields=["predicted_class", "confidence", "explained_class"])
    value = tf.constant([float(predicted), float(confidence), float(explained)], tf.float32)
    tf.summary.write(prediction_tag(index), value, step=step, metadata=meta)
