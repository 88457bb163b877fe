"""The TensorBoard tag contract, shared by the writer (keras_interp.summary) and the plugin
(tb_plugin): names, tag builders and the patterns that parse them.

No TensorFlow import: TensorBoard loads the plugin's entry point at start-up, and that module
may import only TensorBoard, werkzeug and this (importing keras_interp itself is cheap: see
keras_interp/__init__.py). See keras_interp.summary for what each tag holds.
"""

import re

import numpy as np

__all__ = ["PLUGIN_NAME", "SUBDIR", "SCALAR_PREFIX", "PREDICTION_FIELDS", "LEGACY_PREDICTION_FIELDS",
           "PICTURE_KINDS", "input_tag", "map_tag", "prediction_tag", "quality_tag", "picture_tag", "INPUT_TAG",
           "MAP_TAG", "PREDICTION_TAG", "QUALITY_TAG", "PICTURE_TAG", "INDEX_TAG", "PREDICTIONS_TAG", "INDEX_VERSION"]

PLUGIN_NAME = "keras_interp"
SUBDIR = "explanations"
SCALAR_PREFIX = "explanations/"  # standard Images and Scalars summaries of the logger
# The prediction vector's layouts: the current one and the 3-value one of older logs, where
# "confidence" was the explained class's probability.
PREDICTION_FIELDS = ("predicted_class", "predicted_probability", "explained_class", "explained_probability")
LEGACY_PREDICTION_FIELDS = ("predicted_class", "confidence", "explained_class")
# Kinds of pictures logged per epoch besides the maps: kind -> display name. A new kind is one
# entry here; the writer, the tag pattern, /runs, /image and the frontend follow from it.
PICTURE_KINDS = {"class_model": "class models", "features": "channel images", "top_patches": "top patches"}
# Tag families a picture kind must not be named after.
_RESERVED_KINDS = ("input", "map", "prediction", "quality", "index", "predictions")

# Per-run summaries that do not grow with images x methods, so the dashboard opens without listing
# every tag (the per-image tags above stay the record; logs without these are read from them):
# - INDEX_TAG: at each logged epoch, a JSON string of what the writer has written so far in the
#   run (images and their labels, class names, methods with their column settings, quality
#   measures, picture kinds): see keras_interp.summary.index_content for its fields.
# - PREDICTIONS_TAG: at each logged epoch, every image's prediction in one float32 tensor
#   (n_images, 1 + len(PREDICTION_FIELDS)), column 0 the image index.
INDEX_TAG = f"{PLUGIN_NAME}/index"
PREDICTIONS_TAG = f"{PLUGIN_NAME}/predictions"
INDEX_VERSION = 1

INPUT_TAG = re.compile(rf"^{PLUGIN_NAME}/input/(\d{{3,}})$")
MAP_TAG = re.compile(rf"^{PLUGIN_NAME}/map/([^/]+)/(\d{{3,}})$")
PREDICTION_TAG = re.compile(rf"^{PLUGIN_NAME}/prediction/(\d{{3,}})$")
QUALITY_TAG = re.compile(rf"^{PLUGIN_NAME}/quality/([^/]+)$")


class _PictureTag:
    """Like a compiled pattern's match(): a picture tag of a kind in PICTURE_KINDS (read at each
    call, so a kind added to the dict is known to both sides at once)."""

    _pattern = re.compile(rf"^{PLUGIN_NAME}/([^/]+)/(\d{{3,}})$")

    def match(self, tag):
        found = self._pattern.match(tag)
        return found if found and found.group(1) in PICTURE_KINDS and found.group(1) not in _RESERVED_KINDS else None


PICTURE_TAG = _PictureTag()


def _index(index):
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"An image index must be a non-negative int; received {index!r}.")
    return int(index)


def input_tag(index):
    return f"{PLUGIN_NAME}/input/{_index(index):03d}"


def map_tag(method, index):
    return f"{PLUGIN_NAME}/map/{method}/{_index(index):03d}"


def prediction_tag(index):
    return f"{PLUGIN_NAME}/prediction/{_index(index):03d}"


def quality_tag(method):
    return f"{PLUGIN_NAME}/quality/{method}"


def picture_tag(kind, index):
    if kind not in PICTURE_KINDS or kind in _RESERVED_KINDS:
        raise ValueError(f"Unknown picture kind {kind!r}; known kinds: {sorted(PICTURE_KINDS)}.")
    return f"{PLUGIN_NAME}/{kind}/{_index(index):03d}"
