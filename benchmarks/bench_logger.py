"""ExplanationLogger's cost: its share of training time with its default budget and with freq=1;
epoch time with and without it, and disk written per epoch. `--part all` (default) runs both.

    python benchmarks/bench_logger.py --part epochs [--epochs 4] [--train-size 3000]

The demo configuration: reference CNN, built-in shapes, 8 logged images, saliency + CAM +
SmoothGrad, freq=1; then the same plus "class_model" (4 class-model images, 100 gradient-ascent
steps each epoch). All runs train the same model from the same seed in the same process; the
figures are ratios to the runs without the logger (first epochs included: they pay for tracing).
Last, `logger.log` is timed directly on a trained model, with and without faithfulness=True
(deletion and insertion AUC of every method, 16 steps).

    python benchmarks/bench_logger.py --part budget [--short-size 256 --short-epochs 10
                                                      --long-size 1536 --long-epochs 5]

The logger's share of training time, as the logger measures it (its own seconds / fit's wall
time less them), with the default freq=None (budget=0.1) and with freq=1, for short and long
epochs, with the default methods (saliency, CAM, class models) and with all twelve methods and
faithfulness=True; and which epochs were logged. s/log is the logger's time over its logs,
the first (with tracing) included.
"""

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_interp as ki  # noqa: E402
from common import timed  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def disk_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def budget(args):
    """The logger's share of training time: default (budget) against freq=1, short and long epochs."""
    watched = ki.datasets.shapes(8, seed=777)
    every = tuple(ki.callbacks.METHODS) + ("class_model",)
    configurations = (("default methods", ki.callbacks.DEFAULT_METHODS, False),
                      (f"all {len(every)} + faithfulness", every, True))
    lengths = (("short", args.short_size, args.short_epochs), ("long", args.long_size, args.long_epochs))
    print(f"{'epochs':>6s} {'methods':>24s} {'freq':>6s} {'train s/ep':>10s} {'logger s':>9s} {'share':>6s} "
          f"{'s/log':>6s}  logged epochs")
    for length, size, epochs in lengths:
        for name, methods, faithfulness in configurations:
            for freq in (None, 1):
                logger = ki.ExplanationLogger(watched.images, tempfile.mkdtemp(), methods=methods, freq=freq,
                                              labels=watched.labels, masks=watched.masks,
                                              class_names=watched.class_names, faithfulness=faithfulness)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ki.models.train_on_shapes(train_size=size, epochs=epochs, callbacks=[logger], verbose=0)
                said = [str(w.message) for w in caught if "budget=" in str(w.message)]
                logged = logger.logged_epochs
                print(f"{length:>6s} {name:>24s} {str(freq):>6s} {logger.training_time / epochs:10.2f} "
                      f"{logger.logging_time:9.1f} {logger.logging_time / logger.training_time:6.0%} "
                      f"{logger.logging_time / len(logged):6.2f}  {logged} of {epochs}"
                      + (" (warned once)" if len(said) == 1 else f" ({len(said)} budget warnings)" if said else ""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("all", "epochs", "budget"), default="all")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--short-size", type=int, default=256, help="training images of the short epochs")
    parser.add_argument("--short-epochs", type=int, default=10)
    parser.add_argument("--long-size", type=int, default=1536, help="training images of the long epochs")
    parser.add_argument("--long-epochs", type=int, default=5)
    args = parser.parse_args()
    if args.part in ("all", "budget"):
        budget(args)
    if args.part in ("all", "epochs"):
        epochs(args)


def epochs(args):
    """Epoch time with and without the logger (freq=1), disk written, the logger's cost timed directly."""
    watched = ki.datasets.shapes(8, seed=777)
    results = {}
    demo = ("saliency", "cam", "smoothgrad")
    runs = {"without": None, "with": demo, "with class_model": demo + ("class_model",), "without again": None}
    for label, methods in runs.items():
        timer = EpochTimer()
        callbacks = [timer]
        folder = tempfile.mkdtemp()
        if methods:
            # The timer comes last, so its epoch time includes the logger's work.
            callbacks = [ki.ExplanationLogger(watched.images, folder, methods=methods, labels=watched.labels,
                                              masks=watched.masks, class_names=watched.class_names, freq=1), timer]
        ki.models.train_on_shapes(train_size=args.train_size, epochs=args.epochs, callbacks=callbacks, verbose=0)
        results[label] = (timer.times, disk_bytes(folder))
    base = [min(a, b) for a, b in zip(results["without"][0], results["without again"][0])]
    for label in ("with", "with class_model"):
        logged, disk = results[label]
        print(f"\n{label} ({', '.join(runs[label])}):")
        print(f"{'epoch':>5s} {'without s':>10s} {'with s':>8s} {'ratio':>6s}")
        for epoch, (a, b) in enumerate(zip(base, logged)):
            print(f"{epoch:5d} {a:10.2f} {b:8.2f} {b / a:6.3f}")
        print(f"total: with / without = {sum(logged) / sum(base):.3f}; after the first epoch: "
              f"{sum(logged[1:]) / sum(base[1:]):.3f}")
        print(f"disk written by the logger: {disk / args.epochs / 1024:.1f} KiB per epoch")
    # Epoch-time ratios on a shared 2-core machine carry seconds of noise; the class models' own
    # cost, timed directly on the trained model (best of 3 after the first, traced, call):
    model, _ = ki.models.train_on_shapes(train_size=256, epochs=1, verbose=0)
    from keras_interp.logger.methods import ClassModels

    print()
    for recipe in ("fourier", "yosinski"):  # the default, and the pixel recipe for comparison
        generator = ki.ClassModelVisualization(model, value_range=watched.images, recipe=recipe)
        pictures = ClassModels(model, watched.images, class_names=watched.class_names, generator=generator)
        seconds = timed(lambda: pictures.pictures(0), repeats=3, warmup=1)
        print(f"class_model alone, recipe {recipe!r}: {seconds:.2f} s per logged epoch ({len(pictures.classes)} "
              f"classes x {pictures.steps} steps); mean epoch without the logger {sum(base) / len(base):.2f} s")
    # The logger's own work per logged epoch, with and without the faithfulness scalars.
    for faithfulness in (False, True):
        logger = ki.ExplanationLogger(watched.images, tempfile.mkdtemp(), methods=demo, labels=watched.labels,
                                      masks=watched.masks, faithfulness=faithfulness)
        logger.set_model(model)
        logger.on_train_begin()
        steps = iter(range(100))
        seconds = timed(lambda: logger.log(next(steps)), repeats=3, warmup=1)
        print(f"logger.log ({', '.join(demo)}, faithfulness={faithfulness}): {seconds:.2f} s per logged epoch")


if __name__ == "__main__":
    main()
