"""The Explanations plugin over a WSGI test client, on logs written with keras_interp.summary."""

import json
import math
import os
import re
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
import tensorflow as tf
import werkzeug.test
from tensorboard import errors
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin

import keras_interp as ki
from keras_interp import summary
from tb_plugin import plugin as tb

HOSTILE = "<img src=x onerror=alert(1)>"
CLASS_NAMES = ["a", "b", HOSTILE]
LABELS = [2, 0]  # the true (explained) classes of images 0 and 1


def prediction(run, index, step):
    """What the logs say about image `index` at `step`: image 1 has unknown (NaN) probabilities."""
    if index == 1:
        return 0, math.nan, LABELS[1], math.nan
    return 1, 0.5 + 0.1 * step, LABELS[0], 0.25 + 0.01 * step


PICTURE_SIZE = 10  # class-model pictures are 10 x 10, the inputs 12 x 12


def class_model_picture(index, epoch):
    """The class model of class `index` at `epoch`: one RGB colour that names both (exact in a PNG)."""
    return np.tile(np.array([60 * index + 10, 40 * epoch + 5, 100], np.uint8), (PICTURE_SIZE, PICTURE_SIZE, 1))


def write_class_models(index_epochs, labels=CLASS_NAMES):
    for epoch in index_epochs:
        for k, label in enumerate(labels):
            summary.write_picture("class_model", k, class_model_picture(k, epoch), epoch, label=label)


def legacy_map_metadata(method, index):
    """A map's metadata as the logger wrote it before metadata version 3 (a grey min-max scaled PNG)."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = summary.PLUGIN_NAME
    metadata.plugin_data.content = json.dumps(
        {"version": 2, "kind": "map", "method": method, "index": index, "label": method}).encode("utf-8")
    metadata.data_class = summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    return metadata


def write_logs(logdir, runs=("good", HOSTILE), epochs=2, dropped=None, pictures=None):
    """A run per name as the logger writes it: 2 images, saliency + gradcam maps, predictions, scalars.

    dropped: {run: last epoch of gradcam} (a method dropped mid-training). Confidence is NaN at epoch 1.
    pictures: {run: epochs with class_model pictures of the 3 classes, labelled with CLASS_NAMES};
    by default "good" and HOSTILE have them at every epoch.
    """
    if pictures is None:
        pictures = {"good": range(epochs), HOSTILE: range(epochs)}
    rng = np.random.default_rng(0)
    inputs = rng.uniform(size=(2, 12, 12, 3)).astype("float32")
    for run in runs:
        writer = tf.summary.create_file_writer(os.path.join(logdir, run, summary.SUBDIR))
        with writer.as_default():
            for epoch in range(epochs):
                for i in range(2):
                    if epoch == 0:
                        summary.write_input(i, inputs[i], epoch, label=LABELS[i], class_names=CLASS_NAMES)
                    summary.write_prediction(i, *prediction(run, i, epoch), epoch)
                tf.summary.scalar(f"{summary.SCALAR_PREFIX}confidence", math.nan if epoch == 1 else 0.5, step=epoch)
                for method, label in (("saliency", None), ("gradcam", "Grad-CAM (cam fallback: no GAP head)")):
                    if method == "gradcam" and epoch > (dropped or {}).get(run, epochs):
                        continue
                    for i in range(2):
                        summary.write_map(method, i, rng.normal(size=(12, 12)), epoch, label=label)
                    tf.summary.scalar(f"{summary.SCALAR_PREFIX}{method}/pointing_game", epoch / 4, step=epoch)
                    tf.summary.scalar(f"{summary.SCALAR_PREFIX}{method}/energy", math.inf if epoch else 0.1, step=epoch)
                if epoch in pictures.get(run, ()):
                    write_class_models([epoch])
        writer.close()


def make_client(logdir, wrap=None):
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    provider = wrap(provider) if wrap else provider
    context = base_plugin.TBContext(logdir=logdir, data_provider=provider)
    client = werkzeug.test.Client(application.TensorBoardWSGI([tb.ExplanationsPlugin(context)]))
    client.provider, client.multiplexer = provider, multiplexer
    return client


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("logs"))
    write_logs(logdir)
    return make_client(logdir)


def get(client, route, **params):
    return client.get(f"/data/plugin/{tb.PLUGIN_NAME}/{route}", query_string=params)


def strict_json(response):
    """The body parsed as a browser would: NaN or Infinity tokens are an error."""
    assert response.status_code == 200 and response.mimetype == "application/json"

    def reject(token):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(response.get_data(as_text=True), parse_constant=reject)


def test_runs_lists_images_methods_labels_steps_and_names(client):
    runs = strict_json(get(client, "runs"))["runs"]
    assert sorted(runs) == sorted(["good/explanations", f"{HOSTILE}/explanations"])
    for info in runs.values():
        version = info.pop("version")
        assert isinstance(version, str) and float(version) > 0  # the run's first write time
        assert info == {"images": [0, 1], "image_labels": {"0": LABELS[0], "1": LABELS[1]}, "methods": ["gradcam", "saliency"],
                        "labels": {"gradcam": "Grad-CAM (cam fallback: no GAP head)", "saliency": "saliency"},
                        "steps": [0, 1], "method_steps": {"gradcam": [0, 1], "saliency": [0, 1]},
                        "class_names": CLASS_NAMES, "labeled": True, "quality": {},
                        "signed": {"gradcam": None, "saliency": None}, "clip": {"gradcam": None, "saliency": None},
                        "pictures": {"class_model": {"title": "class models", "indices": [0, 1, 2],
                                                     "labels": {"0": "a", "1": "b", "2": HOSTILE}, "steps": [0, 1]}}}


def _rgb(response):
    assert response.status_code == 200 and response.mimetype == "image/png"
    return tf.io.decode_png(response.get_data(), channels=0).numpy()


def test_image_serves_class_model_pictures_at_their_epoch(client):
    for k in range(3):
        for step in (0, 1):
            response = get(client, "image", run="good/explanations", tag=summary.picture_tag("class_model", k), step=step)
            np.testing.assert_array_equal(_rgb(response), class_model_picture(k, step))
    tag = summary.picture_tag("class_model", 0)
    assert get(client, "image", run="good/explanations", tag=tag, step=2).status_code == 404  # not logged then
    assert get(client, "image", run="good/explanations", tag=summary.picture_tag("class_model", 3), step=0).status_code == 404


def test_runs_lists_a_run_with_pictures_only_and_steps_are_the_union_with_the_maps(tmp_path):
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "only", summary.SUBDIR))
    with writer.as_default():
        write_class_models([1, 3], labels=["cat", "dog", None])  # no label: the index is the caption
    writer.close()
    write_logs(str(tmp_path), runs=("mixed",), epochs=2, pictures={"mixed": [0, 1]})
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "mixed", summary.SUBDIR))
    with writer.as_default():
        write_class_models([2, 3])  # the maps stopped after epoch 1, the class models did not
    writer.close()
    client = make_client(str(tmp_path))
    runs = strict_json(get(client, "runs"))["runs"]
    assert runs["only/explanations"].pop("version") != "0"
    assert runs["only/explanations"] == {
        "images": [], "methods": [], "labels": {}, "steps": [1, 3], "method_steps": {}, "class_names": [],
        "labeled": False, "image_labels": {}, "quality": {}, "signed": {}, "clip": {}, "pictures": {"class_model": {"title": "class models", "indices": [0, 1, 2],
                                                       "labels": {"0": "cat", "1": "dog", "2": "2"}, "steps": [1, 3]}},
    }
    mixed = runs["mixed/explanations"]
    assert mixed["steps"] == [0, 1, 2, 3] and mixed["method_steps"] == {"gradcam": [0, 1], "saliency": [0, 1]}
    assert mixed["pictures"]["class_model"]["steps"] == [0, 1, 2, 3]
    response = get(client, "image", run="only/explanations", tag=summary.picture_tag("class_model", 2), step=3)
    np.testing.assert_array_equal(_rgb(response), class_model_picture(2, 3))
    assert get(client, "image", run="only/explanations", tag=summary.picture_tag("class_model", 2), step=2).status_code == 404


def test_a_new_picture_kind_is_one_entry_in_the_tag_contract(tmp_path, monkeypatch):
    """Add a kind to keras_interp.tags only: the writer writes it, the plugin lists and serves it,
    and the frontend names no kind."""
    from keras_interp import tags

    assert tb.PICTURE_KINDS is tags.PICTURE_KINDS is summary.PICTURE_KINDS
    monkeypatch.setitem(tags.PICTURE_KINDS, "feature_viz", "feature visualizations")
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "new", summary.SUBDIR))
    with writer.as_default():
        summary.write_picture("feature_viz", 4, class_model_picture(1, 2), 5, label="unit 4")
    writer.close()
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["new/explanations"]
    assert info["steps"] == [5] and info["pictures"] == {
        "feature_viz": {"title": "feature visualizations", "indices": [4], "labels": {"4": "unit 4"}, "steps": [5]}}
    response = get(client, "image", run="new/explanations", tag=summary.picture_tag("feature_viz", 4), step=5)
    np.testing.assert_array_equal(_rgb(response), class_model_picture(1, 2))
    monkeypatch.delitem(tags.PICTURE_KINDS, "feature_viz")  # an unknown kind's tags are no image tags
    assert get(make_client(str(tmp_path)), "image", run="new/explanations", tag="keras_interp/feature_viz/004",
               step=5).status_code == 400
    static = os.path.join(os.path.dirname(tb.__file__), "static")
    for name in (n for n in os.listdir(static) if n.endswith(".js")):
        frontend = open(os.path.join(static, name), encoding="utf-8").read()
        assert not any(kind in frontend for kind in tags.PICTURE_KINDS), name


def test_images_are_pngs_of_the_right_size(client):
    import cv2

    for tag, step, shape in [(summary.map_tag("saliency", 1), 1, (12, 12, 3)), (summary.input_tag(0), 1, (12, 12, 3))]:
        response = get(client, "image", run="good/explanations", tag=tag, step=step)
        assert response.status_code == 200 and response.mimetype == "image/png"
        picture = cv2.imdecode(np.frombuffer(response.get_data(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert picture.shape == shape


def test_predictions_are_strict_json_with_null_for_nan(client):
    for step in (0, 1):
        answer = strict_json(get(client, "predictions", run="good/explanations", step=step))
        assert answer == {
            "0": {"predicted": 1, "predicted_probability": pytest.approx(0.5 + 0.1 * step),
                  "explained": 2, "explained_probability": pytest.approx(0.25 + 0.01 * step)},
            "1": {"predicted": 0, "predicted_probability": None, "explained": 0, "explained_probability": None},
        }


def test_scalars_are_strict_json_with_null_for_nan_and_inf(client):
    scalars = strict_json(get(client, "scalars", run="good/explanations"))
    assert scalars["explanations/confidence"] == [[0, 0.5], [1, None]]
    assert scalars["explanations/saliency/energy"] == [[0, pytest.approx(0.1)], [1, None]]
    assert [p[0] for p in scalars["explanations/gradcam/pointing_game"]] == [0, 1]


def test_steps_are_the_union_over_methods_when_one_is_dropped(tmp_path):
    # gradcam sorts first and stops after epoch 2 (a method dropped mid-training): the slider
    # must still reach epoch 5, and gradcam's own steps say where its cells are n/a.
    write_logs(str(tmp_path), runs=("dropped",), epochs=5, dropped={"dropped": 2})
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["dropped/explanations"]
    assert info["steps"] == [0, 1, 2, 3, 4]
    assert info["method_steps"] == {"gradcam": [0, 1, 2], "saliency": [0, 1, 2, 3, 4]}
    assert get(client, "image", run="dropped/explanations", tag=summary.map_tag("saliency", 0), step=4).status_code == 200
    assert get(client, "image", run="dropped/explanations", tag=summary.map_tag("gradcam", 0), step=4).status_code == 404


def test_image_index_1000_round_trips(tmp_path):
    assert summary.input_tag(1000) == "keras_interp/input/1000"
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "big", summary.SUBDIR))
    with writer.as_default():
        for i in (7, 1000, 12345):
            summary.write_input(i, np.full((8, 8, 3), 0.5, np.float32), 0)
            summary.write_map("saliency", i, np.arange(64.0).reshape(8, 8), 0)
            summary.write_prediction(i, 1, 0.75, 1, 0.75, 0)
    writer.close()
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["big/explanations"]
    assert info["images"] == [7, 1000, 12345] and info["labeled"] is False and info["class_names"] == []
    for tag in (summary.input_tag(1000), summary.map_tag("saliency", 1000), summary.map_tag("saliency", 12345)):
        response = get(client, "image", run="big/explanations", tag=tag, step=0)
        assert response.status_code == 200 and response.mimetype == "image/png"
    answer = strict_json(get(client, "predictions", run="big/explanations", step=0))
    assert sorted(answer, key=int) == ["7", "1000", "12345"]
    assert answer["1000"] == {"predicted": 1, "predicted_probability": 0.75, "explained": 1, "explained_probability": 0.75}


def _write_legacy_prediction(index, predicted, confidence, explained, step, fields=True):
    """What keras_interp wrote before predicted_probability existed: 3 values."""
    content = {"version": 1, "kind": "prediction", "index": index}
    if fields:
        content["fields"] = ["predicted_class", "confidence", "explained_class"]
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = summary.PLUGIN_NAME
    meta.plugin_data.content = json.dumps(content).encode("utf-8")
    meta.data_class = summary_pb2.DATA_CLASS_TENSOR
    value = tf.constant([predicted, confidence, explained], tf.float32)
    tf.summary.write(summary.prediction_tag(index), value, step=step, metadata=meta)


@pytest.mark.parametrize("fields", [True, False], ids=["fields", "length"])
def test_old_three_value_predictions_are_read_correctly(tmp_path, fields):
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "old", summary.SUBDIR))
    with writer.as_default():
        for i in range(3):
            summary.write_input(i, np.zeros((8, 8, 3), np.float32), 0)
            summary.write_map("saliency", i, np.eye(8), 0)
        _write_legacy_prediction(0, 1, 0.9, 1, 0, fields)        # explained the predicted class
        _write_legacy_prediction(1, 1, 0.2, 2, 0, fields)        # explained a label: 0.2 is class 2's
        _write_legacy_prediction(2, 0, math.nan, 0, 0, fields)
    writer.close()
    answer = strict_json(get(make_client(str(tmp_path)), "predictions", run="old/explanations", step=0))
    assert answer == {
        "0": {"predicted": 1, "predicted_probability": pytest.approx(0.9), "explained": 1,
              "explained_probability": pytest.approx(0.9)},
        "1": {"predicted": 1, "predicted_probability": None, "explained": 2, "explained_probability": pytest.approx(0.2)},
        "2": {"predicted": 0, "predicted_probability": None, "explained": 0, "explained_probability": None},
    }


def test_logger_to_plugin_round_trip_with_cam_fallback(tmp_path):
    """ExplanationLogger's own summaries, read back through the plugin (no GAP head: cam -> Grad-CAM)."""
    import keras

    import keras_interp as ki

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(8, 12, 12, 3)).astype("float32"), rng.integers(0, 3, size=8)
    with pytest.warns(UserWarning, match="Grad-CAM"):
        logger = ki.ExplanationLogger(x[:2], str(tmp_path / "run"), methods=("saliency", "cam"), labels=y[:2],
                                      class_names=CLASS_NAMES, faithfulness=3)
        model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["run/explanations"]
    (fallback,) = [m for m in info["methods"] if m != "saliency"]
    assert info["labels"] == {fallback: "Grad-CAM (cam fallback: no GAP head)", "saliency": "saliency"}
    assert info["steps"] == [0, 1] and info["images"] == [0, 1] and info["labeled"] is True
    probabilities = model.predict(x[:2], verbose=0)
    answer = strict_json(get(client, "predictions", run="run/explanations", step=1))
    for i in (0, 1):
        p = answer[str(i)]
        assert p["explained"] == y[i] and p["predicted"] == probabilities[i].argmax()
        assert p["explained_probability"] == pytest.approx(probabilities[i, y[i]], rel=1e-5)
        assert p["predicted_probability"] == pytest.approx(probabilities[i].max(), rel=1e-5)
    # The logger's index record gives /runs what a listing of every tag gives, and its one-tensor
    # predictions what the per-image tags give.
    assert info["quality"] == {m: ["deletion_auc", "insertion_auc", "road_morf", "road_lerf"] for m in info["methods"]}
    listed = make_client(str(tmp_path), wrap=lambda p: Hiding(p, summary.INDEX_TAG, summary.PREDICTIONS_TAG))
    assert strict_json(get(listed, "runs"))["runs"]["run/explanations"] == info
    assert strict_json(get(listed, "predictions", run="run/explanations", step=1)) == answer
    tag = summary.map_tag(fallback, 1)
    assert get(client, "image", run="run/explanations", tag=tag, step=1).mimetype == "image/png"
    # The faithfulness scalars reach the dashboard's charts, one point per epoch, in [0, 1].
    scalars = strict_json(get(client, "scalars", run="run/explanations"))
    for method in ("saliency", fallback):
        for metric in ("deletion_auc", "insertion_auc"):
            points = scalars[f"explanations/{method}/{metric}"]
            assert [p[0] for p in points] == [0, 1] and all(0.0 <= p[1] <= 1.0 for p in points)


def test_parse_prediction_layouts():
    nan = math.nan
    assert tb.parse_prediction([nan, nan, 3, 0.5], list(summary.PREDICTION_FIELDS)) == {
        "predicted": None, "predicted_probability": None, "explained": 3, "explained_probability": 0.5}
    assert tb.parse_prediction([2, 0.5, 1, 0.25]) == {  # no metadata: the length decides
        "predicted": 2, "predicted_probability": 0.5, "explained": 1, "explained_probability": 0.25}
    assert tb.parse_prediction([2, 0.5, 2], "garbage") == {
        "predicted": 2, "predicted_probability": 0.5, "explained": 2, "explained_probability": 0.5}
    assert tb.PREDICTION_FIELDS == summary.PREDICTION_FIELDS


class CountingProvider:
    """Wraps a data provider and records the name of every method the plugin calls."""

    def __init__(self, provider):
        self._provider, self.calls, self.lose_next_blob = provider, [], False

    def __getattr__(self, name):
        attribute = getattr(self._provider, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls.append((name, kwargs.get("run_tag_filter")))
            if name == "read_blob" and self.lose_next_blob:
                self.lose_next_blob = False
                raise errors.NotFoundError("blob gone")  # as when a run is rewritten under the server
            return attribute(*args, **kwargs)

        return counted


class Hiding:
    """Wraps a data provider and hides some tags from its tensor listings (as logs without them)."""

    def __init__(self, provider, *tags):
        self._provider, self._tags = provider, set(tags)

    def __getattr__(self, name):
        return getattr(self._provider, name)

    def list_tensors(self, *args, **kwargs):
        listed = self._provider.list_tensors(*args, **kwargs)
        return {run: kept for run, tags in listed.items() if (kept := {t: m for t, m in tags.items() if t not in self._tags})}


class Volume(CountingProvider):
    """Also counts the time series (run, tag) each call answers with."""

    def __init__(self, provider):
        super().__init__(provider)
        self.series = 0

    def __getattr__(self, name):
        attribute = super().__getattr__(name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            result = attribute(*args, **kwargs)
            if isinstance(result, dict):
                self.series += sum(len(tags) for tags in result.values() if isinstance(tags, dict))
            return result

        return counted


def write_indexed(logdir, run, images, methods, epochs, kinds=(), writer=None):
    """A run written through the logger's writer (GuardedWriter): inputs, predictions, maps,
    quality, pictures of `kinds` and the index record, for each of `epochs`; returns the writer."""
    from keras_interp.logger.writer import GuardedWriter

    rng = np.random.default_rng(len(methods))
    out = writer or GuardedWriter(os.path.join(logdir, run))
    for epoch in epochs:
        with out.as_default():
            if not out._inputs:
                out.inputs(rng.uniform(size=(images, 8, 8, 3)), [i % 3 for i in range(images)], CLASS_NAMES, epoch)
            k = np.arange(images)
            out.predictions(k % 3, np.full(images, 0.5), (k + 1) % 3, np.full(images, 0.25 + epoch / 100), epoch)
            for n, method in enumerate(methods):
                out.maps(method, rng.normal(size=(images, 8, 8)), epoch, label=f"{method} column", signed=n % 2 == 0,
                         clip=(1, 99) if n == 0 else None)
                out.quality(method, {"energy": rng.uniform(size=images)}, epoch)
            for kind in kinds:
                out.pictures(kind, [0, 2], rng.uniform(size=(2, 8, 8, 3)), ["zero", "two"], epoch, grid=False)
            out.index(epoch)
        out.flush()
    return out


def test_runs_from_the_index_equal_the_listing_and_do_not_grow_with_images_x_methods(tmp_path):
    write_indexed(str(tmp_path), "small", 3, ["saliency", "gradcam"], range(3), kinds=["class_model"])
    write_indexed(str(tmp_path), "large", 40, ["saliency", "gradcam", "smoothgrad", "occlusion"], range(3))
    write_logs(str(tmp_path), runs=("old",), epochs=2)  # summaries without an index, as older loggers wrote
    indexed = make_client(str(tmp_path), wrap=Volume)
    runs = strict_json(get(indexed, "runs"))["runs"]
    listed = make_client(str(tmp_path), wrap=lambda p: Hiding(p, summary.INDEX_TAG))
    assert runs == strict_json(get(listed, "runs"))["runs"]
    assert sorted(runs) == ["large/explanations", "old/explanations", "small/explanations"]
    small = runs["small/explanations"]
    assert small["images"] == [0, 1, 2] and small["image_labels"] == {"0": 0, "1": 1, "2": 2}
    assert small["labels"] == {"gradcam": "gradcam column", "saliency": "saliency column"}
    assert small["signed"] == {"saliency": True, "gradcam": False} and small["clip"] == {"saliency": [1, 99], "gradcam": None}
    assert small["quality"] == {"gradcam": ["energy"], "saliency": ["energy"]} and small["steps"] == [0, 1, 2]
    assert small["pictures"]["class_model"] == {"title": "class models", "indices": [0, 2], "labels": {"0": "zero", "2": "two"},
                                                "steps": [0, 1, 2]}
    assert len(runs["large/explanations"]["images"]) == 40 and runs["large/explanations"]["method_steps"]["occlusion"] == [0, 1, 2]
    # Only the old run was listed tag by tag; the indexed runs cost their index and one tag per
    # method and picture kind, whatever their images x methods (40 x 4 maps, 40 predictions).
    listings = [f for name, f in indexed.provider.calls if name == "list_blob_sequences"]
    assert [sorted(f.runs) for f in listings] == [["old/explanations"]]
    # Read for /runs: the index record (listed, then read) and the first tag of each method and
    # picture kind: as much for 3 images x 2 methods as for 40 x 4, where a listing answers with
    # every input, map and picture tag.
    for run, methods_and_kinds in (("small", 3), ("large", 4)):
        client = make_client(str(tmp_path / run), wrap=Volume)
        assert list(strict_json(get(client, "runs"))["runs"]) == ["explanations"]
        assert client.provider.series == 2 + methods_and_kinds
    client = make_client(str(tmp_path / "large"), wrap=lambda p: Volume(Hiding(p, summary.INDEX_TAG)))
    strict_json(get(client, "runs"))
    assert client.provider.series >= 40 * 4 + 40


def test_the_index_is_read_again_only_when_an_epoch_is_logged_and_merges_a_resumed_run(tmp_path):
    out = write_indexed(str(tmp_path), "live", 3, ["saliency"], range(2))
    client = make_client(str(tmp_path), wrap=CountingProvider)
    first = strict_json(get(client, "runs"))["runs"]["live/explanations"]
    assert first["methods"] == ["saliency"] and first["steps"] == [0, 1] and first["pictures"] == {}
    client.provider.calls.clear()
    assert strict_json(get(client, "runs"))["runs"]["live/explanations"] == first
    assert "read_tensors" not in [name for name, _ in client.provider.calls]  # the kept index
    # Epoch 2 adds a method and class models: the index gets a new record and is read again.
    write_indexed(str(tmp_path), "live", 3, ["saliency", "gradcam"], [2], kinds=["class_model"], writer=out)
    client.multiplexer.Reload()
    client.provider.calls.clear()
    info = strict_json(get(client, "runs"))["runs"]["live/explanations"]
    assert [f.tags for name, f in client.provider.calls if name == "read_tensors"] == [frozenset([summary.INDEX_TAG])]
    assert info["methods"] == ["gradcam", "saliency"] and info["steps"] == [0, 1, 2]
    assert info["method_steps"] == {"gradcam": [2], "saliency": [0, 1, 2]} and info["pictures"]["class_model"]["steps"] == [2]
    # Training resumed by a new logger with one method: the run keeps the other's column.
    write_indexed(str(tmp_path), "live", 3, ["smoothgrad"], [3])
    # (A new server: a multiplexer's Reload may skip a third events file whose name sorts first.)
    info = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["live/explanations"]
    assert info["methods"] == ["gradcam", "saliency", "smoothgrad"] and info["steps"] == [0, 1, 2, 3]
    listed = make_client(str(tmp_path), wrap=lambda p: Hiding(p, summary.INDEX_TAG))
    assert strict_json(get(listed, "runs"))["runs"]["live/explanations"] == info
    # Logs of an older logger (no index) resumed by one that writes an index: it knows only its own
    # column, so its records say the run holds more, and the run is listed with every column.
    write_logs(str(tmp_path), runs=("old",), epochs=2)
    old = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["old/explanations"]
    write_indexed(str(tmp_path), "old", 3, ["smoothgrad"], [5])
    both = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["old/explanations"]
    assert both["methods"] == sorted(set(old["methods"]) | {"smoothgrad"}) and both["steps"] == old["steps"] + [5]


def test_an_indexed_runs_image_reads_the_blob_keys_of_its_block_at_once(tmp_path, monkeypatch):
    write_indexed(str(tmp_path), "run", 20, ["saliency", "gradcam"], range(2), kinds=["class_model"])
    client = make_client(str(tmp_path), wrap=CountingProvider)
    strict_json(get(client, "runs"))  # the index the blocks come from
    calls = client.provider.calls
    for tag, block in ((summary.map_tag("gradcam", 17), {summary.map_tag(m, i) for m in ("gradcam", "saliency") for i in (16, 17, 18, 19)}),
                       (summary.input_tag(3), {summary.input_tag(i) for i in range(16)}),
                       (summary.picture_tag("class_model", 2), {summary.picture_tag("class_model", k) for k in (0, 2)})):
        calls.clear()
        assert _rgb(get(client, "image", run="run/explanations", tag=tag, step=1)).ndim == 3
        assert [(name, f.tags if f else None) for name, f in calls] == [("read_blob_sequences", frozenset(block)), ("read_blob", None)]
        # The rest of the block costs one read_blob each, at any step.
        for other in sorted(block - {tag}):
            calls.clear()
            assert get(client, "image", run="run/explanations", tag=other, step=0).status_code == 200
            assert [name for name, _ in calls] == ["read_blob"]
    assert get(client, "image", run="run/explanations", tag=summary.map_tag("gradcam", 20), step=1).status_code == 404
    # More epochs, fewer images a read: about _KEYS_READ keys (here 8: 2 images x 2 methods x 2 epochs).
    monkeypatch.setattr(tb, "_KEYS_READ", 8)
    calls.clear()
    assert get(client, "image", run="run/explanations", tag=summary.map_tag("saliency", 5), step=1).status_code == 200
    assert calls[0][1].tags == {summary.map_tag(m, i) for m in ("gradcam", "saliency") for i in (4, 5)}


def test_an_unreadable_index_falls_back_to_the_listing(tmp_path):
    write_logs(str(tmp_path), runs=("bad",), epochs=1)
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "bad", summary.SUBDIR))
    with writer.as_default():
        tf.summary.write(summary.INDEX_TAG, tf.constant('{"images": [[2, 1]]}'), step=0,
                         metadata=summary._metadata("index", summary_pb2.DATA_CLASS_TENSOR))
    writer.close()
    info = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["bad/explanations"]
    assert info["images"] == [0, 1] and info["methods"] == ["gradcam", "saliency"]


@pytest.mark.parametrize("indexed", [True, False], ids=["one_tensor", "per_image"])
def test_predictions_of_some_images_read_only_those(tmp_path, indexed):
    write_indexed(str(tmp_path), "run", 150, ["saliency"], range(2))
    hide = () if indexed else (summary.PREDICTIONS_TAG,)
    client = make_client(str(tmp_path), wrap=lambda p: Volume(Hiding(p, *hide)))
    whole = strict_json(get(client, "predictions", run="run/explanations", step=1))
    assert sorted(map(int, whole)) == list(range(150))
    assert whole["4"] == {"predicted": 1, "predicted_probability": 0.5, "explained": 2,
                          "explained_probability": pytest.approx(0.26)}
    client = make_client(str(tmp_path), wrap=lambda p: Volume(Hiding(p, *hide)))
    some = strict_json(get(client, "predictions", run="run/explanations", step=1, images="0-63,100,149"))
    assert some == {k: whole[k] for k in [*map(str, range(64)), "100", "149"]}
    # One tensor: one tag listed and read; per image: the 66 tags asked for, not the 150.
    assert client.provider.series == (2 if indexed else 2 * 66)
    for bad in ("5-2", "a", "1,,2", "0-100000"):
        assert get(client, "predictions", run="run/explanations", step=1, images=bad).status_code == 400
    assert get(client, "predictions", run="nope", step=1, images="0-3").status_code == 404


@pytest.mark.parametrize("tag", [summary.map_tag("gradcam", 1), summary.picture_tag("class_model", 2)],
                         ids=["map", "picture"])
def test_image_reads_only_the_requested_tag(tmp_path, tag):
    write_logs(str(tmp_path), runs=("good",), epochs=2)
    client = make_client(str(tmp_path), wrap=CountingProvider)
    counter = client.provider
    for step, code in [(1, 200), (7, 404)]:
        counter.calls.clear()
        assert get(client, "image", run="good/explanations", tag=tag, step=step).status_code == code
        names = [name for name, _ in counter.calls]
        assert "list_blob_sequences" not in names and "list_tensors" not in names
        assert names == (["read_blob_sequences", "read_blob"] if code == 200 else ["read_blob_sequences"])
        run_filter = counter.calls[0][1]
        assert run_filter.runs == frozenset(["good/explanations"]) and run_filter.tags == frozenset([tag])
    # The tag's blob keys are kept: another step of it is one read_blob.
    counter.calls.clear()
    assert get(client, "image", run="good/explanations", tag=tag, step=0).status_code == 200
    assert [name for name, _ in counter.calls] == ["read_blob"]
    # A kept key whose blob went away: the tag is read again, once.
    counter.calls.clear()
    counter.lose_next_blob = True
    assert get(client, "image", run="good/explanations", tag=tag, step=0).status_code == 200
    assert [name for name, _ in counter.calls] == ["read_blob", "read_blob_sequences", "read_blob"]
    counter.calls.clear()
    assert get(client, "image", run="nope", tag=tag, step=1).status_code == 404
    assert [name for name, _ in counter.calls] == ["read_blob_sequences"]


def test_predictions_are_parsed_once_and_refreshed_when_new_epochs_arrive(tmp_path):
    write_logs(str(tmp_path), runs=("live",), epochs=2)
    client = make_client(str(tmp_path), wrap=CountingProvider)
    counter = client.provider
    assert sorted(strict_json(get(client, "predictions", run="live/explanations", step=1))) == ["0", "1"]
    assert strict_json(get(client, "predictions", run="live/explanations", step=2)) == {}
    counter.calls.clear()
    assert strict_json(get(client, "predictions", run="live/explanations", step=0))["0"]["predicted_probability"] == 0.5
    # Nothing read again: a listing of the one-tensor predictions tag (these logs have none), then
    # of the per-image tags.
    assert [name for name, _ in counter.calls] == ["list_tensors", "list_tensors"]
    assert counter.calls[0][1].tags == frozenset([summary.PREDICTIONS_TAG])
    # Training goes on: epoch 2 lands in a new events file; the tags' last step moves.
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "live", summary.SUBDIR))
    with writer.as_default():
        for i in range(2):
            summary.write_prediction(i, *prediction("live", i, 2), 2)
    writer.close()
    client.multiplexer.Reload()
    answer = strict_json(get(client, "predictions", run="live/explanations", step=2))
    assert answer["0"]["predicted_probability"] == pytest.approx(0.7) and answer["1"]["predicted"] == 0


def test_blob_key_cache_is_bounded_least_recently_used_first_out():
    cache = tb._BlobKeys(limit=5)
    cache.put("a", {0: "a0", 1: "a1"})
    cache.put("b", {0: "b0", 1: "b1"})
    assert cache.get("a") == {0: "a0", 1: "a1"}  # "a" is now the most recently used
    cache.put("c", {0: "c0", 1: "c1"})
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put("c", {0: "c0"})  # replacing an entry counts its new size only
    cache.put("d", {0: "d0", 1: "d1"})
    assert cache.get("a") and cache.get("c") and cache.get("d")


@pytest.mark.parametrize(
    "route, params, code",
    [
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0)), 400),  # no step
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="-1"), 400),
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="1e3"), 400),
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="99"), 404),
        ("image", dict(run="nope", tag=summary.map_tag("saliency", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag=summary.map_tag("occlusion", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 1000), step="0"), 404),
        ("image", dict(run="good/explanations", tag="../../../etc/passwd", step="0"), 400),
        ("image", dict(run="../../../etc", tag=summary.map_tag("saliency", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag="explanations/saliency", step="0"), 400),
        ("image", dict(run="good/explanations", tag=summary.prediction_tag(0), step="0"), 400),
        ("image", dict(run="good/explanations", tag="keras_interp/class_model/07", step="0"), 400),
        ("image", dict(run="good/explanations", tag="keras_interp/class_model/000/000", step="0"), 400),
        ("image", dict(run="good/explanations", tag="keras_interp/no_such_kind/000", step="0"), 400),
        ("image", dict(run="good/explanations", tag="keras_interp/class_model/", step="0"), 400),
        ("image", dict(run="good/explanations", tag=summary.picture_tag("class_model", 0), step="99"), 404),
        ("image", dict(run="good/explanations", tag=summary.picture_tag("class_model", 7), step="0"), 404),
        ("predictions", dict(run="good/explanations"), 400),
        ("predictions", dict(step="0"), 400),
        ("predictions", dict(run="missing", step="0"), 404),
        ("scalars", dict(), 400),
        ("scalars", dict(run="/etc/passwd"), 404),
        ("nothing-here", dict(), 404),
    ],
)
def test_bad_or_missing_parameters_never_give_500(client, route, params, code):
    assert get(client, route, **params).status_code == code


def test_frontend_modules_are_javascript_with_relative_urls_and_no_html_injection(client):
    names = sorted(n for n in os.listdir(os.path.join(os.path.dirname(tb.__file__), "static")) if n.endswith(".js"))
    assert "index.js" in names
    for name in names:
        response = get(client, name)
        assert response.status_code == 200 and response.mimetype == "text/javascript", name
        source = response.get_data(as_text=True)
        assert "innerHTML" not in source and "eval(" not in source and "insertAdjacentHTML" not in source, name
        assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source, name
        assert 'fetch("/' not in source and 'import("/' not in source and "from \"/" not in source, name
        if name == "index.js":
            assert "export async function render" in source
        # URLs are built relative to the module (import.meta.url), so --path_prefix works.
        assert "fetch(" not in source or "import.meta.url" in source or "from \"./" in source, name
    assert get(client, "missing.js").status_code == 404


def test_the_tag_contract_matches_the_writer():
    assert tb.PLUGIN_NAME == summary.PLUGIN_NAME
    assert tb.INPUT_TAG.match(summary.input_tag(7)).group(1) == "007"
    assert tb.INPUT_TAG.match(summary.input_tag(1000)).group(1) == "1000"
    assert tb.MAP_TAG.match(summary.map_tag("gradcam++", 12)).groups() == ("gradcam++", "012")
    assert tb.MAP_TAG.match(summary.map_tag("saliency", 1234)).groups() == ("saliency", "1234")
    assert tb.PREDICTION_TAG.match(summary.prediction_tag(3)).group(1) == "003"
    assert tb.PREDICTION_TAG.match(summary.prediction_tag(99999)).group(1) == "99999"
    assert not tb.INPUT_TAG.match("keras_interp/input/07")
    assert tb.SCALAR_PREFIX == summary.SCALAR_PREFIX
    assert tb.PICTURE_KINDS == summary.PICTURE_KINDS
    for kind in summary.PICTURE_KINDS:
        assert tb.PICTURE_TAG.match(summary.picture_tag(kind, 7)).groups() == (kind, "007")
        assert tb.PICTURE_TAG.match(summary.picture_tag(kind, 1000)).groups() == (kind, "1000")
        # A kind is one path segment that no other tag family uses, so a tag has one meaning.
        assert re.fullmatch(r"[a-z0-9_]+", kind) and kind not in ("input", "map", "prediction")
    for tag in (summary.input_tag(7), summary.map_tag("saliency", 7), summary.prediction_tag(7)):
        assert not tb.PICTURE_TAG.match(tag)


def _events(logdir):
    import glob

    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value))
    return out


def test_writer_metadata_prediction_layout_and_map_labels(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        summary.write_prediction(3, math.nan, math.nan, 2, 0.125, step=4)
        summary.write_map("cam", 3, np.ones((4, 4)), 4, label="Grad-CAM (cam fallback: no GAP head)")
        summary.write_map("saliency", 3, np.arange(16.0).reshape(4, 4), 4)
    writer.close()
    events = _events(str(tmp_path))
    (step, value), = events[summary.prediction_tag(3)]
    content = json.loads(value.metadata.plugin_data.content)
    assert step == 4 and value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert content["fields"] == ["predicted_class", "predicted_probability", "explained_class", "explained_probability"]
    vector = tf.make_ndarray(value.tensor)
    assert vector.dtype == np.float32 and np.isnan(vector[:2]).all() and list(vector[2:]) == [2, 0.125]
    labels = {tag: json.loads(v[0][1].metadata.plugin_data.content)["label"] for tag, v in events.items() if "/map/" in tag}
    assert labels == {summary.map_tag("cam", 3): "Grad-CAM (cam fallback: no GAP head)", summary.map_tag("saliency", 3): "saliency"}


def test_writer_metadata_of_pictures(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        summary.write_picture("class_model", 2, class_model_picture(2, 0), 3, label="cat")
    writer.close()
    (step, value), = _events(str(tmp_path))["keras_interp/class_model/002"]
    assert step == 3 and value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert value.metadata.plugin_data.plugin_name == tb.PLUGIN_NAME
    assert json.loads(value.metadata.plugin_data.content) == {
        "version": 3, "kind": "class_model", "index": 2, "title": "class models", "label": "cat"}


def _png_chunks(png):
    """(type, data) of every chunk, each CRC checked: a reference PNG reader beside the writer."""
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        kind, data = png[offset + 4:offset + 8], png[offset + 8:offset + 8 + length]
        assert int.from_bytes(png[offset + 8 + length:offset + 12 + length], "big") == zlib.crc32(kind + data)
        chunks.append((kind, data))
        offset += 12 + length
    return chunks


@pytest.mark.parametrize("case", ["normal", "signed_small_negative", "positive", "constant", "tiny_range"])
def test_map_png_holds_the_real_values(case):
    import cv2

    rng = np.random.default_rng(1)
    map_ = {"normal": rng.normal(size=(13, 7)) * 3.5,
            "signed_small_negative": np.concatenate([-rng.uniform(0, 0.01, (4, 9)), rng.uniform(0, 5, (5, 9))]),
            "positive": rng.uniform(2, 3, (8, 8)),
            "constant": np.full((3, 5), -2.25),
            "tiny_range": 1e6 + rng.uniform(0, 1e-3, (6, 6))}[case]
    png = summary.encode_map(map_)
    chunks = _png_chunks(png)
    assert [k for k, _ in chunks][:2] == [b"IHDR", b"tEXt"] and chunks[-1][0] == b"IEND"
    key, text = chunks[1][1].split(b"\0", 1)
    info = json.loads(text)
    assert key == b"keras_interp" and info == {"encoding": "rg16", "lo": map_.min(), "hi": map_.max()}
    # 16-bit levels over [lo, hi]: R the high byte, G the low byte, B = 0 (an independent decode).
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    assert rgb.shape == map_.shape + (3,) and (rgb[..., 2] == 0).all()
    span = map_.max() - map_.min()
    level = (rgb[..., 0] * 256 + rgb[..., 1]) / 65535
    np.testing.assert_allclose(map_.min() + level * span, map_, rtol=0, atol=span / 65535 / 2 * 1.0001 + 1e-9)
    decoded = summary.decode_map(png)
    np.testing.assert_allclose(decoded, map_, rtol=0, atol=span / 65535 / 2 * 1.0001 + 1e-9)
    if case == "signed_small_negative":  # the small negative part keeps its sign and size
        assert (decoded[:4] < 0).all() and (decoded[4:] > 0).all()
        np.testing.assert_allclose(decoded[:4], map_[:4], atol=span / 65535)


def test_maps_of_older_logs_decode_as_scaled_grey():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    np.testing.assert_array_equal(summary.decode_map(summary.encode_png(grey)), grey / 255)


def test_a_map_read_through_tensorboard_decodes_to_the_map_written(tmp_path):
    maps = {step: np.random.default_rng(step).normal(size=(9, 11)) for step in range(3)}
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "r", summary.SUBDIR))
    with writer.as_default():
        for step, map_ in maps.items():
            summary.write_map("integrated_gradients", 4, map_, step)
    writer.close()
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["r/explanations"]
    for step, map_ in maps.items():
        response = get(client, "image", run="r/explanations", tag=summary.map_tag("integrated_gradients", 4), step=step)
        span = map_.max() - map_.min()
        np.testing.assert_allclose(summary.decode_map(response.get_data()), map_, atol=span / 65535)
        assert "max-age" not in response.headers.get("Cache-Control", "")  # no version: not cached
        cached = get(client, "image", run="r/explanations", tag=summary.map_tag("integrated_gradients", 4), step=step,
                     v=info["version"])
        assert cached.get_data() == response.get_data()
        assert "max-age=31536000" in cached.headers["Cache-Control"]
    meta = _events(os.path.join(str(tmp_path), "r", summary.SUBDIR))[summary.map_tag("integrated_gradients", 4)][0][1].metadata
    assert json.loads(meta.plugin_data.content)["encoding"] == "rg16"


def test_quality_per_image_is_listed_and_served_per_step_as_strict_json(tmp_path):
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "r", summary.SUBDIR))
    with writer.as_default():
        summary.write_map("gradcam", 0, np.eye(3), 0)
        for step in (0, 1):
            summary.write_quality("gradcam", {"pointing_game": [1.0, 0.0, 1.0], "energy": [0.5 + step, np.nan, 0.25]}, step)
        summary.write_quality("saliency", {"deletion_auc": [0.1, 0.2, 0.3]}, 1)
    writer.close()
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["r/explanations"]
    assert info["quality"] == {"gradcam": ["pointing_game", "energy"], "saliency": ["deletion_auc"]}
    assert strict_json(get(client, "quality", run="r/explanations", step=0)) == {
        "gradcam": {"pointing_game": [1.0, 0.0, 1.0], "energy": [0.5, None, 0.25]}}
    answer = strict_json(get(client, "quality", run="r/explanations", step=1))
    assert answer["gradcam"]["energy"] == [1.5, None, 0.25] and answer["saliency"] == {"deletion_auc": pytest.approx([0.1, 0.2, 0.3])}
    assert strict_json(get(client, "quality", run="r/explanations", step=7)) == {}
    assert get(client, "quality", run="nope", step=0).status_code == 404
    assert get(client, "quality", run="r/explanations", step="x").status_code == 400
    with pytest.raises(ValueError, match="equally long"):
        summary.write_quality("gradcam", {"energy": [1.0], "pointing_game": [1.0, 0.0]}, 0)
    with pytest.raises(ValueError):
        summary.picture_tag("quality", 0)  # a picture kind may not take the quality family's name


def test_how_to_read_each_method_reaches_runs_from_the_first_map_and_bad_values_are_refused(tmp_path):
    writer = tf.summary.create_file_writer(os.path.join(str(tmp_path), "r", summary.SUBDIR))
    with writer.as_default():
        summary.write_map("occlusion", 0, np.eye(3), 0, signed=True, clip=(0, 99.9))
        summary.write_map("saliency", 0, np.eye(3), 0, signed=False, clip=[62, 99.9])
        summary.write_map("custom", 0, np.eye(3), 0)
        for bad in ((50, 10), (0, 101), (1, 2, 3)):
            with pytest.raises(ValueError, match="clip must be two percentiles"):
                summary.write_map("saliency", 1, np.eye(3), 0, clip=bad)
    writer.close()
    info = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["r/explanations"]
    assert info["signed"] == {"custom": None, "occlusion": True, "saliency": False}
    assert info["clip"] == {"custom": None, "occlusion": [0, 99.9], "saliency": [62, 99.9]}


def test_explainers_declare_how_their_maps_read():
    from conftest import tiny_cnn

    model = tiny_cnn()
    assert ki.CAM(model).signed and ki.Occlusion(model).signed and ki.GradCAM(model, relu=False).signed
    for explainer in (ki.Saliency(model), ki.SmoothGrad(model), ki.IntegratedGradients(model), ki.GradCAM(model),
                      ki.GradCAMPlusPlus(model), ki.LayerCAM(model), ki.ScoreCAM(model), ki.Deconvnet(model),
                      ki.GuidedBackprop(model)):
        assert not explainer.signed, type(explainer).__name__
    assert ki.CAM(model).display_clip == ki.Occlusion(model).display_clip == ki.ScoreCAM(model).display_clip == (0.0, 99.9)
    assert ki.Saliency(model).display_clip == ki.IntegratedGradients(model).display_clip == (62.0, 99.9)
    # What an unsigned declaration promises: a ReLU'd or absolute map is never negative.
    x = np.random.default_rng(0).normal(size=(3, 12, 12, 3)).astype("float32")
    for explainer in (ki.Saliency(model), ki.GradCAM(model), ki.ScoreCAM(model), ki.IntegratedGradients(model)):
        assert explainer.explain(x).min() >= 0, type(explainer).__name__
    assert ki.GradCAM(model, relu=False).explain(x).min() < 0 and ki.CAM(model).explain(x).min() < 0


def test_the_run_version_changes_when_the_run_is_written_again(tmp_path):
    import shutil
    import time

    def write(path):
        writer = tf.summary.create_file_writer(os.path.join(path, "r", summary.SUBDIR))
        with writer.as_default():
            summary.write_map("saliency", 0, np.eye(3), 0)
        writer.close()

    write(str(tmp_path))
    first = strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["r/explanations"]["version"]
    assert strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["r/explanations"]["version"] == first
    shutil.rmtree(os.path.join(str(tmp_path), "r"))
    time.sleep(0.01)
    write(str(tmp_path))
    assert strict_json(get(make_client(str(tmp_path)), "runs"))["runs"]["r/explanations"]["version"] != first


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_map_rejects_non_finite_maps(tmp_path, bad):
    map_ = np.ones((4, 4))
    map_[1, 2] = bad
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(), pytest.raises(ValueError, match="non-finite"):
        summary.write_map("saliency", 0, map_, 0)
    writer.close()
    assert summary.map_tag("saliency", 0) not in _events(str(tmp_path))


def test_entry_point_and_light_imports():
    entry = [e for e in metadata.entry_points(group="tensorboard_plugins") if e.name == "keras_interp"]
    assert entry and entry[0].value == "tb_plugin.plugin:ExplanationsPlugin"
    # The plugin imports the tag contract (keras_interp.tags), never TensorFlow or Keras.
    code = ("import sys, tb_plugin.plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_interp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['keras_interp', 'keras_interp.registry', 'keras_interp.tags']"


def test_deconvnet_guided_backprop_and_class_models_reach_the_dashboard(tmp_path):
    """From the logger's registry: listed by the plugin, the maps' PNGs the explainers' maps, one class
    model per class."""
    import keras

    import keras_interp as ki
    from conftest import tiny_cnn

    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(8, 12, 12, 3)).astype("float32"), rng.integers(0, 3, size=8)
    logger = ki.ExplanationLogger(x[:2], str(tmp_path / "run"), methods=("deconvnet", "guided_backprop", "class_model"),
                                  class_names=CLASS_NAMES)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["run/explanations"]
    assert sorted(info["methods"]) == ["deconvnet", "guided_backprop"] and info["steps"] == [0]
    assert info["pictures"]["class_model"] == {"title": "class models", "indices": [0, 1, 2], "steps": [0],
                                               "labels": {str(c): CLASS_NAMES[c] for c in range(3)}}
    png = get(client, "image", run="run/explanations", tag=summary.picture_tag("class_model", 2), step=0)
    assert tf.io.decode_png(png.get_data()).shape == (12, 12, 3)
    for method, cls in (("deconvnet", ki.Deconvnet), ("guided_backprop", ki.GuidedBackprop)):
        want = cls(model).explain(x[:2])
        for i in (0, 1):
            response = get(client, "image", run="run/explanations", tag=summary.map_tag(method, i), step=0)
            grey = tf.io.decode_png(response.get_data()).numpy()[..., 0].astype(float)
            scaled = (want[i] - want[i].min()) / (want[i].max() - want[i].min()) * 255
            np.testing.assert_allclose(grey, scaled, atol=1.0)
    keras.backend.clear_session()
