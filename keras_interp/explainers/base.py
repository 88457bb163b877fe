"""What every explainer shares: the model's scorer, input checks and chunk planning."""

import threading
import types
import weakref

import numpy as np
import tensorflow as tf

from keras_interp.checks import check_images, check_inputs, pack
from keras_interp.explainers import jit as _jit
from keras_interp.explainers.chunks import (  # noqa: F401  (re-exported: the explainers' toolbox)
    ACTIVE as _ACTIVE, _xla_available, batch_of, broadcast_baseline, fused, merge_leading, over_chunks, plan_chunks,
    replaced_copies, spatial_axes,
)
from keras_interp.graph import FORMS
from keras_interp.targets import Scorer, resolve_target

__all__ = ["Explainer", "check_images", "check_inputs", "pack", "choose_input", "plan_chunks", "over_chunks",
           "merge_leading", "broadcast_baseline", "spatial_axes", "fused", "replaced_copies"]


def choose_input(scorer, input):
    """The index of the input a method perturbs or maps onto: `input` (a name or an index), or
    for None the only input, else the first signal, image or volume input."""
    shapes, names = scorer.input_shapes, scorer.input_names
    if shapes is None or len(shapes) == 1:
        if input not in (None, 0) and not (names and input == names[0]):
            raise ValueError(f"input={input!r}: the model has a single input{f' {names}' if names else ''}.")
        return 0
    if input is None:
        for i, shape in enumerate(shapes):
            if len(shape) in (3, 4, 5):
                return i
        raise ValueError(
            f"None of the model's inputs {names} (shapes {[tuple(s) for s in shapes]}) is a "
            f"{' or '.join(FORMS[r] for r in (3, 4, 5))} batch; pass input= to choose one."
        )
    if isinstance(input, str):
        if input not in names:
            raise ValueError(f"The model has no input named {input!r}; its inputs are {names}.")
        return names.index(input)
    if isinstance(input, (bool, np.bool_)) or not isinstance(input, (int, np.integer)):
        raise TypeError(f"input must be an input name or index; received {input!r}.")
    if not -len(shapes) <= input < len(shapes):
        raise ValueError(f"input={input} is out of range: the model has {len(shapes)} inputs {names}.")
    return int(input) % len(shapes)


def _to_numpy(out):
    return tf.nest.map_structure(np.asarray, out)


def _slice(x, start, stop, size):
    """Examples start..stop of an array (or a tuple of arrays), padded to `size` by repeating
    the last one."""
    if isinstance(x, tuple):
        return tuple(_slice(a, start, stop, size) for a in x)
    s = x[start:stop]
    if stop - start < size:
        s = np.concatenate([s, np.repeat(s[-1:], size - (stop - start), axis=0)])
    return s


# model -> {"functions": {(class, method, scorer signature, settings): tf.function},
#           "targets": {callable target key: _Target}}. Keyed weakly, and the functions hold no
# reference to the model or an explainer (only the variables their graphs capture), so building
# `ki.Saliency(model)` again, e.g. in a loop, reuses the traces, and a dropped model is freed.
_SHARED = weakref.WeakKeyDictionary()


def _value_key(value):
    """A hashable stand-in for a closure or default value, or None when it has none."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, hash(value.tobytes()))
    if isinstance(value, np.generic):
        return ("numpy", value.dtype.str, value.item())
    if isinstance(value, tuple):
        keys = tuple(_value_key(v) for v in value)
        return None if any(k is None for k in keys) else ("tuple", keys)
    if isinstance(value, (tf.Tensor, tf.Variable, types.FunctionType, types.ModuleType, type)) or callable(value):
        return ("id", id(value))  # immutable tensors, live variables, functions: by identity
    return None


# Instance attributes that are not settings of the compiled functions (see Explainer._settings).
_NOT_SETTINGS = frozenset({
    "model", "scorer", "jit_compile", "_functions", "_calls", "_said", "_signed_checked", "_jit_choices",
    "_chunk_choices", "_unshared",
})


def setting_key(value, depth=0):
    """A hashable value equal for equal settings: numbers, strings and None as they are;
    tuples, lists and dicts item by item; arrays and constant tensors by content; a graph Site
    by its nodes; a Scorer by its signature; a plain function by its code and the keys of what
    it closes over; variables and anything else by identity (never shared by mistake)."""
    from keras_interp.graph import Site

    if depth > 8:
        return ("id", id(value))
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(setting_key(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), setting_key(v, depth + 1)) for k, v in value.items())))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, hash(value.tobytes()))
    if isinstance(value, np.generic):
        return ("numpy", value.dtype.str, value.item())
    if isinstance(value, Site):
        return ("site", tuple(map(id, value.nodes)), value.index)
    if isinstance(value, Scorer):
        return ("scorer", value.signature())
    if isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable) and hasattr(value, "numpy"):
        return ("tensor", setting_key(value.numpy(), depth + 1))
    if isinstance(value, types.FunctionType):
        cells = tuple(setting_key(c.cell_contents, depth + 1) for c in (value.__closure__ or ()))
        return ("function", value.__code__, id(value.__globals__), cells,
                setting_key(value.__defaults__, depth + 1))
    return ("id", id(value))


def _target_key(fn):
    if isinstance(fn, types.FunctionType):
        values = [c.cell_contents for c in (fn.__closure__ or ())] + list(fn.__defaults__ or ())
        values += sorted((fn.__kwdefaults__ or {}).items())
        keys = tuple(_value_key(v) for v in values)
        if all(k is not None for k in keys):
            return ("function", fn.__code__, id(fn.__globals__), keys)
    return ("object", id(fn))


class _Target:
    """A callable target as passed to compiled functions (held by the model's shared state,
    so the objects its key refers to by identity stay alive)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, logits):
        return self.fn(logits)


def _check_target(fn, logits_shape, batch):
    """Call a new callable target on dummy logits: one score per example, differentiable.

    Skipped when the logits' shape is not fully known (a fully convolutional model)."""
    if logits_shape is None or any(d is None for d in logits_shape[1:]):
        return
    shape = (batch,) + tuple(logits_shape[1:])
    logits = tf.random.stateless_normal(shape, seed=(1, 2))
    try:
        with tf.GradientTape() as tape:
            tape.watch(logits)
            scores = fn(logits)
    except Exception as exc:  # noqa: BLE001 - the user's code; say what it was given
        raise ValueError(
            f"The callable target failed on logits of shape {shape}: {type(exc).__name__}: {exc}"
        ) from exc
    got = tuple(getattr(scores, "shape", ()))
    if got != (batch,):
        raise ValueError(
            f"The callable target must return one score per example, shape ({batch},); it returned "
            f"shape {got} for logits of shape {shape}. Reduce other axes, e.g. "
            "`lambda y: keras.ops.sum(y * mask, axis=(1, 2, 3))`."
        )
    if tape.gradient(scores, logits) is None:
        raise ValueError(
            "The callable target's score does not depend differentiably on the logits (an argmax, a "
            "comparison or a constant?), so there is no gradient to explain. Return a score computed "
            "from the logits, e.g. `lambda y: y[:, k]`."
        )


def _shapes(args):
    """What a compiled call's speed depends on: the shapes and dtypes of its array arguments and
    the values of the others."""
    key = []
    for a in tf.nest.flatten(args):
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            key.append((tuple(a.shape), str(a.dtype)))
        else:
            key.append(_value_key(a) or ("id", id(a)))
    return tuple(key)


def _bound_to_active(method, jit):
    """method(explainer, *args) with the explainer that is calling, read when tracing; while it
    traces, `_ACTIVE.xla` says whether XLA will compile it (see over_chunks)."""

    def run(*args):
        previous = getattr(_ACTIVE, "xla", False)
        _ACTIVE.xla = bool(jit)
        try:
            return method(_ACTIVE.explainer, *args)
        finally:
            _ACTIVE.xla = previous

    run.__name__ = method.__name__
    return run


class Explainer:
    """Base class: holds the model, its pre-softmax scorer and the chunk size.

    Class attribute `xla_changes_draws`: True where the method draws random numbers, which
    TensorFlow's XLA kernels draw differently from its plain ones (same seed, other numbers);
    jit_compile="auto" then stays plain, so results do not depend on which mode was faster.

    Args:
        model: a Keras model taking (B, L, C) signals, (B, H, W, C) images or (B, D, H, W, C)
            volumes; a model with several inputs takes them as a list or a dict.
        batch_size: most images one forward pass feeds the model: larger batches are split,
            and perturbation methods stream their perturbed copies in chunks of this size.
        output: the output to explain, a name or an index; required when the model has several.
        jit_compile: compile with XLA: None (TensorFlow's default, no XLA), True, False, or
            "auto": decide once per input shape (XLA fuses convolutions and their pointwise
            neighbours, often 1.5-2x on CPU, but can be 10x slower on depthwise and separable
            convolutions). The first "auto" call runs the method plain (the result returned),
            then compiles one chunk's model pass with XLA in a background thread: the forward
            pass of as many images as one of the method's passes takes, or its forward+backward
            for gradient methods (class attribute `_probe`). If that compile and first run take
            longer than the plain call did, XLA is abandoned at once (the compile still
            finishes in the background, its result dropped); otherwise the pass is timed plain
            and with XLA (best of 2; an XLA run that outlasts the plain best is abandoned too)
            and later calls use the faster. So the decision costs at most about one plain call
            and a few passes, never a run of the whole method with XLA. `jit_choices` shows
            what was kept and why. Maps agree between the modes to float rounding, except
            where a method draws random numbers (SmoothGrad's noise): XLA draws other numbers
            for the same seed, so "auto" keeps those plain.
    """

    xla_changes_draws = False
    # What jit_compile="auto" times to choose XLA or not: "gradient" (the model's forward+backward
    # to its inputs) or "forward" (its forward pass only, for perturbation methods).
    _probe = "gradient"
    # How a viewer should read this explainer's maps (the logger writes both next to each map):
    # whether they can be negative (a viewer then draws both signs, diverging around zero), and
    # the default percentile clip of their magnitude: pixel attributions hide the weakest 62%
    # (Vertex AI's default), region maps (CAM family, occlusion) keep every nonzero cell.
    signed = False
    display_clip = (62.0, 99.9)

    def __init__(self, model, batch_size=128, output=None, jit_compile=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
        if not (jit_compile is None or isinstance(jit_compile, bool) or (isinstance(jit_compile, str) and jit_compile == "auto")):
            raise ValueError(f'jit_compile must be None, True, False or "auto"; received {jit_compile!r}.')
        self.jit_compile = jit_compile
        self.model = model
        self.scorer = Scorer(model, output=output)
        self._calls = threading.local()  # how this thread's current call gave its inputs
        self.batch_size = batch_size
        self._functions = {}

    def _settings(self):
        """What the compiled functions may read of this explainer, as one hashable value: every
        instance attribute except the model and scorer (keyed apart) and bookkeeping
        (_NOT_SETTINGS), each by `setting_key`.

        Explainers of one class on one model with equal settings share their compiled
        functions. Taken from the instance as it is, not listed by hand, so an attribute a
        subclass adds (a scale, a threshold) can never reuse a trace made with another value.
        """
        return tuple(sorted((name, setting_key(value)) for name, value in vars(self).items()
                            if name not in _NOT_SETTINGS))

    @staticmethod
    def tracing_xla():
        """While a compiled method traces: whether XLA compiles it (the chunk loop's `xla`)."""
        return bool(getattr(_ACTIVE, "xla", False))

    def _shared(self):
        """This model's shared state: {"functions": {...}, "targets": {...}}."""
        try:
            return _SHARED.setdefault(self.model, {"functions": {}, "targets": {}})
        except TypeError:  # a model that cannot be weakly referenced: nothing shared
            return self.__dict__.setdefault("_unshared", {"functions": {}, "targets": {}})

    def _compiled(self, name, jit=None):
        """The tf.function running method `name` (with XLA for jit=True), shared across
        instances (see _SHARED)."""
        fn = self._functions.get((name, jit))
        if fn is None:
            key = (type(self), name, self.scorer.signature(), self._settings(), jit)
            functions = self._shared()["functions"]
            fn = functions.get(key)
            if fn is None:
                fn = functions[key] = tf.function(_bound_to_active(getattr(type(self), name), jit), jit_compile=jit)
            self._functions[(name, jit)] = fn
        return fn

    def _run_compiled(self, fn, args):
        previous = getattr(_ACTIVE, "explainer", None)
        _ACTIVE.explainer = self
        try:
            return fn(*args)
        finally:
            _ACTIVE.explainer = previous

    def _call(self, name, *args):
        """Run compiled method `name` with this instance as `self` while it traces."""
        planned = _ACTIVE.__dict__.pop("planned", None)  # this call's pass size, from plan_chunks
        if self.jit_compile != "auto" or self.xla_changes_draws:
            jit = False if self.jit_compile == "auto" else self.jit_compile
            return self._run_compiled(self._compiled(name, jit), args)
        key = (type(self), name, self.scorer.signature(), self._settings(), _shapes(args))
        choices = self._shared().setdefault("jit", {})
        if key in choices:
            return self._run_compiled(self._compiled(name, choices[key]), args)
        return self._first_auto_call(name, args, key, choices, planned)

    def _first_auto_call(self, name, args, key, choices, planned):
        """The first jit_compile="auto" call for a shape: the method runs plain once (the result
        returned), then jit.JitProbe decides on one chunk's model pass whether later calls use XLA,
        giving XLA's compile at most as long as that plain call took."""
        kind, images = self._probe, None
        if kind not in ("forward", "gradient"):
            raise ValueError(f'{type(self).__name__}._probe must be "forward" or "gradient"; it is {kind!r}.')
        start = _jit._clock()
        out = _jit.block(self._run_compiled(self._compiled(name, False), args))
        seconds = _jit._clock() - start
        x = self._probe_batch(args[0] if args else None, planned)
        if x is not None and _xla_available():
            images = int((x[0] if isinstance(x, tuple) else x).shape[0])
            record = _jit.JitProbe(self.scorer, kind, x).decide(seconds * _jit.XLA_WARM_UP_SHARE)
        else:
            reason = "this TensorFlow build has no XLA" if x is not None else "no model input to probe"
            record = {"xla": False, "seconds": {}, "abandoned": None, "compile_seconds": None, "error": reason}
        record.update(probe=kind, images=images, call_seconds=seconds)
        choices[key] = record["xla"]
        self.jit_choices[(name, key[-1])] = record
        return out

    def _probe_batch(self, x, planned):
        """The batch jit_compile="auto" times: the call's examples `x` (its first argument, the
        model's inputs), repeated to the images one of its model passes takes (`planned`, from
        plan_chunks; else the batch itself). None when `x` is not the model's inputs."""
        arrays = x if isinstance(x, tuple) else (x,)
        shapes = self.scorer.input_shapes
        if any(not isinstance(a, (np.ndarray, tf.Tensor)) or a.ndim < 2 for a in arrays) or (
                shapes is not None and (len(shapes) != len(arrays) or any(
                    a.ndim != len(s) for a, s in zip(arrays, shapes)))):
            return None
        batch = len(arrays[0])
        copies = max(1, (planned or batch) // batch)
        tiled = tuple(tf.constant(np.tile(np.asarray(a), (copies,) + (1,) * (a.ndim - 1))) for a in arrays)
        return tiled if isinstance(x, tuple) else tiled[0]

    @property
    def jit_choices(self):
        """{(method, input shapes): record} of the choices this explainer made with
        jit_compile="auto" (another explainer of the model that made one first shares it and
        records nothing). A record: "xla" (kept or not); "seconds" ({False: plain, True: XLA},
        best of 2 of the probed pass, a mode missing when not timed); "abandoned" (None, or
        "compile" when XLA's compile and first run outlasted the plain call, "run" when an XLA
        run outlasted the plain pass); "compile_seconds" (XLA's compile and first run);
        "error" (why XLA was not tried, else None); "probe" ("forward" or "gradient"); "images"
        (the probed batch); "call_seconds" (the first call, plain, its trace included)."""
        return self.__dict__.setdefault("_jit_choices", {})

    @property
    def trace_count(self):
        """How many times the compiled functions this explainer uses have been traced."""
        return sum(f.experimental_get_tracing_count() for f in self._functions.values())

    def _canonical(self, score_fn, batch):
        """The callable target as the compiled functions see it: one object per distinct target.

        A compiled function is traced once per target object, and what the target reads is
        fixed in the trace. Two plain functions are one target when they share code, globals,
        and closure and default values (NumPy arrays by content, so an array refilled in place
        is a new target); `lambda y: y[:, 3]` written in a loop is traced once, `lambda y:
        y[:, k]` once per k. Other callables are told apart by identity. A new target is
        checked once on dummy logits, so a wrong shape or a score that does not depend on the
        logits gets a clear error before any tracing.
        """
        key = _target_key(score_fn)
        targets = self._shared()["targets"]
        wrapped = targets.get(key)
        if wrapped is None:
            _check_target(score_fn, self.scorer.logits_shape(), batch)
            wrapped = targets[key] = _Target(score_fn)
        return wrapped

    def _check(self, inputs):
        """The inputs as arrays: one for a single-input model, else a tuple in model order.

        Remembers how they were given (list or dict), so results come back the same way."""
        x, self._calls.form = check_inputs(inputs, self.scorer.input_shapes, self.scorer.input_names)
        return x

    def _pack(self, values):
        return pack(values, getattr(self._calls, "form", None), self.scorer.input_names)

    # Class-agnostic methods (Eigen-CAM, FEM, attention rollout) read no score: `target` is
    # ignored, so they also explain models whose outputs have no class axis (segmentation maps).
    class_agnostic = False

    def _prepare(self, inputs, target):
        x = self._check(inputs)
        if self.class_agnostic:
            return x, np.full((batch_of(x),), -1, np.int32), None
        first = min(8, self.batch_size)
        self.scorer.check_outputs(tuple(a[:first] for a in x) if isinstance(x, tuple) else x[:first])
        batch = batch_of(x)
        classes, score_fn = resolve_target(target, batch, self.scorer.num_classes, self.scorer.output_shape)
        return x, classes, None if score_fn is None else self._canonical(score_fn, batch)

    def _split(self, x, index):
        """(the perturbed input, the others with None at its place) for the model's inputs x."""
        if not isinstance(x, tuple):
            return x, ()
        return x[index], tuple(None if i == index else a for i, a in enumerate(x))

    def _batched(self, fn, *aligned):
        """fn over slices of at most `batch_size` examples of the `aligned` arrays; numpy out.

        Every forward pass then sees at most `batch_size` images, however large the batch. The
        last slice is padded by repeating its last example, so all slices share one shape and
        one trace; examples are independent, so the result equals one call on the whole batch.
        """
        n = batch_of(aligned[0])
        if n <= self.batch_size:
            return _to_numpy(fn(*aligned))
        size, parts = self.batch_size, []
        for start in range(0, n, size):
            stop = min(start + size, n)
            out = _to_numpy(fn(*(_slice(a, start, stop, size) for a in aligned)))
            parts.append(tf.nest.map_structure(lambda o: o[:stop - start], out))
        return tf.nest.map_structure(lambda *p: np.concatenate(p), *parts)

    def explain(self, inputs, target=None):
        """Importance maps (B, H, W) float32; higher means more important."""
        raise NotImplementedError

    def explain_with_logits(self, inputs, target=None):
        """(maps, logits): `explain`'s maps and the model's logits (the scorer's: pre-softmax where
        the softmax could be removed) on the inputs, for a caller that reports predictions
        beside the maps. Here a compiled forward pass after `explain`; an explainer whose own
        pass on the clean inputs computes the logits (Saliency) returns those, at no extra cost."""
        maps = self.explain(inputs, target=target)
        x = self._check(inputs)
        return maps, self._batched(lambda xb: self._call("_logits", xb), x)

    def _logits(self, x):
        return self.scorer(x)

    def __repr__(self):
        return f"{type(self).__name__}(model={self.model.name!r})"
