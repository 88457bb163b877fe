"""What the network has learned: class models, channel images and a Deep Dream.

    python examples/what_the_network_learned.py [--epochs 8] [--steps 200] [--out out/visualize]

Trains the reference CNN on the built-in shapes, then writes three sheets:
- class_models.png: one image per class maximizing its logit (Lucid's recipe, the default),
  next to the real training image that scores highest on that class, with both scores;
- features.png: images maximizing a few channels of each stage (the channel's spatial mean);
- deep_dream.png: scikit-image's photo of Chelsea the cat, dreamed on two layers.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=os.path.join("out", "visualize"))
    args = parser.parse_args()

    model, _ = ki.models.train_on_shapes(epochs=args.epochs)
    data = ki.datasets.shapes(1000, seed=0)  # the first 1000 training images
    names = data.class_names

    generator = ki.ClassModelVisualization(model, value_range=data.images)
    class_models = generator.visualize(steps=args.steps, seed=0, verbose=True)
    scorer = ki.Scorer(model)
    ours = np.diag(scorer(class_models).numpy())
    real = scorer(data.images).numpy()
    best = real.argmax(axis=0)
    rows = []
    for c, name in enumerate(names):
        rows.append([class_models[c], data.images[best[c]]])
        print(f"{name:9s} class model logit {ours[c]:7.2f}; best of {len(data.images)} training images "
              f"{real[best[c], c]:6.2f}; the start scored {generator.history[0, c]:6.2f}")
    sheet = ki.images.grid(rows, col_labels=["class model", "best real image"], row_labels=list(names),
                           cell_size=(128, 128))
    print(f"class models written to {ki.images.save(os.path.join(args.out, 'class_models.png'), sheet)}")

    layers, channels = ["relu1_2", "relu2_2", "relu3_2"], 4
    rows = []
    for layer in layers:
        features = ki.FeatureVisualization(model, layer, value_range=data.images)
        rows.append(list(features.visualize(list(range(channels)), steps=args.steps, seed=0)))
        start, end = features.history[0], features.history.max(axis=0)
        print(f"{layer}: channels 0-{channels - 1}, objective at the start {np.round(start, 2).tolist()}, highest "
              f"during the run {np.round(end, 2).tolist()}")
    sheet = ki.images.grid(rows, col_labels=[f"channel {k}" for k in range(channels)], row_labels=layers,
                           cell_size=(128, 128))
    print(f"channel images written to {ki.images.save(os.path.join(args.out, 'features.png'), sheet)}")

    photos, _ = ki.datasets.photos(names=("chelsea",))
    photo = photos[0]
    dreamer = ki.DeepDream(model, layers=["relu2_2", "relu3_2"])
    dream = dreamer.dream(photo, octaves=4, octave_scale=1.4, steps=20, step_size=0.01, seed=0)
    before = [h[0].mean() for h in dreamer.history]
    after = [h[-1].mean() for h in dreamer.history]
    print(f"Deep Dream on a {photo.shape[1]}x{photo.shape[0]} photo (the model takes 64x64): objective per "
          f"octave {np.round(before, 3).tolist()} -> {np.round(after, 3).tolist()}")
    sheet = ki.images.grid([[photo, dream]], col_labels=["photo", "Deep Dream (relu2_2 + relu3_2)"],
                           cell_size=photo.shape[:2])
    print(f"Deep Dream written to {ki.images.save(os.path.join(args.out, 'deep_dream.png'), sheet)}")


if __name__ == "__main__":
    main()
