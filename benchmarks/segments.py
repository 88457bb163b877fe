"""Which segmentation LIME and Kernel SHAP should use by default: OpenCV watershed superpixels
or a grid, measured on held-out built-in shapes with their object masks.

    python benchmarks/segments.py [--images 32] [--samples 500] [--model saved.keras]

For each segmentation (superpixels of about 16, 32 and 64 regions; grids of 4, 6 and 8 cells a
side) and each method, prints the energy pointing game and the pointing game against the object
masks (higher is better) and the deletion and insertion AUCs (blurred substrate, 32 steps; lower
and higher is better), means over the images, with the seconds per image.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import keras_interp as ki  # noqa: E402
from keras_interp.explainers.surrogate import superpixels  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--model", help="a saved model trained on the shapes (default: train one, seed 0)")
    args = parser.parse_args()
    if args.model:
        model = ki.load_model(args.model)
    else:
        model, _ = ki.models.train_on_shapes(seed=0, verbose=0)
    data = ki.datasets.shapes(args.images, seed=1234)
    segmentations = {f"superpixels {n}": (lambda image, n=n: superpixels(image, n)) for n in (16, 32, 64)}
    segmentations.update({f"grid {n}x{n}": n for n in (4, 6, 8)})
    print(f"{args.images} held-out shapes, {args.samples} samples; energy and pointing: higher is better; "
          "deletion: lower; insertion: higher")
    print(f"{'method':12s} {'segments':16s} {'energy':>7s} {'pointing':>9s} {'deletion':>9s} {'insertion':>10s} "
          f"{'s/image':>8s}")
    for method in (ki.LIME, ki.KernelSHAP):
        for name, segments in segmentations.items():
            explainer = method(model, segments=segments, samples=args.samples)
            start = time.perf_counter()
            maps = explainer.explain(data.images, target=data.labels)
            seconds = (time.perf_counter() - start) / args.images
            row = (ki.metrics.energy_pointing_game(maps, data.masks), ki.metrics.pointing_game(maps, data.masks),
                   ki.metrics.deletion_auc(model, data.images, maps, target=data.labels).mean(),
                   ki.metrics.insertion_auc(model, data.images, maps, target=data.labels).mean())
            print(f"{method.__name__:12s} {name:16s} {row[0]:7.3f} {row[1]:9.3f} {row[2]:9.3f} {row[3]:10.3f} "
                  f"{seconds:8.3f}")


if __name__ == "__main__":
    main()
