"""Forward-only methods and their forward-pass size: the automatic choice against every fixed size.

    python benchmarks/bench_chunks.py [--batch 32] [--rounds 5]

Occlusion (patch 8, stride 4 and 8) and Score-CAM on the reference CNN (64x64, batch 32) spend
their time in forward passes of perturbed copies. For each, prints the ratio of its time to the
limit (a compiled forward of the same number of images at the fastest batch size, run right
after it in each round, see common.round_ratios): the median over the rounds and their range,
for

- "auto": the default, batch_size=256 as the upper bound, the pass size measured on the first
  call for the model and shape (Explainer._chunk_images; the choice and its per-image timings are
  printed);
- each fixed pass size 32 ... 512 (batch_size=n with the measurement turned off).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_interp as ki  # noqa: E402
from common import best_forward_timer, reference_batch, round_ratios  # noqa: E402

SIZES = (32, 64, 128, 256, 512)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model, x = reference_batch(args.batch)
    per_image, best = best_forward_timer(model, x.shape[1:])
    print(f"limit: compiled forward {per_image() * 1e6:.0f} us/image at batch {best} (re-measured in each round)")
    channels = model.get_layer(ki.ScoreCAM(model).layer).output.shape[-1]
    methods = {
        "occlusion s4": (lambda **kw: ki.Occlusion(model, patch_size=8, stride=4, **kw),
                         len(ki.Occlusion(model, patch_size=8, stride=4).windows(64, 64)[0])),
        "occlusion s8": (lambda **kw: ki.Occlusion(model, patch_size=8, stride=8, **kw), 64),
        "scorecam": (lambda **kw: ki.ScoreCAM(model, **kw), channels),
    }
    print(f"{'method':14s} {'pass size':>10s} {'/ limit':>8s} {'range':>13s}")

    def line(name, size, ratios, extra=""):
        spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
        print(f"{name:14s} {size:>10s} {statistics.median(ratios):8.3f} {spread:>13s}{extra}", flush=True)

    for name, (make, perturbations) in methods.items():
        def limit():
            return perturbations * args.batch * per_image()

        explainer = make()
        ratios = round_ratios(lambda: explainer.explain(x, target=0), limit, rounds=args.rounds)
        (choice,) = explainer.chunk_choices.values() or [{"images": explainer.batch_size, "seconds_per_image": {}}]
        timings = ", ".join(f"{n}: {t * 1e6:.0f}" for n, t in choice["seconds_per_image"].items())
        line(name, f"auto {choice['images']}", ratios, f"   (us/image measured: {timings})" if timings else "")
        for size in SIZES:
            fixed = make(batch_size=size)
            fixed._MEASURE_FROM_PASSES = float("inf")  # this size, as it is
            line(name, str(size), round_ratios(lambda: fixed.explain(x, target=0), limit, rounds=args.rounds))


if __name__ == "__main__":
    main()
