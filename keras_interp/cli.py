"""The keras-interp command: explain saved Keras models from a shell.

    keras-interp demo [--out DIR] [--epochs N]
    keras-interp explain MODEL INPUT... --method NAME [--method NAME ...] [--target T] [--out DIR]
                         [--strategy mirrored]
    keras-interp layers MODEL
    keras-interp visualize MODEL --classes 0 1 2 [--out DIR]
    keras-interp dream MODEL IMAGE [--layers L ...] [--out DIR]
    keras-interp search MODEL INPUT... --layer L [--top-k 9] [--out DIR]

Errors print one line on stderr: exit code 2 for a usage error (a missing or unreadable model,
an unknown method or layer, an existing output folder), 1 when some inputs could not be read
(the others are still explained). TensorFlow is imported only once a subcommand runs, so
`--help` is instant.
"""

import argparse
import csv
import dataclasses
import os
import sys
import time

import numpy as np

__all__ = ["main"]

from keras_interp.jobs import atomic_write  # noqa: E402  (no TensorFlow: --help stays instant)
from keras_interp.registry import METHODS as REGISTRY  # noqa: E402

_METHOD_NAMES = tuple(REGISTRY)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class UsageError(Exception):
    """A mistake in the command line or its files: one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------- inputs


def image_files(inputs):
    """Image files from files and folders (searched recursively, sorted); missing paths raise."""
    found = []
    for path in inputs:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
        elif os.path.exists(path):
            found.append(path)
        else:
            raise UsageError(f"no such file or folder: {path}")
    if not found:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(inputs)}")
    return found


RESIZES = ("crop", "pad", "stretch")


def read_labels(path):
    """The class names of --labels FILE (one per line, line k naming class k), or None."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            names = [line.strip() for line in handle.read().splitlines()]
    except OSError as exc:
        raise UsageError(f"cannot read --labels {path}: {exc.strerror}") from None
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UsageError(f"--labels {path} names no class (one name per line)")
    return names


def model_class_names(model, count):
    """Class names saved with a model, where present: a `class_names` attribute of as many strings
    as the model has classes (a subclassed model that keeps them in its config, or one given them
    before saving by code that restores them). Keras' own .keras files keep none."""
    names = getattr(model, "class_names", None)
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        return None
    names = list(names)
    if not names or not all(isinstance(n, str) for n in names) or (count is not None and len(names) != count):
        return None
    return names


def labels_for(args, model, count):
    """--labels FILE's names, else the model's own class names (model_class_names), else None."""
    names = read_labels(args.labels)
    check_labels(names, count, args.labels)
    return names if names is not None else model_class_names(model, count)


def check_labels(names, count, path):
    if names is not None and count is not None and len(names) != count:
        raise UsageError(f"--labels {path} has {len(names)} names for the model's {count} classes (one per line)")


def class_index(value, names, count, option):
    """A --target or --classes value, a class number or (with --labels) a class name, as an index."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
    elif names and text in names:
        index = names.index(text)
    else:
        raise UsageError(f"{option} {text!r} is not a class " + (
            f"number or a name of --labels ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names
            else "number (pass --labels FILE to use class names)"))
    if count is not None and not 0 <= index < count:
        classes = "1 class (0)" if count == 1 else f"{count} classes (0 to {count - 1})"
        raise UsageError(f"{option} {text} is out of range: the model has {classes}")
    return index


def class_name(index, names):
    return names[index] if names else str(index)


def same_aspect(image, size):
    """Whether the image has the aspect of size=(H, W), to the pixel (aspects that round to the
    same pixels count as equal: nothing to crop or pad)."""
    h, w = image.shape[:2]
    return round(h * size[1] / size[0]) == w or round(w * size[0] / size[1]) == h


def fit_aspect(image, size, resize):
    """The image brought to the aspect of size=(H, W) before resizing: "crop" keeps its centre,
    "pad" adds black borders on both sides, "stretch" leaves it (the resize then squashes it)."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}; received {resize!r}")
    h, w = image.shape[:2]
    if resize == "stretch" or same_aspect(image, size):
        return image
    if resize == "crop":
        if w * size[0] > h * size[1]:  # wider than the model's aspect: crop the sides
            keep = max(1, round(h * size[1] / size[0]))
            left = (w - keep) // 2
            return image[:, left:left + keep]
        keep = max(1, round(w * size[0] / size[1]))
        top = (h - keep) // 2
        return image[top:top + keep]
    if w * size[0] > h * size[1]:  # pad above and below
        total = round(w * size[0] / size[1]) - h
        widths = ((total // 2, total - total // 2), (0, 0))
    else:
        total = round(h * size[1] / size[0]) - w
        widths = ((0, 0), (total // 2, total - total // 2))
    return np.pad(image, widths + ((0, 0),) * (image.ndim - 2))


def read_image(path, size, channels, resize="crop", changed=None):
    """An image file as float32 (H, W, C) in [0, 1], resized to size=(H, W): 8- or 16-bit, grey,
    colour or with alpha (dropped), read by OpenCV (RGB order). An image of another aspect is
    first cropped or padded to the model's (`resize`, see fit_aspect) and, when it was, its path
    appended to `changed`. Raises ValueError if unreadable."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError("not an image OpenCV can read")
    depth = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype)
    image = image.astype(np.float32) / depth if depth else image.astype(np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[-1] == 3:
        image = image[..., ::-1]  # OpenCV reads BGR
    if channels == 1 and image.shape[-1] == 3:
        image = image.mean(axis=-1, keepdims=True)
    elif channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] != channels:
        raise ValueError(f"has {image.shape[-1]} channels; the model takes {channels}")
    if changed is not None and not same_aspect(image, size):
        changed.append(path)
    image = fit_aspect(image, size, resize)
    if image.shape[:2] != tuple(size):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        image = image.reshape(tuple(size) + (channels,))
    return image


def scaler(args, shape):
    """images in [0, 1] -> what the model takes, from --scale, --mean/--std or --preprocess;
    tried once on a blank image of the model's input shape, so a mismatch is a usage error."""
    scale = _scaler(args)
    try:
        scaled = np.asarray(scale(np.zeros((1,) + tuple(shape), np.float32)))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy or keras.applications refusing the shape
        raise UsageError(f"the scaling options do not fit the model's input {tuple(shape)}: "
                         f"{_last_line(exc)}") from None
    if scaled.shape != (1,) + tuple(shape):
        raise UsageError(f"the scaling options turn images of shape {tuple(shape)} into {scaled.shape[1:]}; "
                         f"give --mean/--std one value or {shape[-1]} (one per channel)")
    return scale


def _scaler(args):
    if args.preprocess and (args.mean is not None or args.std is not None or args.scale != "0-1"):
        raise UsageError("--preprocess does its own scaling; leave out --scale, --mean and --std")
    if args.preprocess:
        import importlib

        family = args.preprocess.removeprefix("keras.applications.")
        try:
            preprocess = importlib.import_module(f"keras.applications.{family}").preprocess_input
        except (ImportError, AttributeError):
            raise UsageError(f"--preprocess {args.preprocess}: no keras.applications.{family}.preprocess_input "
                             "(e.g. --preprocess keras.applications.resnet50)") from None
        return lambda x: np.asarray(preprocess(x * 255.0), np.float32)
    low, high = {"0-1": (0.0, 1.0), "0-255": (0.0, 255.0)}[args.scale]
    mean = np.asarray(0.0 if args.mean is None else args.mean, np.float32)
    std = np.asarray(1.0 if args.std is None else args.std, np.float32)
    if (std == 0).any():
        raise UsageError(f"--std must not be 0; received {args.std}")
    return lambda x: ((low + x * (high - low)) - mean) / std


# ----------------------------------------------------------------------------- models


def load(path, unsafe=False):
    from keras_interp.models import load_model

    if not os.path.exists(path):
        raise UsageError(f"no such model file: {path}")
    import zipfile

    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not a .keras archive (a zip file written by model.save)")
    try:
        return load_model(path, safe_mode=not unsafe, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        if isinstance(exc, ValueError) and ("is not a Keras model file" in str(exc) or "is a folder" in str(exc)):
            raise UsageError(str(exc)) from None
        text = _last_line(exc)
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise UsageError(f"{path} contains code (a Lambda layer) that Keras refuses to load in safe mode; "
                             "pass --unsafe if you trust this file") from None
        raise UsageError(f"could not load {path} as a Keras model: {text}") from None


def _classifier(args, model):
    """(input shape (H, W, C), scorer) of a single-input image classifier, else a UsageError."""
    from keras_interp.targets import Scorer

    if len(getattr(model, "inputs", None) or ()) > 1:
        raise UsageError(f"{args.model} has {len(model.inputs)} inputs; {args.command} reads image files for models "
                         "with one input (use the Python API, which takes a list or dict of inputs)")
    shape = tuple(model.inputs[0].shape)[1:] if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 3 or None in shape:
        raise UsageError(f"{args.model} takes inputs of shape {shape}; {args.command} needs images of a fixed size "
                         "(H, W, C)")
    try:
        scorer = Scorer(model, output=output_arg(args))
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    if scorer.num_classes is None or len(scorer.output_shape) != 2:
        raise UsageError(f"{args.command} needs a classifier with (batch, classes) outputs; {args.model} gives "
                         f"{scorer.output_shape} (use the Python API with a callable target)")
    return shape, scorer


def methods():
    from keras_interp.logger.methods import METHODS

    return METHODS


def make_explainer(name, model, args, baselines=None):
    """The explainer `name` with the CLI's options; methods that need reference examples
    (Expected Gradients) take `baselines`: explain gives them the first batch of images read."""
    if args.layer and name in LAYER_METHODS:
        from keras_interp.logger.methods import make_explainer as build

        return build(REGISTRY[name], model, args.seed, output=output_arg(args), layer=args.layer)
    return methods()[name](model, args.seed, output=output_arg(args), baselines=baselines)


def output_arg(args):
    """--output as the explainers take it: an index when it is a number, else a name."""
    value = getattr(args, "output", None)
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


def out_folder(path, overwrite):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} is a file, not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise UsageError(f"output folder {path} exists and is not empty; choose another --out or pass --overwrite")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {path}: {exc.strerror}") from None
    return path


def progress(total, quiet):
    from keras_interp.compat import progress_bar

    return None if quiet else progress_bar(total, unit_name="image", stateful_metrics=["images/s"])


# ----------------------------------------------------------------------------- subcommands


LAYER_METHODS = tuple(name for name, entry in REGISTRY.items() if entry.layer)
CHANNEL_METHODS = tuple(name for name, entry in REGISTRY.items() if entry.channel)  # with --layer: a channel


def cmd_explain(args):
    unknown = [m for m in args.method if m not in methods()]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}; choose from {', '.join(sorted(methods()))}")
    if args.layer and not set(args.method) & set(LAYER_METHODS):
        raise UsageError(f"--layer is used by {', '.join(LAYER_METHODS)}; none of {', '.join(args.method)} takes it")
    channel_mode = bool(args.layer) and bool(set(args.method) & set(CHANNEL_METHODS))
    if args.channel is not None and not channel_mode:
        raise UsageError("--channel is for deconvnet and guided_backprop with --layer (a channel of that layer)")
    job_cluster(args)  # a bad TF_CONFIG fails before the model is loaded
    model = load(args.model, args.unsafe)
    shape, scorer = _classifier(args, model)
    try:
        labels = labels_for(args, model, scorer.num_classes)
        if args.target is not None:
            args.target = class_index(args.target, labels, scorer.num_classes, "--target")
        explainers = {m: make_explainer(m, model, args) for m in args.method if not REGISTRY[m].needs_baselines}
        if args.channel is not None:
            channels = next(e for m, e in explainers.items() if m in CHANNEL_METHODS).site.shape[-1]
            if not 0 <= args.channel < channels:
                raise UsageError(f"--channel {args.channel} is out of range: layer {args.layer!r} has {channels} "
                                 f"channels (0 to {channels - 1})")
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    files = image_files(args.inputs)
    scale = scaler(args, shape)
    devices = strategy_devices(args.strategy)
    names = unique_names(files)
    clean = (lambda: MapOutputs.clean(args.out, args.method)) if args.format == "memmap" else None
    job = start_job(args, files, names, args.batch_size, clean=clean)
    baselines = first_batch(args, files, shape, scale)
    explainers.update({m: make_explainer(m, model, args, baselines=baselines)
                       for m in args.method if REGISTRY[m].needs_baselines})
    import tensorflow as tf

    header = (["file", "output", "predicted_class", "confidence", "explained_class"]
              + (["explained_channel"] if channel_mode else [])
              + (["predicted_name", "explained_name"] if labels else [])
              + (["row"] if args.format == "memmap" else []))
    outputs = MapOutputs(args.format, job, names, args.method, len(files))

    def work(unit, indices, shown):
        if not len(indices):
            return None, {"rows": []}
        images = scale(shown)
        maps, logits = {}, None
        for m, e in explainers.items():
            target = args.channel if m in CHANNEL_METHODS and args.layer else args.target
            if logits is None:  # the predictions from the first method's pass where it has them
                maps[m], logits = spread(e, images, target, devices, with_logits=True)
            else:
                maps[m] = spread(e, images, target, devices)
            maps[m] = np.asarray(maps[m], np.float32)
        probabilities = scorer.probabilities(tf.constant(logits))
        p = np.asarray(probabilities if probabilities is not None else logits, np.float64)
        predicted = p.argmax(axis=1)
        explained = predicted if args.target is None else np.full(len(images), args.target)
        channel = ["strongest" if args.channel is None else args.channel] if channel_mode else []
        rows = []
        for row, index in enumerate(indices):
            k, e = int(predicted[row]), int(explained[row])
            rows.append([files[index], names[index], k, f"{p[row, k]:.6f}", e] + channel
                        + ([labels[k], labels[e]] if labels else []) + ([int(index)] if args.format == "memmap" else []))
        sheets = None if args.format == "memmap" else (shown, predicted, explained, p, labels)
        return lambda: outputs.write(unit, args.batch_size, indices, maps, sheets), {"rows": rows}

    try:
        parts = run_units(job, args, files, shape, args.batch_size, work, "explained")
        if not isinstance(parts, list):
            return parts  # another worker's exit code
        where = {path: index for index, path in enumerate(files)}
        outputs.fill_failed([where[path] for part in parts for path, _ in part["failed"]])
    finally:
        outputs.close()
    rows = [row for part in parts for row in part["rows"]]
    atomic_write(os.path.join(args.out, "explanations.csv"), lambda h: h.write(_csv_bytes([header] + rows)),
                 temporary=job.temporary())
    job.merged()
    if not args.quiet:
        print(f"explained {len(rows)} images with {', '.join(args.method)}: {args.out}")
    diverged = sum(row[3] == "nan" for row in rows)
    if diverged:  # said, not left for the user to find among the maps
        print(f"keras-interp: note: the model's outputs are not finite for {diverged} of {len(rows)} images (NaN "
              "weights or inputs?): their predictions and maps are NaN", file=sys.stderr)
    return _report_parts(parts, files, shape, args)


def first_batch(args, files, shape, scale):
    """The reference examples of the methods that need them (Expected Gradients): the first
    batch's readable images, scaled, the same on every worker and after --resume; None when no
    method needs them."""
    needs = [m for m in args.method if REGISTRY[m].needs_baselines]
    if not needs:
        return None
    first = next(read_units([0], files, shape, args.batch_size, args.resize))[2]
    if not len(first):
        raise UsageError(f"{', '.join(needs)} compares with the first batch's images, and none of them could be read")
    return scale(first)


def _report_parts(parts, files, shape, args):
    """The merged job's notes on stderr (resized and unreadable inputs); the exit code."""
    _report_resized([path for part in parts for path in part["resized"]], files, shape, args)
    return _report_failures([path for part in parts for path, _ in part["failed"]], files)


def _csv_bytes(rows):
    import io

    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8")


# ----------------------------------------------------------------------------- jobs


def gather(job, quiet):
    """The job's parts in order (the chief), None (other workers); a timeout is a usage error."""
    from keras_interp.jobs import JobError

    try:
        return job.gather(quiet)
    except JobError as exc:
        raise UsageError(str(exc)) from None


def run_units(job, args, files, shape, unit_size, work, done_verb, ahead=2):
    """This worker's units of the job, read ahead and written behind: `work(unit, indices,
    images)` -> (a function writing the unit's outputs or None, the record's payload), and the
    unit's unreadable and resized inputs are added to the payload. Returns the chief's payloads
    of every unit in order, or on another worker its exit code (1 when some of its own inputs
    could not be read, as a single process says)."""
    bar, done, seen, start = progress(len(files), args.quiet), 0, 0, time.perf_counter()
    while True:
        with UnitWriter(job) as writer:
            for unit, indices, shown, failed, resized in read_units(job.todo(), files, shape, unit_size, args.resize,
                                                                    ahead):
                if writer.stale:
                    break
                write, payload = work(unit, indices, shown)
                writer.submit(unit, write, dict(payload, failed=failed, resized=resized))
                done, seen = done + len(indices), seen + len(indices) + len(failed)
                if bar is not None:
                    bar.update(min(seen, len(files)), values=[("images/s", done / max(time.perf_counter() - start, 1e-9))])
        if job.still_current():
            break
        job.rejoin()  # the chief restarted the job after this worker joined: its records do not count
    parts = gather(job, args.quiet)
    if parts is None:
        if not args.quiet:
            print(f"worker {job.cluster.rank}: {done_verb} its share ({done} images this run) into {args.out}")
        return 1 if seen > done else 0
    return parts


def job_cluster(args):
    """This process's place in the job: alone, or the TF_CONFIG worker it is (--strategy multiworker)."""
    from keras_interp.jobs import Cluster, JobError

    if getattr(args, "strategy", None) != "multiworker":
        return Cluster()
    try:
        return Cluster.from_tf_config()
    except JobError as exc:
        raise UsageError(str(exc)) from None


def start_job(args, files, names, unit_size, clean=None):
    """The command's Job over --out: units of `unit_size` inputs, keyed by everything that decides
    the outputs (the model file's bytes, the inputs' names, the options)."""
    import hashlib

    from keras_interp.jobs import Job, JobError, file_digest

    ignored = {"fn", "quiet", "overwrite", "resume", "strategy", "wait", "out", "inputs", "model", "unsafe"}
    key = {name: value for name, value in vars(args).items() if name not in ignored}
    key.update(model=file_digest(args.model), inputs=hashlib.sha1("\n".join(names).encode()).hexdigest(),
               count=len(files))
    units = -(-len(files) // unit_size)
    job = Job(args.out, key, units, job_cluster(args), resume=args.resume, overwrite=args.overwrite, wait=args.wait)
    try:
        return job.start(clean)
    except JobError as exc:
        raise UsageError(str(exc)) from None


def read_units(units, files, shape, unit_size, resize, ahead=2):
    """(unit, indices, images in [0, 1], failed [(path, reason)], resized paths) for each unit
    (inputs unit * unit_size onwards), decoded in a thread `ahead` units before they are used,
    so reading overlaps the model's work; an unreadable file is said on stderr and skipped."""
    import collections
    import concurrent.futures
    import itertools

    size, channels = shape[:2], shape[2]

    def read(unit):
        indices, images, failed, resized = [], [], [], []
        for index in range(unit * unit_size, min(len(files), (unit + 1) * unit_size)):
            try:
                images.append(read_image(files[index], size, channels, resize, resized))
                indices.append(index)
            except ValueError as exc:
                failed.append([files[index], str(exc)])
        stack = np.stack(images) if images else np.zeros((0,) + tuple(shape), np.float32)
        return unit, np.asarray(indices, np.int64), stack, failed, resized

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        queue = iter(units)
        pending = collections.deque(pool.submit(read, unit) for unit in itertools.islice(queue, ahead + 1))
        while pending:
            found = pending.popleft().result()
            for path, reason in found[3]:
                print(f"keras-interp: skipped {path}: {reason}", file=sys.stderr)
            pending.extend(pool.submit(read, unit) for unit in itertools.islice(queue, 1))
            yield found


class UnitWriter:
    """Writes each unit's outputs in a thread, then records the unit, so writing overlaps the
    next unit's work; at most `depth` units wait, so memory stays flat. Leaving the block waits
    for every write (an error in one is raised there)."""

    def __init__(self, job, depth=2):
        import collections
        import concurrent.futures

        self.job, self.depth, self.stale = job, depth, False
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.pending = collections.deque()

    def submit(self, unit, write, payload):
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._run, unit, write, payload))

    def _run(self, unit, write, payload):
        if self.stale or not self.job.still_current():
            self.stale = True  # the chief restarted the job: this launch's outputs must not land
            return
        if write is not None:
            write()
        self.job.record(unit, payload)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)
        return False


class MapOutputs:
    """Where explain's maps go. "npy": per input a sheet `<name>.png` and `<name>.<method>.npy`,
    each written whole or not at all. "memmap": per method one `<method>.npy` of shape
    (inputs, *map shape), row i the map of input i (NaN where it could not be read), written in
    place by every worker (each unit's rows at their offset), read with np.load(mmap_mode="r")."""

    def __init__(self, format, job, names, methods, count):
        self.format, self.job, self.names, self.methods, self.count = format, job, names, methods, count
        self.out, self.files = job.out, {}

    @staticmethod
    def clean(out, methods):
        """Remove an earlier job's arrays (--overwrite): this job's may have another shape."""
        for method in methods:
            path = os.path.join(out, f"{method}.npy")
            if os.path.exists(path):
                os.remove(path)

    def write(self, unit, unit_size, indices, maps, sheets):
        if self.format == "memmap":
            first = unit * unit_size
            rows = min(self.count, first + unit_size) - first
            for method in self.methods:
                shape = maps[method].shape[1:] if method in maps else None
                fd, offset, shape = self._array(method, shape)
                if fd is None:
                    continue  # no map of this method yet and nothing read in this unit: created later
                block = np.full((rows,) + shape, np.nan, np.float32)
                if method in maps:
                    block[indices - first] = maps[method]
                os.pwrite(fd, block.tobytes(), offset + first * block[0].nbytes)
                os.fdatasync(fd)  # on disk before the unit's record says it is
            return
        import keras_interp as ki

        for method, values in maps.items():
            for row, index in enumerate(indices):
                atomic_write(os.path.join(self.out, f"{self.names[index]}.{method}.npy"),
                             lambda h, v=values[row]: np.save(h, v), sync=False, temporary=self.job.temporary())
        if sheets is None:
            return
        shown, predicted, explained, p, labels = sheets
        for row, index in enumerate(indices):
            cells = [shown[row]] + [ki.images.overlay(shown[row], maps[m][row]) for m in self.methods]
            k = int(predicted[row])
            said = f"input\npredicted {class_name(k, labels)} {p[row, k]:.0%}"
            if explained[row] != k:
                said += f"\nexplaining {class_name(int(explained[row]), labels)}"
            sheet = ki.images.grid([cells], col_labels=[said] + list(self.methods), cell_size=(160, 160))
            temporary = ki.images.save(self.job.temporary() + ".png", sheet)  # OpenCV needs the suffix
            os.replace(temporary, os.path.join(self.out, self.names[index] + ".png"))

    def _array(self, method, shape):
        """(file descriptor, data offset, map shape) of a method's shared array, created by
        whichever worker needs it first (atomically: linked into place only if absent)."""
        path = os.path.join(self.out, f"{method}.npy")
        if method in self.files:
            try:  # still the file at `path`? The chief removes an earlier job's arrays when it restarts
                if os.stat(path).st_ino == os.fstat(self.files[method][0]).st_ino:
                    return self.files[method]
            except FileNotFoundError:
                pass
            os.close(self.files.pop(method)[0])
        if not os.path.exists(path):
            if shape is None:
                return None, None, None
            temporary = self.job.temporary()
            np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(self.count,) + tuple(shape))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another worker made it first
            except OSError:  # a file system without hard links
                if not os.path.exists(path):
                    os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        array = np.load(path, mmap_mode="r")
        if array.shape[0] != self.count or array.dtype != np.float32 or (shape is not None and array.shape[1:] != shape):
            raise UsageError(f"{path} holds an array of shape {array.shape} ({array.dtype}), not this job's "
                             f"({self.count},) + {shape} float32: remove it or choose another --out")
        self.files[method] = (os.open(path, os.O_WRONLY), array.offset, array.shape[1:])
        del array
        return self.files[method]

    def close(self):
        for fd, _, _ in self.files.values():
            os.close(fd)
        self.files = {}

    def fill_failed(self, indices):
        """The chief: NaN in every array's rows of inputs that could not be read (a unit with no
        readable input wrote none where its array did not exist yet)."""
        if self.format != "memmap" or not len(indices):
            return
        for method in self.methods:
            fd, offset, shape = self._array(method, None)
            if fd is None:
                continue
            row = np.full(shape, np.nan, np.float32)
            for index in indices:
                os.pwrite(fd, row.tobytes(), offset + int(index) * row.nbytes)
            os.fdatasync(fd)


def _report_resized(reshaped, files, shape, args):
    """Say once, on stderr, how images of another aspect than the model's were fitted to it."""
    if not reshaped or args.quiet:
        return
    done = {"crop": "centre-cropped to it", "pad": "padded with black to it", "stretch": "stretched to it"}[args.resize]
    others = ", ".join(r for r in RESIZES if r != args.resize)
    print(f"keras-interp: {len(reshaped)} of {len(files)} images (first: {reshaped[0]}) have another aspect than the "
          f"model's {shape[1]}x{shape[0]}: {done}, then resized (--resize {others} to change)", file=sys.stderr)


def _report_failures(failed, files):
    if failed:
        print(f"keras-interp: {len(failed)} of {len(files)} inputs could not be read", file=sys.stderr)
        return 1
    return 0


def _last_line(exc):
    """The useful line of an exception's message: TensorFlow wraps errors in 'in user code:'
    tracebacks whose last 'SomeError: ...' line says what went wrong; Keras appends configs."""
    text = str(exc).split("Full object config")[0].strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0]
    for candidate in reversed(lines):
        if "Error: " in candidate:
            line = candidate[candidate.index("Error: ") + len("Error: "):]
            break
    # The library's messages name its arguments; on the command line they are options.
    return line.replace("pass output= (a name or an index)", "pass --output (a name or an index)")


def strategy_devices(name):
    """The devices a batch is spread over: [None] (TensorFlow's placement) or a MirroredStrategy's
    (mirrored; multiworker: each worker's own)."""
    if name is None:
        return [None]
    import tensorflow as tf

    return list(tf.distribute.MirroredStrategy().extended.worker_devices)


def spread(explainer, images, target, devices, with_logits=False):
    """explainer.explain(images, target), the batch split evenly over `devices`, one thread each;
    with_logits: (maps, logits) from explainer.explain_with_logits.

    Examples are independent, so the parts' maps are the whole batch's; the explainer's compiled
    functions are shared by the threads (TensorFlow runs them concurrently, one per device).
    """
    explain = explainer.explain_with_logits if with_logits else explainer.explain
    if len(devices) == 1 or len(images) < 2:
        return explain(images, target=target)
    import concurrent.futures

    import tensorflow as tf

    parts = [p for p in np.array_split(np.arange(len(images)), len(devices)) if len(p)]

    def run(device, part):
        with tf.device(device):
            return explain(images[part], target=target)

    with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
        found = list(pool.map(run, devices[:len(parts)], parts))
    if with_logits:
        return tuple(np.concatenate(values) for values in zip(*found))
    return np.concatenate(found)


def unique_names(files):
    """Output names, one per file and all different: the path under the inputs' common folder,
    extension kept ("a/x.png" -> "a__x_png"), with _2, _3 ... where two would still clash."""
    full = [os.path.abspath(f) for f in files]
    common = os.path.commonpath([os.path.dirname(f) for f in full])
    names, seen = [], set()
    for path in full:
        stem, ext = os.path.splitext(os.path.relpath(path, common))
        base = stem.replace(os.sep, "__") + ("_" + ext[1:].lower() if ext else "")
        name, k = base, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def cmd_layers(args):
    import keras

    from keras_interp import graph
    from keras_interp.explainers.cam import find_cam_head
    from keras_interp.search import receptive_field

    model = load(args.model, args.unsafe)
    try:
        head = find_cam_head(model)[0].path
    except ValueError:
        head = None
    moved = graph.frame_breaks(model)
    print(f"{'layer':40s} {'output shape':22s} usable for")
    for path in graph.all_paths(model):
        site = graph.find_site(model, path)
        shape = tuple(site.shape)
        uses = []
        # A map after a Permute or a spatial Reshape is not in the image's frame: no CAM there.
        if len(shape) == 4 and not isinstance(site.operation, keras.layers.InputLayer) and id(site.tensor) not in moved:
            uses.append("gradcam")
            try:
                receptive_field(model, site)
                uses += ["search", "deconvnet"]
            except ValueError:
                pass
        if path == head:
            uses.append("cam")
        print(f"{path:40s} {str(shape):22s} {', '.join(uses)}")
    return 0


def cmd_visualize(args):
    import keras_interp as ki

    if args.rotate is not None and args.recipe != "fourier":
        raise UsageError(f"--rotate belongs to --recipe fourier (its random rotations); received --recipe {args.recipe}.")
    if args.rotate is not None and not 0 <= args.rotate <= 180:
        raise UsageError(f"--rotate must be in [0, 180] degrees (180: any rotation); received {args.rotate}.")
    model = load(args.model, args.unsafe)
    recipe = args.recipe if args.rotate is None else ki.visualize.fourier_recipe(args.rotate)
    try:
        generator = ki.ClassModelVisualization(model, output=output_arg(args), recipe=recipe)
        count = generator.scorer.num_classes
        labels = labels_for(args, model, count)
        classes = [class_index(c, labels, count, "--classes") for c in args.classes]
        pictures = generator.visualize(classes, steps=args.steps, seed=args.seed)
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    out = out_folder(args.out, args.overwrite)
    low, high = generator.value_range
    pictures = [(picture - low) / (high - low) for picture in pictures]
    for c, picture in zip(classes, pictures):
        ki.images.save(os.path.join(out, f"class_{c}.png"), picture)
    # One labelled sheet of them all, pictures shown at least 128 pixels wide.
    side = max(128, pictures[0].shape[0])
    sheet = ki.images.grid([pictures], col_labels=[f"class {c}" + (f"\n{labels[c]}" if labels else "") for c in classes],
                           cell_size=(side, side))
    ki.images.save(os.path.join(out, "class_models.png"), sheet)
    if not args.quiet:
        print(f"{len(classes)} class models: {out} (class_models.png: all of them, labelled)")
    return 0


def cmd_dream(args):
    import keras_interp as ki

    model = load(args.model, args.unsafe)
    shape = tuple(model.inputs[0].shape)[1:]
    scale = scaler(args, shape[:2] + (shape[-1],) if None not in shape else (1, 1, shape[-1]))
    if not os.path.isfile(args.image):
        raise UsageError(f"no such image file: {args.image}")
    size = _native_size(args.image)  # the dream keeps the photo's size
    try:
        image = read_image(args.image, size, shape[-1])
    except ValueError as exc:
        raise UsageError(f"{args.image}: {exc}") from None
    try:
        dreamer = ki.DeepDream(model, layers=args.layers or None, output=output_arg(args), target=args.target)
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    try:
        dream = dreamer.dream(scale(image), steps=args.steps, seed=args.seed)
    except Exception as exc:  # noqa: BLE001 - only a fixed-size part of the model refuses other sizes
        if None in shape[:2] or tuple(shape[:2]) == tuple(size):
            raise UsageError(_last_line(exc)) from None
        import cv2

        # The layers dreamed on need the model's input size: dream at that size, then scale
        # the result back to the photo's.
        print(f"keras-interp: note: the dreamed layers need {shape[0]}x{shape[1]} inputs; the photo is dreamed "
              f"at that size and scaled back to {size[0]}x{size[1]}", file=sys.stderr)
        small = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).reshape(shape[:2] + (shape[-1],))
        try:
            dreamed = dreamer.dream(scale(small), steps=args.steps, seed=args.seed)
        except ValueError as exc2:
            raise UsageError(_last_line(exc2)) from None
        dream = cv2.resize(np.asarray(dreamed, np.float32), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        dream = dream.reshape(tuple(size) + (shape[-1],))
    out = out_folder(args.out, args.overwrite)
    path = ki.images.save(os.path.join(out, "dream.png"), dream)
    # The photo and its dream side by side, as read and as dreamed, at least 256 pixels high.
    dreamed = ki.images.to_uint8(dream)
    height = max(256, image.shape[0])
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    layers = ", ".join(dreamer.layers) if getattr(dreamer, "layers", None) else "default layers"
    if dreamer.target is not None:
        layers = f"class {dreamer.target}"
    sheet = ki.images.grid([[image, dreamed]], col_labels=["photo", f"dream ({layers})"], cell_size=(height, width))
    ki.images.save(os.path.join(out, "dream_sheet.png"), sheet)
    if not args.quiet:
        print(f"dream written to {path} (dream_sheet.png: beside the photo)")
    return 0


def _native_size(path):
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UsageError(f"{path} is not an image OpenCV can read")
    return image.shape[:2]


def mask_files(files, folder):
    """{image file: its mask file}: the file in `folder` (searched recursively) with the image's
    name less its suffix; every image needs one."""
    if not os.path.isdir(folder):
        raise UsageError(f"--masks {folder} is not a folder")
    by_stem = {}
    for path in image_files([folder]):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise UsageError(f"two masks are named {stem!r} in {folder}: {by_stem[stem]} and {path}")
        by_stem[stem] = path
    found = {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem not in by_stem:
            raise UsageError(f"no mask for {path} in {folder} (expected a file named {stem}.png or another "
                             "image suffix)")
        found[path] = by_stem[stem]
    return found


def read_mask(path, size, resize, image_path):
    """A mask file as (H, W) bool at the model's size: nonzero pixels are the object; it must have
    its image's size and mark something. Cropped or padded like its image (`resize`), then resized
    by nearest neighbour."""
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise UsageError(f"could not read the mask {path}")
    height, width = _native_size(image_path)
    if mask.shape != (height, width):
        raise UsageError(f"the mask {path} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {image_path} is "
                         f"{width}x{height}: a mask must have its image's size")
    mask = fit_aspect((mask > 0).astype(np.uint8), size, resize)
    mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    if not mask.any():
        raise UsageError(f"the mask {path} marks no object (no nonzero pixel within the part of the image the "
                         "model sees)")
    return mask


def cmd_evaluate(args):
    from keras_interp.evaluation import MEASURES, Evaluator

    unknown = [m for m in args.method if m not in methods()]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}; choose from {', '.join(sorted(methods()))}")
    wrong = [m for m in args.measure or () if m not in MEASURES]
    if wrong:
        raise UsageError(f"unknown measure {wrong[0]!r}; choose from {', '.join(MEASURES)}")
    model = load(args.model, args.unsafe)
    shape, scorer = _classifier(args, model)
    labels = labels_for(args, model, scorer.num_classes)
    target = None if args.target is None else class_index(args.target, labels, scorer.num_classes, "--target")
    files = image_files(args.inputs)
    masks = None
    if args.masks:  # a masks folder inside an input folder holds masks, not inputs
        inside = os.path.join(os.path.realpath(args.masks), "")
        files = [f for f in files if not os.path.realpath(f).startswith(inside)]
        if not files:
            raise UsageError(f"no images outside the masks folder {args.masks} in {', '.join(args.inputs)}")
        masks = mask_files(files, args.masks)
        # Every mask is read and checked before any work, so a bad one fails the run at once.
        masks = {f: read_mask(m, shape[:2], args.resize, f) for f, m in masks.items()}
    scale = scaler(args, shape)
    try:
        evaluator = Evaluator(model, args.method, args.measure, masks=masks is not None, steps=args.steps,
                              seed=args.seed, output=output_arg(args), batch_size=args.batch_size)
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    job = start_job(args, files, unique_names(files), args.batch_size)
    baselines = first_batch(args, files, shape, scale)
    for method in (m for m in args.method if REGISTRY[m].needs_baselines):
        evaluator._explainer(method, baselines)

    def work(unit, indices, shown):
        if not len(indices):
            return None, {"part": None}
        objects = None if masks is None else np.stack([masks[files[i]] for i in indices])
        try:
            return None, {"part": evaluator.part(scale(shown), target=target, masks=objects)}
        except ValueError as exc:
            raise UsageError(_last_line(exc)) from None

    parts = run_units(job, args, files, shape, args.batch_size, work, "judged")
    if not isinstance(parts, list):
        return parts  # another worker's exit code
    for part in parts:  # in the inputs' order: the report a single process makes
        if part["part"] is not None:
            evaluator.merge(part["part"])
    if not evaluator._count:
        raise UsageError("none of the inputs could be read")
    report = evaluator.result()
    paths = report.save(args.out)
    job.merged()
    if not args.quiet:
        print(report.markdown())
        print(f"evaluated {', '.join(args.method)} on {evaluator._count} images: " + ", ".join(paths.values()))
    return _report_parts(parts, files, shape, args)


def cmd_search(args):
    import tensorflow as tf

    import keras_interp as ki
    from keras_interp.search import SearchResult, merge_results

    model = load(args.model, args.unsafe)
    shape = tuple(model.inputs[0].shape)[1:]
    try:
        search = ki.DatasetSearch(model, args.layer)
        channels = search._check_channels(args.channels)
    except ValueError as exc:
        raise UsageError(_last_line(exc)) from None
    files = image_files(args.inputs)
    scale = scaler(args, shape)
    # Units of SEGMENT batches: each is searched on its own and the segments' top-k merged, which is
    # exact (ties go to the lower index in both), and a stopped search resumes by segment.
    segment = SEARCH_SEGMENT * args.batch_size
    job = start_job(args, files, unique_names(files), segment)

    def searched(indices, images):
        data = tf.data.Dataset.from_tensor_slices(scale(images))
        result = search.search(data, top_k=args.top_k, channels=args.channels, batch_size=args.batch_size)
        return dataclasses.replace(result, indices=indices[result.indices])  # positions among all inputs

    def work(unit, indices, shown):
        if not len(indices):
            return None, {"file": None}
        try:
            result = searched(indices, shown)
        except ValueError as exc:
            raise UsageError(_last_line(exc)) from None
        # The ranks only: the winners' windows are cut at the end, from the final top-k's images, so
        # a segment keeps kilobytes whatever the layer's receptive field.
        name = f"search-{unit}.npz"
        fields = {f: getattr(result, f) for f in ("values", "indices", "positions", "boxes")}
        return lambda: atomic_write(os.path.join(job.state, name), lambda h: np.savez(h, **fields)), {"file": name}

    parts = run_units(job, args, files, shape, segment, work, "searched", ahead=1)
    if not isinstance(parts, list):
        return parts  # another worker's exit code
    result = None
    for part in parts:  # one segment at a time into the running top-k: memory stays flat
        if part["file"] is not None:
            with np.load(os.path.join(job.state, part["file"])) as saved:
                found = SearchResult(**{key: saved[key] for key in saved.files}, windows=None, labels=None,
                                     channels=channels, layer=search.layer, receptive_field=search.receptive_field,
                                     model=model, input_size=shape[:2])
            result = merge_results([found] if result is None else [result, found], args.top_k)
    if result is None:
        raise UsageError("none of the inputs could be read")
    winners = {int(i): scale(read_image(files[i], shape[:2], shape[2], args.resize)[None])[0]
               for i in np.unique(result.indices)}
    result = search.windows_of(result, winners)
    ki.images.save(os.path.join(args.out, "search.png"), result.sheet())
    rows = [["channel", "rank", "value", "file", "row", "col"]]
    for c, channel in enumerate(result.channels):
        for r in range(result.values.shape[1]):
            rows.append([int(channel), r, f"{result.values[c, r]:.6f}", files[result.indices[c, r]],
                         *map(int, result.positions[c, r])])
    atomic_write(os.path.join(args.out, "search.csv"), lambda h: h.write(_csv_bytes(rows)), temporary=job.temporary())
    job.merged()
    if not args.quiet:
        print(f"top {result.values.shape[1]} images of {len(result.channels)} channels of {search.layer}: {args.out}")
    return _report_parts(parts, files, shape, args)


SEARCH_SEGMENT = 8  # batches per unit of `search` (held in memory with the next one)


def cmd_demo(args):
    import keras_interp as ki

    out = out_folder(args.out, args.overwrite)
    held_out = ki.datasets.shapes(64, seed=1234)
    logs = os.path.join(out, "logs")
    logger = ki.ExplanationLogger(held_out.images[:8], logs, methods=("saliency", "cam", "class_model"),
                                  labels=held_out.labels[:8], masks=held_out.masks[:8],
                                  class_names=held_out.class_names, freq=1)  # a short run: every epoch
    if not args.quiet:
        print(f"Training the reference CNN on {args.train_size} built-in shapes for {args.epochs} epochs, "
              f"logging explanations to {logs} ...")
    model, _ = ki.models.train_on_shapes(train_size=args.train_size, epochs=args.epochs, callbacks=[logger],
                                         seed=args.seed, verbose=0 if args.quiet else 2)
    model_path = os.path.join(out, "model.keras")
    model.save(model_path)
    # Keras' .keras files keep no class names: they go beside the model, for --labels.
    labels_path = os.path.join(out, "labels.txt")
    with open(labels_path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{name}\n" for name in held_out.class_names))
    shown = 6
    rows, labels = held_out.images[:shown], held_out.labels[:shown]
    names = [name for name in methods() if not REGISTRY[name].attention]  # the demo's model is a CNN
    cells = [[image] for image in rows]
    for name in names:
        # Expected Gradients compares with other held-out shapes than the ones shown.
        maps = methods()[name](model, args.seed, baselines=held_out.images[16:]).explain(rows, target=labels)
        for row, image, map_ in zip(cells, rows, maps):
            row.append(ki.images.overlay(image, map_))
    probabilities = model.predict(rows, verbose=0)
    row_labels = [f"true {held_out.class_names[t]}\npredicted\n{held_out.class_names[p.argmax()]} {p.max():.0%}"
                  for t, p in zip(labels, probabilities)]
    titles = ["input"] + [REGISTRY[name].title for name in names]
    legend = ki.images.colorbar(400, "jet", "low", "high: each map scaled to its own min..max")
    sheet = ki.images.grid(cells, col_labels=titles, row_labels=row_labels, cell_size=(96, 96), legend=legend,
                           row_label_width=110)
    sheet_path = ki.images.save(os.path.join(out, "explanations.png"), sheet)
    # The sheet's rows, one file each, for `keras-interp explain` to read back.
    images_dir = os.path.join(out, "images")
    for i, image in enumerate(rows):
        ki.images.save(os.path.join(images_dir, f"{i}_{held_out.class_names[labels[i]]}.png"), image)
    if not args.quiet:
        accuracy = np.mean(model.predict(held_out.images, verbose=0).argmax(axis=1) == held_out.labels)
        print(f"held-out accuracy {accuracy:.3f}; model saved to {model_path}")
        print(f"every method on {shown} held-out images (each map explains the true class): {sheet_path}")
        print("Next:")
        print(f"  tensorboard --logdir {logs} --samples_per_plugin=images=1000,keras_interp=1000")
        print(f"  keras-interp explain {model_path} {images_dir} --method gradcam --method saliency "
              f"--labels {labels_path} --out {os.path.join(out, 'explained')}")
    return 0


# ----------------------------------------------------------------------------- parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default said once, and only where there is one: not after a help text that
    already names it, not for flags, required options or options without a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.required or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


def parser():
    from keras_interp import __version__

    main_parser = argparse.ArgumentParser(prog="keras-interp", description="Explain Keras image models.")
    main_parser.add_argument("--version", action="version", version=f"keras-interp {__version__}")
    sub = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_, fn, seed=None):
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=_HelpFormatter)
        p.set_defaults(fn=fn, seed=0)
        p.add_argument("--quiet", action="store_true", help="no progress output")
        if seed:  # only where something is random
            p.add_argument("--seed", type=int, default=0, help=f"seed of {seed}")
        return p

    def model_args(p, out):
        p.add_argument("model", help="a saved .keras (or legacy .h5) model")
        p.add_argument("--unsafe", action="store_true", help="load models with Lambda layers (trusted files only)")
        p.add_argument("--out", default=out, help="output folder")
        p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")

    def scale_args(p):
        p.add_argument("--scale", choices=("0-1", "0-255"), default="0-1", help="pixel range the model takes")
        p.add_argument("--mean", type=float, nargs="+", help="subtracted after --scale (per channel)")
        p.add_argument("--std", type=float, nargs="+", help="divided by after --mean")
        p.add_argument("--preprocess", help="keras.applications.<family>, e.g. keras.applications.resnet50")

    def labels_arg(p):
        p.add_argument("--labels", metavar="FILE", help="class names, one per line (line k names class k): "
                       "written beside the class numbers and accepted in place of them")

    def job_args(p):
        p.add_argument("--resume", action="store_true", help="continue the job --out holds (stopped, preempted): "
                       "inputs whose outputs are complete are skipped")
        p.add_argument("--wait", type=float, default=600, help="with --strategy multiworker: seconds a worker waits "
                       "for the chief to start the job, and the chief for news from the others")

    def batch_arg(p):
        p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
        p.add_argument("--resize", choices=RESIZES, default="crop",
                       help="images of another aspect than the model's: centre crop, pad with black or squash")

    p = command("demo", "train the reference CNN on the built-in shapes and show every method", cmd_demo,
                seed="the training, SmoothGrad's noise and the other methods' draws")
    p.add_argument("--out", default=os.path.join("out", "demo"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--epochs", type=int, default=8, help="training epochs")
    p.add_argument("--train-size", type=int, default=3000, help="training images")

    p = command("explain", "explain images (files or folders) with one or more methods", cmd_explain,
                seed="the random methods' draws (" + ", ".join(n for n, e in REGISTRY.items() if e.seeded) + ")")
    model_args(p, "explained")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--method", action="append", required=True, metavar="NAME",
                   help="a method, repeat for several: " + ", ".join(_METHOD_NAMES))
    p.add_argument("--target", help="class to explain, a number or a --labels name (default: each image's "
                   "predicted class)")
    labels_arg(p)
    p.add_argument("--output", help="the output to explain, a name or an index (required for a model with several)")
    p.add_argument("--layer", help="layer for the CAM family (default: the last spatial one), and for deconvnet "
                   "and guided_backprop, which then explain a channel of it")
    p.add_argument("--channel", type=int, help="with --layer: the channel deconvnet and guided_backprop project "
                   "(default: each image's most active)")
    p.add_argument("--strategy", choices=("mirrored", "multiworker"), help="mirrored: spread each batch over "
                   "the machine's devices (tf.distribute.MirroredStrategy's: every GPU, else the CPU); multiworker: "
                   "also share the inputs out over the TF_CONFIG cluster's workers (see docs/cluster.md)")
    p.add_argument("--format", choices=("npy", "memmap"), default="npy", help="npy: a sheet and a .npy per input "
                   "and method; memmap: one <method>.npy array (inputs, H, W) per method, rows as explanations.csv's "
                   "row column says, and no sheets")
    job_args(p)
    scale_args(p)
    batch_arg(p)

    p = command("evaluate", "judge methods on images: faithfulness and, with --masks, localization; writes a "
                "table (CSV, Markdown) and a figure", cmd_evaluate,
                seed="the random methods' and measures' draws")
    model_args(p, "evaluation")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--method", action="append", required=True, metavar="NAME",
                   help="a method, repeat for several: " + ", ".join(_METHOD_NAMES))
    p.add_argument("--measure", action="append", metavar="NAME",
                   help="a measure, repeat for several (default: deletion, insertion, road_morf, road_lerf, "
                   "mu_fidelity, and with --masks pointing_game, energy, box_iou, mask_iou, localization_accuracy; "
                   "also infidelity, max_sensitivity)")
    p.add_argument("--masks", metavar="FOLDER", help="object masks, one image file per input with its name "
                   "(nonzero = object): adds the localization measures")
    p.add_argument("--target", help="class to explain and judge, a number or a --labels name (default: each "
                   "image's predicted class)")
    labels_arg(p)
    p.add_argument("--output", help="the output to explain, a name or an index (required for a model with several)")
    p.add_argument("--steps", type=int, default=16, help="points of the deletion and insertion curves")
    p.add_argument("--strategy", choices=("multiworker",), help="share the inputs out over the TF_CONFIG "
                   "cluster's workers; the chief writes the report (see docs/cluster.md)")
    job_args(p)
    scale_args(p)
    batch_arg(p)

    p = command("layers", "list the layers and what each can be used for", cmd_layers)
    p.add_argument("model", help="a saved .keras (or legacy .h5) model")
    p.add_argument("--unsafe", action="store_true", help="load models with Lambda layers (trusted files only)")

    p = command("visualize", "class-model images by gradient ascent", cmd_visualize, seed="the random start images")
    model_args(p, "class_models")
    p.add_argument("--classes", nargs="+", required=True, help="the classes to draw, numbers or --labels names")
    labels_arg(p)
    p.add_argument("--output", help="the output whose classes are drawn, a name or an index (for a model with several)")
    p.add_argument("--steps", type=int, default=200, help="gradient-ascent steps")
    p.add_argument("--recipe", choices=("yosinski", "fourier", "maco"), default="fourier",
                   help="Lucid's Fourier image (fourier, the default), pixels with blur (yosinski) or MaCo's phase "
                   "(maco)")
    p.add_argument("--rotate", type=int, metavar="DEGREES",
                   help="with --recipe fourier: rotate the images by up to this many degrees each way (Lucid's 10 "
                   "by default; 180, any rotation, for data with no up, such as shapes, cells or aerial images)")

    p = command("dream", "Deep Dream on an image", cmd_dream, seed="the jitter")
    model_args(p, "dream")
    p.add_argument("image", help="an image file")
    p.add_argument("--layers", nargs="+", help="layers whose activations are amplified (none: DeepDream's own choice)")
    p.add_argument("--output", help="with several outputs and no --layers: the output whose last feature map is "
                   "amplified, a name or an index")
    p.add_argument("--target", type=int, help="a class index: boost that class's score instead of layers' activations")
    p.add_argument("--steps", type=int, default=20, help="gradient-ascent steps per octave")
    scale_args(p)

    p = command("search", "the dataset images that drive each channel of a layer", cmd_search)
    model_args(p, "search")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--layer", required=True, help="the layer whose channels are searched")
    p.add_argument("--top-k", type=int, default=9, help="images per channel")
    p.add_argument("--channels", type=int, nargs="+", help="channels to search (default: all)")
    p.add_argument("--strategy", choices=("multiworker",), help="share the inputs out over the TF_CONFIG "
                   "cluster's workers; the chief merges their top-k (see docs/cluster.md)")
    job_args(p)
    scale_args(p)
    batch_arg(p)
    return main_parser


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras with file descriptor 2 sent to /dev/null: their C++ start-up
    lines (absl, oneDNN, CUDA probing) ignore TF_CPP_MIN_LOG_LEVEL and would bury the command's
    own one-line messages. Python errors are still raised, and printed, after stderr is back."""
    if "tensorflow" in sys.modules:
        return
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover - no file descriptor 2 to redirect
        import keras  # noqa: F401
        return
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    """Run the command; returns the exit code (0, 1 when some inputs failed, 2 on usage errors)."""
    args = parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("keras-interp: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    debug = os.environ.get("KERAS_INTERP_DEBUG") == "1"  # full tracebacks and TensorFlow's start-up log
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not debug:
        _import_tensorflow_quietly()
    import warnings

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes are not the user's business here
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = args.fn(args)
        for message in dict.fromkeys(str(w.message).removeprefix("ExplanationLogger: ") for w in caught
                                     if issubclass(w.category, UserWarning)):
            print(f"keras-interp: note: {message.splitlines()[0]}", file=sys.stderr)
        return code
    except UsageError as exc:
        print(f"keras-interp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-interp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (KERAS_INTERP_DEBUG=1 shows it)
        if debug:
            raise
        print(f"keras-interp: error: {type(exc).__name__}: {_last_line(exc)} (KERAS_INTERP_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        return 2


def run():
    """Console-script entry point."""
    sys.exit(main())
