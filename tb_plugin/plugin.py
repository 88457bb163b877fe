"""The "Explanations" dashboard: reads what keras_interp.summary writes, via the data provider.

Import-time code uses only the standard library, tensorboard and werkzeug, never TensorFlow or
keras_interp: this module is loaded through the `tensorboard_plugins` entry point and an
ImportError here would take all of TensorBoard down. The tag scheme below mirrors
keras_interp/summary.py; tests on both sides pin it.
"""

import json
import os
import re

import werkzeug
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

PLUGIN_NAME = "keras_interp"
INPUT_TAG = re.compile(r"^keras_interp/input/(\d{3})$")
MAP_TAG = re.compile(r"^keras_interp/map/([^/]+)/(\d{3})$")
PREDICTION_TAG = re.compile(r"^keras_interp/prediction/(\d{3})$")
SCALAR_PREFIX = "explanations/"
_STATIC = os.path.join(os.path.dirname(__file__), "static")
_ALL = 1_000_000  # no downsampling: the server already keeps at most --samples_per_plugin


class _Error(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _json(request, value, code=200):
    return http_util.Respond(request, json.dumps(value), "application/json", code=code)


def _route(handler):
    def wrapped(self, request):
        try:
            return handler(self, request)
        except _Error as error:
            return http_util.Respond(request, str(error), "text/plain", code=error.code)

    return wrapped


class ExplanationsPlugin(base_plugin.TBPlugin):
    plugin_name = PLUGIN_NAME

    def __init__(self, context):
        self._provider = context.data_provider
        # Read the frontend once, so that no route touches the file system.
        with open(os.path.join(_STATIC, "index.js"), encoding="utf-8") as f:
            self._index_js_source = f.read()

    def get_plugin_apps(self):
        return {
            "/index.js": self._index_js,
            "/runs": self._runs,
            "/image": self._image,
            "/predictions": self._predictions,
            "/scalars": self._scalars,
        }

    def is_active(self):
        return False  # activation comes from data_plugin_names()

    def data_plugin_names(self):
        return (PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Explanations")

    @werkzeug.wrappers.Request.application
    def _index_js(self, request):
        return http_util.Respond(request, self._index_js_source, "text/javascript")

    def _context(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _blob_series(self, request, run=None):
        ctx, eid = self._context(request)
        run_filter = provider.RunTagFilter(runs=[run]) if run is not None else None
        return self._provider.list_blob_sequences(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                                  run_tag_filter=run_filter)

    def _param(self, request, name):
        value = request.args.get(name)
        if value is None or value == "":
            raise _Error(400, f"missing parameter {name!r}")
        return value

    def _step(self, request):
        value = self._param(request, "step")
        if not re.fullmatch(r"\d{1,12}", value):
            raise _Error(400, "step must be a non-negative integer")
        return int(value)

    def _run_tags(self, request, run):
        tags = self._blob_series(request, run).get(run)
        if not tags:
            raise _Error(404, "unknown run")
        return tags

    @werkzeug.wrappers.Request.application
    @_route
    def _runs(self, request):
        ctx, eid = self._context(request)
        series = self._blob_series(request)
        result = {}
        for run, tags in series.items():
            images = sorted(int(m.group(1)) for m in map(INPUT_TAG.match, tags) if m)
            methods = sorted({m.group(1) for m in map(MAP_TAG.match, tags) if m})
            if not methods:
                continue
            class_names = []
            for tag, meta in tags.items():
                if INPUT_TAG.match(tag):
                    try:
                        class_names = json.loads(meta.plugin_content or b"{}").get("class_names") or []
                    except ValueError:
                        class_names = []
                    break
            first_map = f"keras_interp/map/{methods[0]}/{images[0] if images else 0:03d}"
            data = self._provider.read_blob_sequences(
                ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=[first_map]),
            )
            steps = sorted({d.step for d in data.get(run, {}).get(first_map, [])})
            result[run] = {"images": images, "methods": methods, "steps": steps, "class_names": class_names}
        return _json(request, {"runs": result})

    @werkzeug.wrappers.Request.application
    @_route
    def _image(self, request):
        run, tag, step = self._param(request, "run"), self._param(request, "tag"), self._step(request)
        if not (INPUT_TAG.match(tag) or MAP_TAG.match(tag)):
            raise _Error(400, "tag is not an explanation image tag")
        if tag not in self._run_tags(request, run):
            raise _Error(404, "unknown tag")
        ctx, eid = self._context(request)
        data = self._provider.read_blob_sequences(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        ).get(run, {}).get(tag, [])
        # Inputs are written once: any step serves them. Maps must match the step.
        chosen = [d for d in data if d.step == step] or (data[:1] if INPUT_TAG.match(tag) else [])
        if not chosen or not chosen[0].values:
            raise _Error(404, "no image at this step")
        blob = self._provider.read_blob(ctx, blob_key=chosen[0].values[0].blob_key)
        return http_util.Respond(request, blob, "image/png")

    @werkzeug.wrappers.Request.application
    @_route
    def _predictions(self, request):
        run, step = self._param(request, "run"), self._step(request)
        self._run_tags(request, run)
        ctx, eid = self._context(request)
        tensors = self._provider.read_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        ).get(run, {})
        result = {}
        for tag, data in tensors.items():
            match = PREDICTION_TAG.match(tag)
            chosen = [d for d in data if d.step == step]
            if match and chosen:
                predicted, confidence, explained = (float(v) for v in chosen[0].numpy.reshape(-1)[:3])
                result[str(int(match.group(1)))] = {
                    "predicted": int(predicted), "confidence": confidence, "explained": int(explained)
                }
        return _json(request, result)

    @werkzeug.wrappers.Request.application
    @_route
    def _scalars(self, request):
        run = self._param(request, "run")
        self._run_tags(request, run)
        ctx, eid = self._context(request)
        scalars = self._provider.read_scalars(
            ctx, experiment_id=eid, plugin_name="scalars", downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        ).get(run, {})
        return _json(request, {
            tag: [[d.step, d.value] for d in data] for tag, data in scalars.items() if tag.startswith(SCALAR_PREFIX)
        })
