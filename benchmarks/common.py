"""Shared benchmark harness: timing, physical limits measured in the same process, peers.

Absolute times on small machines are noise; the figures are ratios of a method's time to the
time its arithmetic needs (a compiled forward or forward+backward of the same model), measured
in the same run, and to the peers' equivalents on the same model and inputs.
"""

import contextlib
import io
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def timed(fn, repeats=3, warmup=1):
    """Best wall time of fn() over `repeats` runs after `warmup` untimed runs.

    The minimum, for methods and limits alike: on a shared 2-core machine the noise only ever
    adds time, so the fastest run is the best estimate of what the work costs.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired(fn, measure_limit, rounds=3):
    """(best time of fn, best limit) over rounds that alternate the two.

    The limit is re-measured between runs of the method, so a quiet or busy spell of the
    machine affects both sides of the ratio alike.
    """
    fn()
    best, limit = float("inf"), float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        limit = min(limit, measure_limit())
    return best, limit


def round_ratios(fn, measure_limit, rounds=5):
    """fn's time / the limit's in each of `rounds` rounds that run the two back to back (after
    one untimed run of fn).

    A slow spell of the machine slows both sides of one round alike, so the median of these
    ratios is steadier than best / best over all rounds (whose two minima can come from
    different spells).
    """
    fn()
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        ratios.append(seconds / measure_limit())
    return ratios


def forward_backward_step(model, jit_compile=None):
    """A compiled forward+backward of a batch: the gradient of the first output's sum."""

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x, training=False)[:, 0])
        return tape.gradient(score, x)

    return step


def forward_backward_timer(model, x, repeats=5, jit_compile=None):
    """A function returning the seconds of one compiled forward+backward of the batch."""
    step = forward_backward_step(model, jit_compile)
    x = tf.constant(x)
    return lambda: timed(lambda: step(x).numpy(), repeats=repeats, warmup=1)


def forward_timer(model, image_shape, batch, repeats=3):
    """A function returning the seconds per image of a compiled forward at this batch size."""
    forward = tf.function(lambda z: model(z, training=False))
    x = tf.constant(np.random.default_rng(0).uniform(size=(batch,) + tuple(image_shape)).astype("float32"))
    return lambda: timed(lambda: forward(x).numpy(), repeats=repeats, warmup=1) / batch


def best_forward_timer(model, image_shape, batch_sizes=(32, 64, 128, 256, 512)):
    """(timer, best batch size): the per-image forward timer at the fastest batch size."""
    timers = {batch: forward_timer(model, image_shape, batch) for batch in batch_sizes}
    best = min(batch_sizes, key=lambda batch: timers[batch]())
    return timers[best], best


def try_peer(name, fn, repeats):
    """Time a peer's call; returns seconds or the reason it failed (peers break on Keras 3)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # peers print progress bars
            return timed(fn, repeats=repeats)
    except Exception as exc:  # noqa: BLE001 - any failure of a peer is reported, not raised
        return f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"


def report(rows):
    """Print `method, seconds, ratio to limit, ratio to each peer` rows as a table."""
    print(f"{'method':24s} {'seconds':>9s} {'/ limit':>8s}  peers (ours / theirs)")
    for method, seconds, limit, peers in rows:
        parts = []
        for peer, value in peers.items():
            parts.append(f"{peer}: {seconds / value:.3f}" if isinstance(value, float) else value)
        print(f"{method:24s} {seconds:9.3f} {seconds / limit:8.3f}  {'; '.join(parts) or '-'}")


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth(fn, interval=0.002):
    """(result, bytes): fn()'s result and the peak resident-memory growth while it ran."""
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return result, max(peak[0], _rss_bytes()) - before


def batch_parser(doc=None, repeats=3):
    """The argument parser every speed benchmark starts from: --batch and --repeats."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def reference_batch(batch):
    """(untrained reference CNN, `batch` shapes images): the model and inputs speed is measured on."""
    import keras_interp as ki

    return ki.reference_cnn(), ki.datasets.shapes(batch, seed=0).images


def xplique_times(model, x, target, methods, repeats=3, layer=None, save=None):
    """{method: seconds or "failed: ..."} of Xplique 2.0.2 on this model and batch, measured by
    benchmarks/xplique_peer.py in Xplique's own environment ($XPLIQUE_PYTHON, default
    /opt/xplique-env/bin/python; see benchmarks/install_xplique.sh). {} when it is not installed."""
    import json
    import subprocess
    import tempfile

    python = os.environ.get("XPLIQUE_PYTHON", "/opt/xplique-env/bin/python")
    if not os.path.exists(python):
        return {}
    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "model.keras"))
        np.save(os.path.join(folder, "x.npy"), np.asarray(x, np.float32))
        command = [python, os.path.join(os.path.dirname(__file__), "xplique_peer.py"), os.path.join(folder, "model.keras"),
                   os.path.join(folder, "x.npy"), str(target), *methods, "--repeats", str(repeats)]
        command += ["--layer", layer] if layer else []
        command += ["--save", save] if save else []
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return {m: f"xplique failed: {done.stderr.strip().splitlines()[-1][:100]}" for m in methods}
    return {m: (v if isinstance(v, float) else f"xplique {v}") for m, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
