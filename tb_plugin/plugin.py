"""The "Explanations" dashboard: reads what keras_interp.summary writes, via the data provider.

Import-time code uses only the standard library, tensorboard, werkzeug and keras_interp.tags
(the tag contract the writer uses too, which imports no TensorFlow; importing the keras_interp
package itself imports nothing heavy), never TensorFlow: this module is loaded through the
`tensorboard_plugins` entry point and an ImportError here would take all of TensorBoard down.

Routes (all JSON is strict: non-finite numbers are sent as null):

- /index.js and every other module in static/ (/maps.js, /detail.js): the frontend.
- /runs: from each run's index record (keras_interp.summary.write_index; runs without one are
  listed tag by tag), so it does not grow with images x methods: per run with maps or pictures, the image indices, methods, `labels` (method -> column
  name from the map tags' metadata), `signed` (method -> whether its maps can be negative, null
  when unknown), `clip` (method -> its default percentile clip [low, high], or null),
  `image_labels` (str(index) -> the true class or null), `version` (the run's first write time:
  changes when the run is written again), `steps` (the union of the steps of every method and
  picture kind), `method_steps` (method -> its steps), `class_names`, `labeled` (whether true labels were
  logged) and `pictures`: kind -> {title (its display name), indices, labels (str(index) -> caption,
  e.g. the class name), steps}, for each kind of PICTURE_KINDS the run logged ({} when none).
- /image?run&tag&step[&v]: one PNG of an input, map or picture tag, read through that tag alone
  (never a listing of the run's tags); the tag's step -> blob key map is kept, so its other steps
  cost one read_blob. With `v` (the run's version) the browser may cache the answer for a year.
- /predictions?run&step[&images]: image index -> {predicted, predicted_probability, explained,
  explained_probability}, null where unknown, for every image or those in `images` ("0-63,100");
  from the run's one-tensor predictions record, else its per-image tags (the 4-value layout and
  the older 3-value one). Parsed once per tag and kept until the tag gets new data.
- /quality?run&step: method -> {measure: [value or null per image index]}: each image's pointing
  game hit, energy, deletion and insertion AUC of that method's map (those the logger computed;
  /runs lists them per run as `quality`: method -> measures).
- /scalars?run: the run's `explanations/...` scalars as [[step, value or null], ...].
"""

import collections
import json
import math
import os
import re
import threading

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

# The tag contract, shared with the writer (keras_interp.tags imports no TensorFlow).
from keras_interp.tags import (  # noqa: E402
    INDEX_TAG, INPUT_TAG, LEGACY_PREDICTION_FIELDS, MAP_TAG, PICTURE_KINDS, PICTURE_TAG, PLUGIN_NAME, PREDICTION_FIELDS,
    PREDICTION_TAG, PREDICTIONS_TAG, QUALITY_TAG, SCALAR_PREFIX, input_tag, map_tag, picture_tag, prediction_tag,
)

_STATIC = os.path.join(os.path.dirname(__file__), "static")
_ALL = 1_000_000  # no downsampling: the server already keeps at most --samples_per_plugin
_RUNS_CACHED = 32  # runs whose parsed predictions are kept
# Runs whose parsed index is kept: every listed run's, since /runs (polled by every open page)
# would otherwise read every index again once there are more runs than this. An index is a few
# kilobytes (its images as ranges, one label per image).
_INDEXES_CACHED = 4096
_CACHE_SECONDS = 365 * 24 * 3600  # /image answers that carry the run's version
_KEYS_BLOCK = 16  # at most this many images whose map (input) blob keys are read together
_KEYS_READ = 2048  # about this many (tag, step) blob keys in one such read
_IMAGES_ASKED = 100_000  # at most this many images in one /predictions?images=
_ANSWERS_CACHED = 64  # built /predictions answers kept per run (steps)
_BLOB_KEYS_CACHED = 200_000  # at most this many (tag, step) -> blob key entries (a few tens of MB)


class _BlobKeys:
    """(experiment, run, tag) -> {step: blob key}, least recently used first out.

    A blob key names its step, so it stays valid; a step not found (a new epoch of a run still
    training) makes the caller read the tag again. With the Rust data server every call is a gRPC
    round trip, so an image whose tag was read before costs one call instead of two.
    """

    def __init__(self, limit=_BLOB_KEYS_CACHED):
        self._entries, self._size, self._limit = collections.OrderedDict(), 0, limit
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            keys = self._entries.get(key)
            if keys is not None:
                self._entries.move_to_end(key)
            return keys

    def put(self, key, keys):
        with self._lock:
            old = self._entries.pop(key, None)
            self._size += len(keys) - (len(old) if old else 0)
            self._entries[key] = keys
            while self._size > self._limit and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped)


class _Error(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _finite(value):
    """A float, or None for NaN, inf and anything that is not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _strict(value):
    """`value` with every non-finite float replaced by None, so json.dumps(allow_nan=False) holds."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _json(request, value, code=200):
    return http_util.Respond(request, json.dumps(_strict(value), allow_nan=False), "application/json", code=code)


def _content(meta):
    """The JSON metadata content of a time series ({} when absent or unreadable)."""
    try:
        content = json.loads(getattr(meta, "plugin_content", None) or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def _signed(value):
    return value if isinstance(value, bool) else None


def _clip(value):
    """A map's default percentile clip [low, high] from its metadata, or None."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = (_finite(v) for v in value)
    return [low, high] if low is not None and high is not None and 0 <= low < high <= 100 else None


def _class(value):
    value = _finite(value)
    return None if value is None else int(round(value))


def parse_prediction(values, fields=None):
    """One logged prediction vector -> {predicted, predicted_probability, explained, explained_probability}.

    The layout comes from the tag's `fields` metadata, else from the vector's length (4: the
    current layout, 3: the older one). In the older layout the one probability is the explained
    class's; it is the predicted class's too only when both classes are the same.
    """
    values = [float(v) for v in values]
    if not isinstance(fields, (list, tuple)) or len(fields) != len(values) or not all(isinstance(f, str) for f in fields):
        fields = {4: PREDICTION_FIELDS, 3: LEGACY_PREDICTION_FIELDS}.get(len(values), PREDICTION_FIELDS[: len(values)])
    named = dict(zip(fields, values))
    predicted, explained = _class(named.get("predicted_class")), _class(named.get("explained_class"))
    explained_probability = _finite(named.get("explained_probability", named.get("confidence")))
    if "predicted_probability" in named:
        predicted_probability = _finite(named["predicted_probability"])
    elif predicted is not None and predicted == explained:
        predicted_probability = explained_probability
    else:
        predicted_probability = None
    return {"predicted": predicted, "predicted_probability": predicted_probability,
            "explained": explained, "explained_probability": explained_probability}


def parse_quality(values, fields):
    """One logged quality tensor (n_images, n_measures) -> {measure: [value or None per image]}."""
    values = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    if not isinstance(fields, (list, tuple)) or len(fields) != values.shape[1]:
        fields = [f"measure_{k}" for k in range(values.shape[1])]
    return {str(field): [_finite(v) for v in values[:, k]] for k, field in enumerate(fields)}


def _ranges(value):
    """Image indices from an index record's half-open [start, stop] ranges (ValueError if malformed)."""
    indices = []
    for start, stop in value:
        if isinstance(start, bool) or isinstance(stop, bool) or not (isinstance(start, int) and isinstance(stop, int)) \
                or not 0 <= start < stop:
            raise ValueError(f"bad range {[start, stop]!r}")
        indices.extend(range(start, stop))
    return indices


def _index_record(text):
    """One index record (its JSON bytes) -> {images: {index: label}, class_names, methods:
    {m: {label, signed, clip}}, quality: {m: fields}, pictures: {kind: {title, labels: {index: label}}}},
    or None when it is not one this plugin can read."""
    try:
        record = json.loads(text)
        images = _ranges(record["images"])
        labels = record.get("labels")
        labels = [_class(v) for v in labels] if isinstance(labels, list) and len(labels) == len(images) else [None] * len(images)
        methods = {str(m): {"label": v.get("label") if isinstance(v.get("label"), str) and v.get("label") else str(m),
                            "signed": _signed(v.get("signed")), "clip": _clip(v.get("clip"))}
                   for m, v in (record.get("methods") or {}).items() if isinstance(v, dict) and "/" not in str(m)}
        pictures = {}
        for kind, v in (record.get("pictures") or {}).items():
            if kind not in PICTURE_KINDS or not isinstance(v, dict):
                continue
            indices, names = v.get("indices") or [], v.get("labels") or []
            if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in indices):
                continue
            names = names if isinstance(names, list) and len(names) == len(indices) else [str(k) for k in indices]
            title = v.get("title")
            pictures[kind] = {"title": title if isinstance(title, str) and title else PICTURE_KINDS[kind],
                              "labels": {k: str(n) if n not in (None, "") else str(k) for k, n in zip(indices, names)}}
        return {"complete": record.get("complete", True) is not False,
                "images": dict(zip(images, labels)),
                "class_names": [str(n) for n in record.get("class_names") or []],
                "methods": methods,
                "quality": {str(m): [str(f) for f in fields] for m, fields in (record.get("quality") or {}).items()
                            if isinstance(fields, list)},
                "pictures": pictures}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        return None


def _merge_index(records):
    """The content of a run from its index records in step order (None when none is readable, or
    when one says the run holds tags it does not describe: the run is then listed tag by tag).

    Sets are unions; what a tag's metadata would hold (labels, titles, a method's column settings)
    comes from the first record that has it, as TensorBoard keeps each tag's first metadata.
    """
    records = [r for r in records if r is not None]
    if not records or not all(r["complete"] for r in records):
        return None  # the run also holds tags no index describes (resumed over older logs): list them
    image_labels, class_names, methods, quality, pictures = {}, [], {}, {}, {}
    for record in records:
        for i, label in record["images"].items():
            image_labels.setdefault(i, label)
        class_names = class_names or record["class_names"]
        for m, v in record["methods"].items():
            methods.setdefault(m, v)
        for m, fields in record["quality"].items():
            quality.setdefault(m, fields)
        for kind, v in record["pictures"].items():
            entry = pictures.setdefault(kind, {"title": v["title"], "labels": {}})
            for k, label in v["labels"].items():
                entry["labels"].setdefault(k, label)
    # A method's (a kind's) first tag: that of its lowest image (picture), as a listing finds it.
    first = min(image_labels) if image_labels else 0
    return {
        "image_labels": image_labels,
        "class_names": class_names,
        "methods": {m: {**v, "first": map_tag(m, first)} for m, v in methods.items()},
        "pictures": {k: {**v, "first": picture_tag(k, min(v["labels"]))} for k, v in pictures.items() if v["labels"]},
        "quality": dict(sorted(quality.items())),
    }


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
        self._blob_keys = _BlobKeys()
        self._parsed_tensors_cache = collections.OrderedDict()  # (experiment, run, pattern) -> {tag: (version, {step: ...})}
        self._key_locks = [threading.Lock() for _ in range(64)]  # striped by block (see _read_blob_keys)
        self._index_cache = collections.OrderedDict()  # (experiment, run) -> (index tag version, content)
        self._run_steps = {}  # (experiment, run) -> most steps of a method or kind, as /runs last saw
        self._predictions_cache = collections.OrderedDict()  # (experiment, run) -> (version, {step: rows}, {step: JSON})
        self._lock = threading.Lock()
        # Read the frontend's modules once, so that no route touches the file system.
        self._modules = {}
        for name in sorted(os.listdir(_STATIC)):
            if name.endswith(".js"):
                with open(os.path.join(_STATIC, name), encoding="utf-8") as f:
                    self._modules[f"/{name}"] = f.read()

    def get_plugin_apps(self):
        return {
            **{path: self._module for path in self._modules},
            "/runs": self._runs,
            "/image": self._image,
            "/predictions": self._predictions,
            "/quality": self._quality,
            "/scalars": self._scalars,
        }

    def is_active(self):
        return False  # activation comes from data_plugin_names()

    def data_plugin_names(self):
        return (PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Explanations")

    @werkzeug.wrappers.Request.application
    def _module(self, request):
        # The app is mounted under the plugin's prefix: the module's name is the path's last part.
        name = "/" + request.path.rsplit("/", 1)[-1]
        return http_util.Respond(request, self._modules[name], "text/javascript")

    def _context(self, request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    def _blob_series(self, request, run=None):
        ctx, eid = self._context(request)
        run_filter = provider.RunTagFilter(runs=[run]) if run is not None else None
        return self._provider.list_blob_sequences(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                                  run_tag_filter=run_filter)

    def _read_blob_sequences(self, request, run, tags):
        ctx, eid = self._context(request)
        return self._provider.read_blob_sequences(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(tags)),
        ).get(run, {})

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

    def _known_run(self, request, run):
        """Whether `run` has this plugin's data: its index record, else any of its blob tags."""
        ctx, eid = self._context(request)
        indexed = self._provider.list_tensors(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                              run_tag_filter=provider.RunTagFilter(runs=[run], tags=[INDEX_TAG]))
        return bool(indexed.get(run)) or bool(self._blob_series(request, run).get(run))

    def _require_run(self, request, run):
        if not self._known_run(request, run):
            raise _Error(404, "unknown run")

    @werkzeug.wrappers.Request.application
    @_route
    def _runs(self, request):
        ctx, eid = self._context(request)
        # Runs the logger indexed: their index record alone (one small tag per run, read again only
        # when it changes), so this answer does not grow with images x methods.
        indexed = self._provider.list_tensors(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                              run_tag_filter=provider.RunTagFilter(tags=[INDEX_TAG]))
        contents = {}
        for run, tags in indexed.items():
            if INDEX_TAG in tags and (content := self._indexed_content(request, run, tags[INDEX_TAG])) is not None:
                contents[run] = content
        # The others (logs of older loggers, logs written with keras_interp.summary alone, runs of
        # other plugins): listed tag by tag, as before the index.
        others = [r.run_name for r in self._provider.list_runs(ctx, experiment_id=eid) if r.run_name not in contents]
        if others:
            contents.update(self._listed_contents(request, others))
        result = {}
        for run in sorted(contents):
            if (info := self._run_info(request, run, contents[run])) is not None:
                result[run] = info
        return _json(request, {"runs": result})

    def _indexed_content(self, request, run, meta):
        """The run's content from its index records ({images, image_labels, class_names, methods,
        pictures, quality}, as _listed_contents gives), or None when no record is readable.

        Every kept record is merged (a run resumed by a new logger holds records of both), the
        first one's labels winning as TensorBoard keeps a tag's first metadata. Kept until the index
        tag gets a new record (its last step or wall time moves).
        """
        _, eid = self._context(request)
        key, version = (eid, run), (meta.max_step, meta.max_wall_time)
        with self._lock:
            cached = self._index_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        ctx, _ = self._context(request)
        data = self._provider.read_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[INDEX_TAG]),
        ).get(run, {}).get(INDEX_TAG, [])
        # Records are mostly the same text epoch after epoch: each distinct one is parsed once.
        texts = dict.fromkeys(d.numpy.reshape(-1)[0] if d.numpy.size else b"" for d in sorted(data, key=lambda d: d.step))
        content = _merge_index([_index_record(text) for text in texts])
        with self._lock:
            self._index_cache[key] = (version, content)
            self._index_cache.move_to_end(key)
            while len(self._index_cache) > _INDEXES_CACHED:
                self._index_cache.popitem(last=False)
        return content

    def _listed_contents(self, request, runs):
        """{run: content} of the runs among `runs` with maps or pictures, from a listing of their tags."""
        ctx, eid = self._context(request)
        listed = self._provider.list_blob_sequences(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                                    run_tag_filter=provider.RunTagFilter(runs=runs))
        contents = {}
        for run, tags in listed.items():
            image_labels, class_names = {}, []
            methods, pictures = {}, {}  # method -> {index: tag}, settings; kind -> {index: tag}, title, labels
            for tag, meta in tags.items():
                if match := INPUT_TAG.match(tag):
                    content = _content(meta)
                    class_names = class_names or [str(n) for n in content.get("class_names") or []]
                    image_labels[int(match.group(1))] = _class(content.get("label"))
                elif match := MAP_TAG.match(tag):
                    method, index = match.group(1), int(match.group(2))
                    content = _content(meta)
                    entry = methods.setdefault(method, {"label": None, "signed": None, "clip": None, "tags": {}})
                    if not entry["tags"]:
                        entry["signed"], entry["clip"] = _signed(content.get("signed")), _clip(content.get("clip"))
                    entry["tags"][index] = tag
                    label = content.get("label")
                    if isinstance(label, str) and label and entry["label"] is None:
                        entry["label"] = label
                elif match := PICTURE_TAG.match(tag):
                    kind, index = match.group(1), int(match.group(2))
                    content = _content(meta)
                    entry = pictures.setdefault(kind, {"title": None, "labels": {}, "tags": {}})
                    entry["tags"][index] = tag
                    title, label = content.get("title"), content.get("label")
                    if isinstance(title, str) and title and entry["title"] is None:
                        entry["title"] = title
                    entry["labels"][index] = label if isinstance(label, str) and label else str(index)
            if not methods and not pictures:
                continue
            contents[run] = {
                "image_labels": image_labels,
                "class_names": class_names,
                "methods": {m: {"label": e["label"] or m, "signed": e["signed"], "clip": e["clip"],
                                "first": e["tags"][min(e["tags"])]} for m, e in methods.items()},
                "pictures": {k: {"title": e["title"] or PICTURE_KINDS[k], "labels": e["labels"],
                                 "first": e["tags"][min(e["tags"])]} for k, e in pictures.items()},
                "quality": {},
            }
        if contents:
            tensors = self._provider.list_tensors(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
                                                  run_tag_filter=provider.RunTagFilter(runs=sorted(contents)))
            for run, content in contents.items():
                content["quality"] = {match.group(1): [str(f) for f in _content(meta).get("fields") or []]
                                      for tag, meta in sorted(tensors.get(run, {}).items())
                                      if (match := QUALITY_TAG.match(tag))}
        return contents

    def _run_info(self, request, run, content):
        """The run's /runs entry: its content, with the steps of each method and picture kind."""
        methods, kinds = sorted(content["methods"]), sorted(content["pictures"])
        if not methods and not kinds:
            return None
        # A method's steps are those of one of its images (all are written together), and a
        # picture kind's those of one of its pictures: one read of one tag per method and kind,
        # and the slider takes the union (a method dropped mid-training must not truncate it).
        first = {("map", m): content["methods"][m]["first"] for m in methods}
        first.update({("picture", k): content["pictures"][k]["first"] for k in kinds})
        data = self._read_blob_sequences(request, run, first.values())
        steps = {key: sorted({d.step for d in data.get(tag, [])}) for key, tag in first.items()}
        # The run's first write time names this incarnation of the run: a run written again into
        # the same folder gets a new one, so image URLs that carry it can be cached for good.
        times = [d.wall_time for tag in first.values() for d in data.get(tag, [])]
        images, image_labels = sorted(content["image_labels"]), content["image_labels"]
        _, eid = self._context(request)
        with self._lock:  # for the size of /image's blocks (_neighbours)
            self._run_steps[(eid, run)] = max([len(v) for v in steps.values()] or [1])
        return {
            "images": images,
            "methods": methods,
            "labels": {m: content["methods"][m]["label"] for m in methods},
            "signed": {m: content["methods"][m]["signed"] for m in methods},
            "clip": {m: content["methods"][m]["clip"] for m in methods},
            "steps": sorted(set().union(*steps.values())),
            "method_steps": {m: steps[("map", m)] for m in methods},
            "class_names": content["class_names"],
            "labeled": any(v is not None for v in image_labels.values()),
            "image_labels": {str(i): image_labels[i] for i in images},
            "version": repr(min(times)) if times else "0",
            "pictures": {k: {"title": content["pictures"][k]["title"],
                             "indices": sorted(content["pictures"][k]["labels"]),
                             "labels": {str(i): label for i, label in sorted(content["pictures"][k]["labels"].items())},
                             "steps": steps[("picture", k)]}
                         for k in kinds},
            "quality": content["quality"],
        }

    def _neighbours(self, eid, run, tag):
        """The tags whose blob keys are read with `tag`'s: for a run whose index /runs read, the
        other maps of its block of images (every method), inputs of its block, or pictures of its
        kind: what the rows in view ask for next. Else just `tag`.

        With the Rust data server each read is a gRPC stream that takes ~40 ms however little it
        holds (on these machines), and each step's key costs some Python: a block holds up to
        _KEYS_BLOCK images and about _KEYS_READ keys (6 methods x 100 epochs: 3 images a read).
        """
        with self._lock:
            cached = self._index_cache.get((eid, run))
            steps = self._run_steps.get((eid, run), 1)
        content = cached[1] if cached else None
        if not content:
            return [tag]
        if (match := MAP_TAG.match(tag)) or (match := INPUT_TAG.match(tag)):
            size = _KEYS_BLOCK if match.re is INPUT_TAG else \
                max(1, min(_KEYS_BLOCK, _KEYS_READ // (max(1, len(content["methods"])) * max(1, steps))))
            block = int(match.groups()[-1]) // size
            images = [i for i in range(block * size, (block + 1) * size) if i in content["image_labels"]]
            if match.re is INPUT_TAG:
                tags = [input_tag(i) for i in images]
            else:
                tags = [map_tag(m, i) for m in sorted(content["methods"]) for i in images]
        elif (match := PICTURE_TAG.match(tag)) and match.group(1) in content["pictures"]:
            tags = [picture_tag(match.group(1), k) for k in sorted(content["pictures"][match.group(1)]["labels"])]
        else:
            tags = []
        return tags if tag in tags else [tag]

    def _read_blob_keys(self, request, run, tag, cache_key, step=None):
        """`tag`'s {step: blob key}, read with its neighbours' (kept too). With `step`, a read
        another request made meanwhile (of the same block) is used when it holds that step."""
        tags = self._neighbours(cache_key[0], run, tag)
        # One read per block at a time: the other requests of a block wait for it, not read it again.
        with self._key_locks[hash((cache_key[0], run, tags[0])) % len(self._key_locks)]:
            if step is not None and (keys := self._blob_keys.get(cache_key)) is not None \
                    and (step in keys or INPUT_TAG.match(tag)):
                return keys
            data = self._read_blob_sequences(request, run, tags)
            for other in tags:
                if other != tag and data.get(other):
                    self._blob_keys.put((*cache_key[:2], other), {d.step: d.values[0].blob_key for d in data[other] if d.values})
        if not data.get(tag):
            raise _Error(404, "unknown run or tag")
        keys = {d.step: d.values[0].blob_key for d in data[tag] if d.values}
        self._blob_keys.put(cache_key, keys)
        return keys

    @staticmethod
    def _blob_key(keys, tag, step):
        # Inputs are written once: any step serves them. Maps and pictures must match the step.
        if step in keys:
            return keys[step]
        if INPUT_TAG.match(tag) and keys:
            return keys[min(keys)]
        raise _Error(404, "no image at this step")

    @werkzeug.wrappers.Request.application
    @_route
    def _image(self, request):
        run, tag, step = self._param(request, "run"), self._param(request, "tag"), self._step(request)
        if not (INPUT_TAG.match(tag) or MAP_TAG.match(tag) or PICTURE_TAG.match(tag)):
            raise _Error(400, "tag is not an explanation image tag")
        # Only the requested tag is read, with its block's neighbours for an indexed run (and their
        # steps' blob keys kept): the cost does not grow with the run's images x methods x epochs.
        ctx, eid = self._context(request)
        cache_key = (eid, run, tag)
        keys = self._blob_keys.get(cache_key)
        fresh = keys is None or (step not in keys and not INPUT_TAG.match(tag))
        if fresh:
            keys = self._read_blob_keys(request, run, tag, cache_key, step)
        try:
            blob = self._provider.read_blob(ctx, blob_key=self._blob_key(keys, tag, step))
        except errors.NotFoundError:
            if fresh:
                raise
            # A cached key whose data went away (the run was rewritten): read the tag again.
            keys = self._read_blob_keys(request, run, tag, cache_key)
            blob = self._provider.read_blob(ctx, blob_key=self._blob_key(keys, tag, step))
        # With the run's version (from /runs) the URL names immutable content: let the browser keep it.
        return http_util.Respond(request, blob, "image/png", expires=_CACHE_SECONDS if request.args.get("v") else 0)

    def _parsed_tensors(self, request, run, pattern, parse, tags=None):
        """{tag: {step: parse(values, fields)}} of the run's plugin tensors whose tag matches `pattern`
        (and is among `tags`, when given: then only those are listed and read).

        Every step of a tag is parsed once and kept until the tag gets new data (its last step
        or wall time moves), so a slider move costs a listing, not a read of images x epochs.
        """
        ctx, eid = self._context(request)
        series = self._provider.list_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=None if tags is None else list(tags)),
        ).get(run, {})
        series = {tag: meta for tag, meta in series.items() if pattern.match(tag)}
        if not series:
            self._require_run(request, run)  # 404 for unknown runs; {} for a run without such tensors
            return {}
        key = (eid, run, pattern.pattern)
        with self._lock:
            cached = self._parsed_tensors_cache.get(key, {})
        version = {tag: (meta.max_step, meta.max_wall_time) for tag, meta in series.items()}
        stale = [tag for tag in series if tag not in cached or cached[tag][0] != version[tag]]
        if stale:
            tensors = self._provider.read_tensors(
                ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=stale),
            ).get(run, {})
            # A full listing drops the tags gone from the run; a listing of some tags keeps the others.
            cached = {tag: value for tag, value in cached.items() if tag in series or tags is not None}
            for tag in stale:
                fields = _content(series[tag]).get("fields")
                cached[tag] = (version[tag], {d.step: parse(d.numpy, fields) for d in tensors.get(tag, [])})
            with self._lock:
                self._parsed_tensors_cache[key] = cached
                self._parsed_tensors_cache.move_to_end(key)
                while len(self._parsed_tensors_cache) > _RUNS_CACHED:
                    self._parsed_tensors_cache.popitem(last=False)
        return {tag: by_step for tag, (_, by_step) in cached.items() if tag in series}

    def _images(self, request):
        """The `images` parameter ("0-63,100,200-210": indices and inclusive ranges) as a set, or
        None when absent (every image)."""
        value = request.args.get("images")
        if value is None:
            return None
        if not re.fullmatch(r"\d{1,9}(-\d{1,9})?(,\d{1,9}(-\d{1,9})?)*", value):
            raise _Error(400, "images must be indices and ranges, e.g. 0-63,100")
        images = set()
        for part in value.split(","):
            start, _, stop = part.partition("-")
            start, stop = int(start), int(stop or start)
            if stop < start or len(images) + stop - start >= _IMAGES_ASKED:
                raise _Error(400, f"images must be increasing ranges of at most {_IMAGES_ASKED} images in all")
            images.update(range(start, stop + 1))
        return images

    def _batched_predictions(self, request, run, step, images=None):
        """The JSON text of /predictions from the run's PREDICTIONS_TAG (every image of a step in one
        tensor), or None when the run has none at this step (then the per-image tags answer).

        The tag's steps are read once and kept until it gets a new step; each step's answer is built
        once: a slider move costs a listing of one tag, not a read of images x epochs.
        """
        ctx, eid = self._context(request)
        meta = self._provider.list_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[PREDICTIONS_TAG]),
        ).get(run, {}).get(PREDICTIONS_TAG)
        if meta is None:
            return None
        key, version = (eid, run), (meta.max_step, meta.max_wall_time)
        with self._lock:
            cached = self._predictions_cache.get(key)
        if cached is None or cached[0] != version:
            data = self._provider.read_tensors(
                ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=_ALL,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=[PREDICTIONS_TAG]),
            ).get(run, {}).get(PREDICTIONS_TAG, [])
            cached = (version, {d.step: d.numpy for d in data}, collections.OrderedDict())
            with self._lock:
                self._predictions_cache[key] = cached
                self._predictions_cache.move_to_end(key)
                while len(self._predictions_cache) > _RUNS_CACHED:
                    self._predictions_cache.popitem(last=False)
        _, rows, answers = cached
        if step not in rows:
            return None
        fields = _content(meta).get("fields")
        fields = fields[1:] if isinstance(fields, list) and fields[:1] == ["index"] else None
        values = np.asarray(rows[step], dtype=np.float64)
        values = values.reshape(len(values), -1) if values.ndim else values.reshape(1, -1)
        values = values[np.isfinite(values[:, 0]) & (values[:, 0] >= 0)]

        def answer(kept):
            return json.dumps({str(int(row[0])): parse_prediction(row[1:], fields) for row in kept},
                              allow_nan=False, separators=(",", ":"))

        if images is not None:  # the rows in view: built for this request
            return answer(values[np.isin(values[:, 0], sorted(images))])
        with self._lock:
            text = answers.get(step)
        if text is None:  # every image (a sort or filter): built once per step
            text = answer(values)
            with self._lock:
                answers[step] = text
                while len(answers) > _ANSWERS_CACHED:
                    answers.popitem(last=False)
        return text

    @werkzeug.wrappers.Request.application
    @_route
    def _predictions(self, request):
        run, step, images = self._param(request, "run"), self._step(request), self._images(request)
        text = self._batched_predictions(request, run, step, images)
        if text is not None:
            return http_util.Respond(request, text, "application/json")
        # Logs without the one-tensor predictions: the per-image tags (only those asked for).
        tags = None if images is None else [prediction_tag(i) for i in sorted(images)]
        parsed = self._parsed_tensors(request, run, PREDICTION_TAG, lambda v, f: parse_prediction(v.reshape(-1), f), tags)
        return _json(request, {str(int(PREDICTION_TAG.match(tag).group(1))): by_step[step]
                               for tag, by_step in parsed.items() if step in by_step})

    @werkzeug.wrappers.Request.application
    @_route
    def _quality(self, request):
        run, step = self._param(request, "run"), self._step(request)
        parsed = self._parsed_tensors(request, run, QUALITY_TAG, parse_quality)
        return _json(request, {QUALITY_TAG.match(tag).group(1): by_step[step]
                               for tag, by_step in parsed.items() if step in by_step})

    @werkzeug.wrappers.Request.application
    @_route
    def _scalars(self, request):
        run = self._param(request, "run")
        self._require_run(request, run)
        ctx, eid = self._context(request)
        scalars = self._provider.read_scalars(
            ctx, experiment_id=eid, plugin_name="scalars", downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        ).get(run, {})
        return _json(request, {
            tag: [[d.step, _finite(d.value)] for d in data] for tag, data in scalars.items() if tag.startswith(SCALAR_PREFIX)
        })
