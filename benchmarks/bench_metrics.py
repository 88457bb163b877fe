"""Speed and memory of the evaluation measures: each against its physical limit, the compiled
forward passes of the copies it scores, measured in the same run.

    python benchmarks/bench_metrics.py [--repeats 2] [--models reference,resnet50]

- ROAD (`ki.metrics.road_curve`, 9 fractions, one order): limit = the forward passes of the
  B x 9 imputed images at the best batch size; the rest is the noisy linear imputation (one
  sparse solve per image and fraction, conjugate gradients preconditioned by a multigrid V-cycle). Goal: <= 2x.
- MuFidelity (128 subsets) and infidelity (64 draws): limit = the forward passes of their copies.
- Memory: ROAD's peak resident growth at 4 and at 16 images (flat: the copies stream in chunks).

Models: the reference CNN at 64 px (a small model: its forward pass costs little next to an
imputation) and ResNet50 at 224 px with random weights (an ImageNet-sized model).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common import batch_parser, best_forward_timer, paired, peak_rss_growth  # noqa: E402

import keras_interp as ki  # noqa: E402


def models(names):
    if "reference" in names:
        yield "reference CNN 64 px", ki.models.reference_cnn(), 64, 8
    if "resnet50" in names:
        yield "ResNet50 224 px", keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)), 224, 4


def main():
    parser = batch_parser(__doc__, repeats=2)
    parser.add_argument("--models", default="reference,resnet50")
    parser.add_argument("--measures", default="road,mu_fidelity,infidelity,memory")
    args = parser.parse_args()
    for name, model, size, batch in models(args.models.split(",")):
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(batch, size, size, 3)).astype("float32")
        maps = ki.GradCAM(model).explain(x)
        sizes = (32, 64, 128, 256) if size <= 64 else (16, 32, 64)
        per_image, best = best_forward_timer(model, (size, size, 3), batch_sizes=sizes)
        print(f"{name}: {batch} images; best forward batch {best}")
        rows = [("road", "ROAD, 9 fractions", lambda: ki.metrics.road_curve(model, x, maps), 9),
                ("mu_fidelity", "MuFidelity, 128 subsets", lambda: ki.metrics.mu_fidelity(model, x, maps), 129),
                ("infidelity", "infidelity, 64 draws", lambda: ki.metrics.infidelity(model, x, maps), 65)]
        chosen = args.measures.split(",")
        for key, label, fn, copies in rows:
            if key not in chosen:
                continue
            seconds, limit = paired(fn, lambda: per_image() * batch * copies, rounds=args.repeats)
            print(f"  {label:26s} {seconds:8.3f} s   limit {limit:8.3f} s   ratio {seconds / limit:6.2f}")
        for count in (batch // 2, batch * 2) if "memory" in chosen else ():
            images = rng.uniform(size=(count, size, size, 3)).astype("float32")
            few = ki.GradCAM(model).explain(images)
            ki.metrics.road_curve(model, images, few)  # traced before measuring
            _, grown = peak_rss_growth(lambda: ki.metrics.road_curve(model, images, few))
            print(f"  ROAD peak memory growth at {count:3d} images: {grown / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
