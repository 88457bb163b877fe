"""Class activation maps: train the reference GAP model on the shapes and compare CAM methods.

    python examples/class_activation_maps.py [--epochs 8] [--out out/cam]

Writes a sheet of input | CAM | Grad-CAM | Grad-CAM++ | Score-CAM for a few held-out images and
prints its path, with each method's pointing game on 64 held-out images.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--out", default=os.path.join("out", "cam"))
    args = parser.parse_args()

    model, _ = ki.models.train_on_shapes(epochs=args.epochs)
    held_out = ki.datasets.shapes(64, seed=1234)
    predicted = model.predict(held_out.images, verbose=0).argmax(axis=1)

    explainers = {
        "CAM": ki.CAM(model),
        "Grad-CAM": ki.GradCAM(model),
        "Grad-CAM++": ki.GradCAMPlusPlus(model),
        "Score-CAM": ki.ScoreCAM(model),
    }
    maps = {name: explainer.explain(held_out.images) for name, explainer in explainers.items()}
    print(f"feature layer: {explainers['Grad-CAM'].layer!r}")
    for name, m in maps.items():
        print(f"{name:11s} pointing game {ki.metrics.pointing_game(m, held_out.masks):.3f}")

    rows, labels = [], []
    for i in range(args.rows):
        image = held_out.images[i]
        rows.append([image] + [ki.images.overlay(image, maps[name][i]) for name in explainers])
        labels.append(f"{held_out.class_names[held_out.labels[i]]}->{held_out.class_names[predicted[i]]}")
    sheet = ki.images.grid(rows, col_labels=["input"] + list(explainers), row_labels=labels, cell_size=(128, 128))
    print(f"sheet written to {ki.images.save(os.path.join(args.out, 'cam.png'), sheet)}")
    print(f"held-out accuracy: {np.mean(predicted == held_out.labels):.3f}")


if __name__ == "__main__":
    main()
