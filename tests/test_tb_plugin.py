"""The Explanations plugin over a WSGI test client, on logs written by ExplanationLogger."""

import json
import os
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
import werkzeug.test
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import summary
from tb_plugin import plugin as tb

HOSTILE = "<img src=x onerror=alert(1)>"


def write_logs(logdir, runs=("good", HOSTILE), epochs=2):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, size=8)
    masks = np.zeros((2, 12, 12), bool)
    masks[:, 2:6, 2:6] = True
    for run in runs:
        model = tiny_cnn()
        model.compile("adam", "sparse_categorical_crossentropy")
        logger = ki.ExplanationLogger(x[:2], os.path.join(logdir, run), methods=("saliency", "gradcam"),
                                      labels=y[:2], masks=masks, class_names=["a", "b", HOSTILE])
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=[logger])
    return y[:2]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("logs"))
    labels = write_logs(logdir)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    context = base_plugin.TBContext(logdir=logdir, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir))
    app = application.TensorBoardWSGI([tb.ExplanationsPlugin(context)])
    return werkzeug.test.Client(app), labels


def get(client, route, **params):
    return client.get(f"/data/plugin/{tb.PLUGIN_NAME}/{route}", query_string=params)


def test_runs_lists_images_methods_steps_and_names(served):
    client, _ = served
    response = get(client, "runs")
    assert response.status_code == 200
    runs = json.loads(response.get_data())["runs"]
    assert sorted(runs) == sorted(["good/explanations", f"{HOSTILE}/explanations"])
    for info in runs.values():
        assert info == {"images": [0, 1], "methods": ["gradcam", "saliency"], "steps": [0, 1],
                        "class_names": ["a", "b", HOSTILE]}


def test_images_are_pngs_of_the_right_size(served):
    client, _ = served
    import cv2

    for tag, step, shape in [(summary.map_tag("saliency", 1), 1, (12, 12)), (summary.input_tag(0), 1, (12, 12, 3))]:
        response = get(client, "image", run="good/explanations", tag=tag, step=step)
        assert response.status_code == 200 and response.mimetype == "image/png"
        picture = cv2.imdecode(np.frombuffer(response.get_data(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert picture.shape == shape


def test_predictions_and_scalars(served):
    client, labels = served
    predictions = json.loads(get(client, "predictions", run="good/explanations", step=1).get_data())
    assert sorted(predictions) == ["0", "1"]
    for i in (0, 1):
        assert predictions[str(i)]["explained"] == labels[i] and 0 < predictions[str(i)]["confidence"] < 1
    scalars = json.loads(get(client, "scalars", run="good/explanations").get_data())
    assert [p[0] for p in scalars["explanations/confidence"]] == [0, 1]
    assert "explanations/gradcam/pointing_game" in scalars and "explanations/saliency/energy" in scalars


@pytest.mark.parametrize(
    "route, params, code",
    [
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0)), 400),  # no step
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="-1"), 400),
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="1e3"), 400),
        ("image", dict(run="good/explanations", tag=summary.map_tag("saliency", 0), step="99"), 404),
        ("image", dict(run="nope", tag=summary.map_tag("saliency", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag=summary.map_tag("occlusion", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag="../../../etc/passwd", step="0"), 400),
        ("image", dict(run="../../../etc", tag=summary.map_tag("saliency", 0), step="0"), 404),
        ("image", dict(run="good/explanations", tag="explanations/saliency", step="0"), 400),
        ("predictions", dict(run="good/explanations"), 400),
        ("predictions", dict(step="0"), 400),
        ("predictions", dict(run="missing", step="0"), 404),
        ("scalars", dict(), 400),
        ("scalars", dict(run="/etc/passwd"), 404),
        ("nothing-here", dict(), 404),
    ],
)
def test_bad_or_missing_parameters_never_give_500(served, route, params, code):
    client, _ = served
    assert get(client, route, **params).status_code == code


def test_frontend_module_is_javascript_with_relative_urls_and_no_html_injection(served):
    client, _ = served
    response = get(client, "index.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    source = response.get_data(as_text=True)
    assert "export async function render" in source
    assert "innerHTML" not in source and "eval(" not in source
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source
    assert 'fetch("/' not in source and "import.meta.url" in source


def test_the_tag_contract_matches_the_writer():
    assert tb.PLUGIN_NAME == summary.PLUGIN_NAME
    assert tb.INPUT_TAG.match(summary.input_tag(7)).group(1) == "007"
    assert tb.MAP_TAG.match(summary.map_tag("gradcam++", 12)).groups() == ("gradcam++", "012")
    assert tb.PREDICTION_TAG.match(summary.prediction_tag(3)).group(1) == "003"
    assert tb.SCALAR_PREFIX == summary.SCALAR_PREFIX


def test_entry_point_and_light_imports():
    entry = [e for e in metadata.entry_points(group="tensorboard_plugins") if e.name == "keras_interp"]
    assert entry and entry[0].value == "tb_plugin.plugin:ExplanationsPlugin"
    code = ("import sys, tb_plugin.plugin; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'keras_interp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
