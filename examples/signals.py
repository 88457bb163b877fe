"""Explaining a 1-D model: which instants of a signal make a Conv1D network detect a pulse.

    python examples/signals.py [--epochs 6] [--out docs/signals.png]

Builds 3,000 two-channel signals of 256 samples: channel 0 is noise with, depending on the class,
nothing (0), a rectangular pulse (1) or a dip (2) of 12 samples at a random place; channel 1 is
noise only, a distractor. Trains a small Conv1D -> GAP -> Dense classifier, then explains
held-out pulses and dips with every attribution method and the CAM family. It prints, per method,
how often the map's maximum lies on the event (within 4 samples: the 1-D pointing game) and
saves one band picture per signal and method: the two channels as curves, the map as a colour
band under them.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402

LENGTH, WIDTH = 256, 12
CLASS_NAMES = ["none", "pulse", "dip"]


def signals(n, seed):
    """(x (n, 256, 2), labels (n,), event start (n,)) with the event's start, -1 for class 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(n, LENGTH, 2)).astype("float32")
    labels = rng.integers(0, 3, size=n)
    starts = rng.integers(0, LENGTH - WIDTH, size=n)
    for i in range(n):
        if labels[i]:
            x[i, starts[i]:starts[i] + WIDTH, 0] += 1.5 if labels[i] == 1 else -1.5
    return x, labels, np.where(labels > 0, starts, -1)


def conv1d_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((LENGTH, 2))
    h = inputs
    for filters in (16, 32):
        h = keras.layers.Conv1D(filters, 7, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling1D(2)(h)
    h = keras.layers.Conv1D(32, 5, padding="same", activation="relu", name="features")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h), name="pulse_detector")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=os.path.join("docs", "signals.png"))
    args = parser.parse_args()

    x, y, _ = signals(3000, seed=0)
    model = conv1d_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)
    test_x, test_y, starts = signals(300, seed=1)
    print(f"held-out accuracy {np.mean(model.predict(test_x, verbose=0).argmax(1) == test_y):.3f}")

    events = test_y > 0
    explainers = {
        "saliency": ki.Saliency(model),
        "smoothgrad": ki.SmoothGrad(model, samples=25, noise=0.15),
        "IG": ki.IntegratedGradients(model),
        "occlusion": ki.Occlusion(model, patch_size=8, stride=4),
        "CAM": ki.CAM(model),
        "Grad-CAM": ki.GradCAM(model),
        "Score-CAM": ki.ScoreCAM(model),
    }
    rows, shown = [], np.flatnonzero(events)[:4]
    print("1-D pointing game (map maximum within 4 samples of the event), true class explained:")
    for name, explainer in explainers.items():
        maps = explainer.explain(test_x[events], target=test_y[events])
        peaks = maps.argmax(axis=1)
        hits = (peaks >= starts[events] - 4) & (peaks < starts[events] + WIDTH + 4)
        print(f"  {name:22s} {hits.mean():.3f}")
        picked = maps[np.searchsorted(np.flatnonzero(events), shown)]
        rows.append([ki.images.band(test_x[i], m, width=384) for i, m in zip(shown, picked)])
    sheet = ki.images.grid(rows, row_labels=list(explainers),
                           col_labels=[f"{CLASS_NAMES[test_y[i]]} at {starts[i]}" for i in shown])
    ki.images.save(args.out, sheet)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
