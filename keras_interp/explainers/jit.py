"""jit_compile="auto": deciding XLA or not on one chunk's model pass (see Explainer._call)."""

import atexit
import functools
import threading
import time

import tensorflow as tf

__all__ = ["JitProbe", "block", "wait_for_probes"]


def block(out):
    """Wait for a result (eager tensors are computed asynchronously): numpy of every leaf."""
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return out


# jit_compile="auto": the clock its timings read (tests replace it to fake them), and the probe
# threads still running, waited for at exit so that TensorFlow is not torn down under a compile.
_clock = time.perf_counter
# How long XLA's warm-up may take, as a share of the first plain call: then a first call that
# gives XLA up costs about (1 + share) plain calls.
XLA_WARM_UP_SHARE = 1.0
_PROBES = set()
_PROBES_LOCK = threading.Lock()


def wait_for_probes():
    with _PROBES_LOCK:
        pending = list(_PROBES)
    for thread in pending:
        thread.join(120)


atexit.register(wait_for_probes)


def _in_background(fn):
    """Start fn() in a daemon thread (waited for at exit, see _PROBES); returns the thread."""

    def run():
        try:
            fn()
        finally:
            with _PROBES_LOCK:
                _PROBES.discard(threading.current_thread())

    thread = threading.Thread(target=run, name="keras_interp jit probe", daemon=True)
    with _PROBES_LOCK:
        _PROBES.add(thread)
    thread.start()
    return thread


def _current_device():
    """The device scope of this thread (None if none), for the probe's own threads."""
    try:
        from tensorflow.python.eager import context  # noqa: PLC0415 - no public API gives the scope

        return context.context().device_name or None
    except Exception:  # noqa: BLE001 - only a refinement: without it the default placement is used
        return None


def _probe_pass(scorer, kind, x):
    logits = scorer(list(x) if isinstance(x, tuple) else x)
    if kind == "forward":
        return logits
    return tf.gradients(tf.reduce_sum(tf.cast(logits, tf.float32)), x,
                        unconnected_gradients=tf.UnconnectedGradients.ZERO)


def _probe_functions(scorer, kind):
    """{False: plain, True: XLA}: the pass jit_compile="auto" times, the model's forward pass of
    a batch ("forward") or its forward+backward to the inputs ("gradient").

    The XLA one calls the plain one, so the pass is traced once (by XLA's warm-up, within its
    time limit) and the plain one reuses the trace. They wrap functools.partial objects, not
    closures: TensorFlow counts traces per function code and would warn of "retracing" after a
    few decisions (new models or shapes)."""
    plain = tf.function(functools.partial(_probe_pass, scorer, kind))
    return {False: plain, True: tf.function(functools.partial(_call_with, plain), jit_compile=True)}


def _call_with(fn, x):
    return fn(x)


class JitProbe:
    """Decides XLA or not for jit_compile="auto" on one chunk's model pass (see Explainer._call).

    `decide(limit)` runs after the first call has run plain, `limit` its seconds. XLA's warm-up
    (the pass's trace, its XLA compile and first run) runs in a daemon thread joined with that
    timeout: if it has not finished, XLA is abandoned and plain kept at once. Otherwise the
    pass runs once more plain (its warm-up) and then each way, best of 2; an XLA run still going
    when the plain pass's best has passed is abandoned too (it can only be slower). An abandoned
    compile or run cannot be interrupted: it finishes in the background (cores busy for that
    long, also during the calls that follow) and its result is dropped.

    The warm-up does not overlap the plain call: on a 2-core CPU the two fought for the cores
    (XLA compiles and runs on several threads) and the first call took longer than running
    them one after the other.
    """

    def __init__(self, scorer, kind, x):
        self.fns = _probe_functions(scorer, kind)
        self.x, self.device = x, _current_device()
        self.errors, self.compile_seconds = {}, None

    def _run(self, jit):
        start = _clock()
        if self.device:
            with tf.device(self.device):
                block(self.fns[jit](self.x))
        else:
            block(self.fns[jit](self.x))
        return _clock() - start

    def _in_thread(self, jit, timeout):
        """Seconds of one run in a daemon thread, or None if it has not finished after
        `timeout` seconds (or failed: see self.errors)."""
        box = {}

        def run():
            try:
                box["seconds"] = self._run(jit)
            except Exception as exc:  # noqa: BLE001 - XLA cannot compile this model: reported
                self.errors[jit] = exc

        _in_background(run).join(timeout)
        return box.get("seconds")

    def _failed(self, result):
        jit, exc = next(iter(self.errors.items()))
        result["error"] = f"{'XLA' if jit else 'plain'} pass failed: {type(exc).__name__}: {exc}"[:500]
        return result

    def decide(self, limit):
        """{"xla": kept, "seconds": {mode: best of 2 of the pass}, "abandoned": None, "compile" or
        "run", "compile_seconds": XLA's warm-up, "error": why XLA could not be tried}."""
        result = {"xla": False, "seconds": {}, "abandoned": None, "compile_seconds": None, "error": None}
        self.compile_seconds = result["compile_seconds"] = self._in_thread(True, limit)
        if self.errors:
            return self._failed(result)
        if self.compile_seconds is None:
            result["abandoned"] = "compile"
            return result
        try:
            self._run(False)  # warm-up: the trace is XLA's, shared
            plain = min(self._run(False) for _ in range(2))
        except Exception as exc:  # noqa: BLE001 - the model runs plain in the call itself; keep plain
            self.errors[False] = exc
            return self._failed(result)
        result["seconds"][False] = plain
        for attempt in range(2):
            seconds = self._in_thread(True, 1.1 * plain + 0.01)  # slack for starting the thread
            if self.errors:
                return self._failed(result)
            if seconds is None:  # slower than plain already: no need to wait for the end
                result["abandoned"] = None if attempt else "run"
                break
            result["seconds"][True] = min(seconds, result["seconds"].get(True, seconds))
        result["xla"] = result["seconds"].get(True, float("inf")) < plain
        return result
