"""Quickstart: train the reference CNN on the built-in shapes and explain held-out images.

    python examples/quickstart.py [--epochs 8] [--out out/quickstart]

Writes one sheet (input | saliency | SmoothGrad | Integrated Gradients | occlusion) as a PNG,
prints its path, and prints how often each method points at the object (pointing game) and
how much of its mass lies on it (energy), on 64 held-out images.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=6, help="images shown on the sheet")
    parser.add_argument("--out", default=os.path.join("out", "quickstart"))
    args = parser.parse_args()

    print(f"Training the reference CNN on {args.train_size} built-in shapes for {args.epochs} epochs...")
    model, _ = ki.models.train_on_shapes(train_size=args.train_size, epochs=args.epochs)

    held_out = ki.datasets.shapes(64, seed=1234)
    predicted = model.predict(held_out.images, verbose=0).argmax(axis=1)
    print(f"held-out accuracy: {np.mean(predicted == held_out.labels):.3f}")

    explainers = {
        "saliency": ki.Saliency(model),
        "smoothgrad": ki.SmoothGrad(model, samples=25, noise=0.15),
        "integrated gradients": ki.IntegratedGradients(model, steps=64),
        "occlusion": ki.Occlusion(model, patch_size=8, stride=4),
    }
    maps = {}
    print(f"{'method':22s} {'pointing game':>14s} {'energy':>8s} {'seconds':>8s}")
    for name, explainer in explainers.items():
        start = time.perf_counter()
        maps[name] = explainer.explain(held_out.images)
        seconds = time.perf_counter() - start
        pointing = ki.metrics.pointing_game(maps[name], held_out.masks)
        energy = ki.metrics.energy_pointing_game(maps[name], held_out.masks)
        print(f"{name:22s} {pointing:14.3f} {energy:8.3f} {seconds:8.2f}")
    fraction = held_out.masks.mean()
    print(f"(a uniform-random map points at the object about {fraction:.3f} of the time: the mean mask fraction)")

    rows, labels = [], []
    for i in range(args.rows):
        image = held_out.images[i]
        rows.append([image] + [ki.images.overlay(image, maps[name][i], alpha=0.5) for name in explainers])
        labels.append(f"{held_out.class_names[held_out.labels[i]]}->{held_out.class_names[predicted[i]]}")
    sheet = ki.images.grid(rows, col_labels=["input"] + list(explainers), row_labels=labels, cell_size=(128, 128))
    path = ki.images.save(os.path.join(args.out, "explanations.png"), sheet)
    print(f"sheet written to {path}")


if __name__ == "__main__":
    main()
