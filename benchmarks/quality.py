"""The quality report: how well each explainer localizes, how faithful it is, and whether it
depends on the model at all, on the reference CNN trained on the built-in shapes.

    python benchmarks/quality.py [--images 64] [--randomization-images 16] [--model saved.keras]
    python benchmarks/quality.py --architecture vit [--docs]

Trains the reference CNN (keras_interp.models.train_on_shapes, seed 0: 3000 images, 8 epochs)
unless --model gives a saved one (--save keeps the trained one), explains held-out shapes for
their true class with every method the logger knows (keras_interp.callbacks.METHODS, with its
settings) plus Score-CAM's three readings over all channels, and prints per method:

- pointing game and energy against the object masks (higher is better), the pointing game
  also within 4 pixels of the mask (Zhang et al.'s 15 px on 224-pixel images);
- deletion AUC (lower is better) and insertion AUC (higher is better), 32 steps, blurred
  substrate (--substrate zero or mean for the others), the class's softmax probability;
- Spearman similarity of the maps after every layer is randomized (Adebayo et al.'s cascade,
  on the first --randomization-images images; lower is better: the maps depend on the model);
- Spearman similarity of the maps for another class (the next one) to the true class's: 1.0
  for a class-agnostic method, lower for one that depends on the class;

next to a uniform random map and two oracles built from the object mask (the mask itself, and
the mask smoothed over about one feature cell), ends with the report's expectations, each
marked PASS or FAIL, and shows per true class what the blurred substrate does to the curves.

With --architecture vit the model is ki.models.reference_vit with its convolutional stem (a
class-token ViT, 4 blocks; a plain ViT trained from scratch on 3000 shapes stays at chance),
trained for 20 epochs with AdamW (warm-up then cosine decay), and the methods are those that
apply to a ViT: Grad-CAM, Grad-CAM++ and Score-CAM on the patch tokens, both attention
rollouts, saliency, Integrated Gradients and occlusion. --docs also writes docs/vit.png, the
methods on 4 held-out shapes.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402
from keras_interp.callbacks import METHODS  # noqa: E402
from keras_interp.explainers.cam import WEIGHTINGS  # noqa: E402

CAM_FAMILY = ("cam", "gradcam", "gradcam++", "layercam", "scorecam", "scorecam:increase", "scorecam:softmax",
              "scorecam:probability")


VIT_METHODS = ("gradcam", "gradcam++", "scorecam", "attention_rollout", "gradient_rollout", "saliency",
               "integrated_gradients", "occlusion")


def factories(seed, architecture="cnn"):
    """Method name -> model -> explainer: the logger's methods, then Score-CAM's readings (for a
    CNN); the methods that apply to a ViT (for a ViT)."""
    # Expected Gradients' reference examples: other shapes than the ones explained.
    baselines = ki.datasets.shapes(64, seed=4321).images
    if architecture == "vit":
        return {name: (lambda model, make=METHODS[name]: make(model, seed, baselines=baselines))
                for name in VIT_METHODS}
    made = {name: (lambda model, make=make: make(model, seed, baselines=baselines)) for name, make in METHODS.items()
            if not ki.registry.METHODS[name].attention}
    for weighting in WEIGHTINGS:
        made[f"scorecam:{weighting}"] = lambda model, w=weighting: ki.ScoreCAM(model, weighting=w)
    return made


def vit_sheet(model, data, made, path, shown=4):
    """The methods' maps on the first `shown` held-out images, one row each."""
    rows, labels = data.images[:shown], data.labels[:shown]
    cells = [[image] for image in rows]
    for name, make in made.items():
        for row, image, map_ in zip(cells, rows, make(model).explain(rows, target=labels)):
            row.append(ki.images.overlay(image, map_))
    p = model.predict(rows, verbose=0)
    row_labels = [f"true {data.class_names[t]}\npredicted\n{data.class_names[q.argmax()]} {q.max():.0%}"
                  for t, q in zip(labels, p)]
    titles = ["input"] + [ki.registry.METHODS[name].title for name in made]
    legend = ki.images.colorbar(400, "jet", "low", "high: each map scaled to its own min..max")
    sheet = ki.images.grid(cells, col_labels=titles, row_labels=row_labels, cell_size=(96, 96), legend=legend,
                           row_label_width=110)
    print(f"wrote {ki.images.save(path, sheet)}")


TOLERANCE = 4  # pixels: Zhang et al.'s 15 px at 224 px, scaled to 64 px images


def score(model, data, maps, steps, substrate):
    target, kw = data.labels, dict(steps=steps, substrate=substrate)
    return {
        "pointing": ki.metrics.pointing_game(maps, data.masks),
        "tolerant": ki.metrics.pointing_game(maps, data.masks, tolerance=TOLERANCE),
        "energy": ki.metrics.energy_pointing_game(maps, data.masks),
        "deletion": ki.metrics.deletion_auc(model, data.images, maps, target=target, **kw),
        "insertion": ki.metrics.insertion_auc(model, data.images, maps, target=target, **kw),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="held-out images scored")
    parser.add_argument("--randomization-images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32, help="deletion / insertion curve steps")
    parser.add_argument("--substrate", default="blur", choices=("blur", "zero", "mean"),
                        help="what deleted pixels become and insertion starts from")
    parser.add_argument("--model", help="a saved .keras model to score instead of training one")
    parser.add_argument("--save", help="save the trained model here")
    parser.add_argument("--methods", nargs="*", help="only these methods (names as printed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--architecture", default="cnn", choices=("cnn", "vit"))
    parser.add_argument("--docs", action="store_true", help="with --architecture vit: write docs/vit.png")
    args = parser.parse_args()

    if args.model:
        model = ki.load_model(args.model)
    else:
        start = time.perf_counter()
        if args.architecture == "vit":
            model, _ = ki.models.train_vit_on_shapes(seed=args.seed, verbose=0)
        else:
            model, _ = ki.models.train_on_shapes(seed=args.seed, verbose=0)
        print(f"trained the reference {args.architecture.upper()} in {time.perf_counter() - start:.0f} s")
        if args.save:
            model.save(args.save)
    data = ki.datasets.shapes(args.images, seed=1234)
    predicted = model.predict(data.images, verbose=0).argmax(axis=1)
    print(f"held-out accuracy: {np.mean(predicted == data.labels):.3f} on {args.images} images; maps explain the "
          "true class")
    few = slice(0, args.randomization_images)

    rows = {}
    rng = np.random.default_rng(args.seed)
    rows["random map"] = score(model, data, rng.uniform(size=data.masks.shape), args.steps, args.substrate)
    # Two oracles: the mask itself (object pixels first, random order within and outside), and
    # the mask smoothed over about one feature cell, which ranks the object's surroundings next.
    jitter = 1e-3 * rng.uniform(size=data.masks.shape)
    rows["oracle: mask"] = score(model, data, data.masks + jitter, args.steps, args.substrate)
    smooth = np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), 4.0) for m in data.masks])
    rows["oracle: smoothed mask"] = score(model, data, data.masks + smooth + jitter, args.steps, args.substrate)
    baselines = list(rows)
    made = factories(args.seed, args.architecture)
    if args.docs and args.architecture == "vit":
        vit_sheet(model, data, {k: v for k, v in made.items() if k not in ("gradcam++", "integrated_gradients")},
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "vit.png"))
    for name, make in made.items():
        if args.methods and name not in args.methods:
            continue
        start = time.perf_counter()
        explainer = make(model)
        maps = explainer.explain(data.images, target=data.labels)
        row = score(model, data, maps, args.steps, args.substrate)
        # Class sensitivity: the map for another class against the true class's (1.0: the same
        # map whatever the class, as for a class-agnostic method such as attention rollout).
        other = explainer.explain(data.images, target=(data.labels + 1) % len(data.class_names))
        row["other class"] = float(np.mean(ki.metrics.spearman(maps, other)))
        similarity = ki.metrics.randomization_check(make, model, data.images[few], target=data.labels[few],
                                                    last_only=True)
        row["randomized"] = next(iter(similarity.values()))
        rows[name] = row
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)

    print()
    print(f"{'method':22s} {'pointing':>9s} {f'+-{TOLERANCE}px':>7s} {'energy':>7s} {'deletion':>9s} {'insertion':>10s} "
          f"{'randomized':>11s} {'other class':>12s}")
    print(f"{'':22s} {'(higher)':>9s} {'':>7s} {'(higher)':>7s} {'(lower)':>9s} {'(higher)':>10s} {'(lower)':>11s} "
          f"{'(spearman)':>12s}")
    for name, row in rows.items():
        randomized = f"{row['randomized']:11.3f}" if "randomized" in row else f"{'n/a':>11s}"
        other = f"{row['other class']:12.3f}" if "other class" in row else f"{'n/a':>12s}"
        print(f"{name:22s} {row['pointing']:9.3f} {row['tolerant']:7.3f} {row['energy']:7.3f} "
              f"{row['deletion'].mean():9.3f} {row['insertion'].mean():10.3f} {randomized} {other}")

    methods = {k: v for k, v in rows.items() if k not in baselines}
    mean = {k: {m: float(np.mean(v[m])) for m in ("deletion", "insertion")} for k, v in rows.items()}
    best_deletion = min(mean[k]["deletion"] for k in baselines[1:])
    best_insertion = max(mean[k]["insertion"] for k in baselines[1:])
    random = mean["random map"]
    checks = [
        ("an oracle beats every method on deletion", all(best_deletion < mean[k]["deletion"] for k in methods)),
        ("an oracle beats every method on insertion", all(best_insertion > mean[k]["insertion"] for k in methods)),
        ("the random map is worst on deletion",
         all(random["deletion"] > mean[k]["deletion"] for k in methods)),
        ("the random map is worst on insertion",
         all(random["insertion"] < mean[k]["insertion"] for k in methods)),
        (f"CAM-family pointing game >= 0.9 (within {TOLERANCE} px, Zhang et al.'s tolerance)",
         all(r["tolerant"] >= 0.9 for k, r in methods.items() if k in CAM_FAMILY) if args.architecture == "cnn"
         else True),
        ("saliency and Grad-CAM similarity after full randomization < 0.3",
         all(methods[k]["randomized"] < 0.3 for k in ("saliency", "gradcam") if k in methods)),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    for name in methods:
        worse = [m for m in ("deletion", "insertion") if (mean[name][m] >= random[m]) == (m == "deletion")]
        if worse:
            print(f"      {name} is no better than the random map on {' and '.join(worse)}")

    # What the substrate itself is: deletion ends, and insertion starts, at the blurred image.
    substrates = ki.metrics.faithfulness.substrate_images(data.images, args.substrate)
    p = model.predict(substrates, verbose=0)
    called = np.bincount(p.argmax(axis=1), minlength=p.shape[1])
    print()
    print(f"the {args.substrate!r} substrate images are classified as: " + ", ".join(
        f"{data.class_names[c]} {n}" for c, n in enumerate(called) if n))
    print(f"{'per true class':22s} " + " ".join(f"{n:>16s}" for n in data.class_names))
    for name in ("random map", "oracle: mask", "oracle: smoothed mask", "gradcam", "saliency"):
        if name in rows:
            cells = [f"{rows[name]['deletion'][data.labels == c].mean():.2f} / "
                     f"{rows[name]['insertion'][data.labels == c].mean():.2f}" for c in range(len(data.class_names))]
            print(f"{name + ' del / ins':22s} " + " ".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
