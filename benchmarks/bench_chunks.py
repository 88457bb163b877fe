"""Forward-only methods and their forward-pass size: the automatic choice against every fixed size.

    python benchmarks/bench_chunks.py [--batch 32] [--rounds 3]

Occlusion (patch 8, stride 4 and 8) and Score-CAM on the reference CNN (64x64, batch 32) spend
their time in forward passes of perturbed copies. For each, prints the seconds and the ratio to
the limit (a compiled forward of the same number of images at the fastest batch size, measured
in alternation with the method, see common.paired) of:

- "auto": the default, batch_size=256 as the upper bound, the pass size measured on the first
  call for the model and shape (Explainer._chunk_images; the choice and its per-image timings are
  printed);
- each fixed pass size 32 ... 512 (batch_size=n with the measurement turned off).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_interp as ki  # noqa: E402
from common import best_forward_timer, paired, reference_batch  # noqa: E402

SIZES = (32, 64, 128, 256, 512)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model, x = reference_batch(args.batch)
    per_image, best = best_forward_timer(model, x.shape[1:])
    print(f"limit: compiled forward {per_image() * 1e6:.0f} us/image at batch {best} (re-measured beside each run)")
    channels = model.get_layer(ki.ScoreCAM(model).layer).output.shape[-1]
    methods = {
        "occlusion s4": (lambda **kw: ki.Occlusion(model, patch_size=8, stride=4, **kw),
                         len(ki.Occlusion(model, patch_size=8, stride=4).windows(64, 64)[0])),
        "occlusion s8": (lambda **kw: ki.Occlusion(model, patch_size=8, stride=8, **kw), 64),
        "scorecam": (lambda **kw: ki.ScoreCAM(model, **kw), channels),
    }
    print(f"{'method':14s} {'pass size':>10s} {'seconds':>8s} {'/ limit':>8s}")
    for name, (make, perturbations) in methods.items():
        def limit():
            return perturbations * args.batch * per_image()

        explainer = make()
        seconds, limit_seconds = paired(lambda: explainer.explain(x, target=0), limit, rounds=args.rounds)
        (choice,) = explainer.chunk_choices.values() or [{"images": explainer.batch_size, "seconds_per_image": {}}]
        timings = ", ".join(f"{n}: {t * 1e6:.0f}" for n, t in choice["seconds_per_image"].items())
        print(f"{name:14s} {'auto ' + str(choice['images']):>10s} {seconds:8.3f} {seconds / limit_seconds:8.3f}"
              f"   (us/image measured: {timings})")
        for size in SIZES:
            fixed = make(batch_size=size)
            fixed._MEASURE_FROM_PASSES = float("inf")  # this size, as it is
            seconds, limit_seconds = paired(lambda: fixed.explain(x, target=0), limit, rounds=args.rounds)
            print(f"{name:14s} {size:10d} {seconds:8.3f} {seconds / limit_seconds:8.3f}")


if __name__ == "__main__":
    main()
