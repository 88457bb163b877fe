"""Peak memory of the perturbation methods, run after run: is `batch_size` a true bound?

    python benchmarks/bench_memory.py [--runs 3] [--methods smoothgrad,integrated_gradients,occlusion,scorecam]
    python benchmarks/bench_memory.py --runs 2 --methods rise,sobol,hsic,lime,kernel_shap

Each measurement is a fresh Python process (the reference CNN, 32 images of 64x64,
batch_size=128) that calls the method twice and reports the peak resident-memory growth of
each call: the first call also traces and optimises the compiled function, the second is
what every later call costs. For a small and a large perturbation count per method it prints
the least and the worst of `--runs` processes, their ratio, and the size of one chunk's
forward+backward (the peak growth of one compiled forward+backward of 128 images, measured
the same way), the bound a chunked loop should stay within a small multiple of.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {bench!r})
import numpy as np, tensorflow as tf
import keras_interp as ki
from common import forward_backward_step, peak_rss_growth
method, count = {method!r}, {count}
model = ki.reference_cnn((64, 64, 3))
images = 4 if method in {black_box!r} else 32
x = np.random.default_rng(0).uniform(size=(images, 64, 64, 3)).astype("float32")
if method == "chunk":
    step = forward_backward_step(model)
    z = tf.constant(np.concatenate([x] * 4))
    run = lambda: step(z).numpy()
else:
    explainer = {{
        "smoothgrad": lambda: ki.SmoothGrad(model, samples=count, batch_size=128),
        "integrated_gradients": lambda: ki.IntegratedGradients(model, steps=count, batch_size=128),
        "occlusion": lambda: ki.Occlusion(model, patch_size=64 // count, stride=64 // count, batch_size=128),
        "scorecam": lambda: ki.ScoreCAM(model, max_channels=count, batch_size=128),
        "rise": lambda: ki.RISE(model, masks=count, batch_size=128),
        "sobol": lambda: ki.SobolAttribution(model, nb_design=count, batch_size=128),
        "hsic": lambda: ki.HSICAttribution(model, samples=count, batch_size=128),
        "lime": lambda: ki.LIME(model, samples=count, batch_size=128),
        "kernel_shap": lambda: ki.KernelSHAP(model, samples=count, batch_size=128),
    }}[method]()
    run = lambda: explainer.explain(x, target=0)
_, first = peak_rss_growth(run)
_, later = peak_rss_growth(run)
print(json.dumps([first / 2**20, later / 2**20]))
"""

# method -> (small count, large count): samples, steps, windows per side, channels.
COUNTS = {"smoothgrad": (25, 400), "integrated_gradients": (16, 256), "occlusion": (8, 32), "scorecam": (8, 64)}
# The black-box methods on 4 images, from 500 to 8000 masked copies per image (Sobol: 8 and 128
# designs of 66 copies, 528 and 8448).
BLACK_BOX = {"rise": (500, 8000), "sobol": (8, 128), "hsic": (500, 8000), "lime": (500, 8000),
             "kernel_shap": (500, 8000)}
COUNTS.update(BLACK_BOX)


def measure(method, count):
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), method=method, count=count,
                        black_box=set(BLACK_BOX))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{method} ({count}) failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(m for m in COUNTS if m not in BLACK_BOX),
                        help="comma-separated; also " + ",".join(BLACK_BOX) + " (4 images each)")
    args = parser.parse_args()
    chunk = [measure("chunk", 0) for _ in range(args.runs)]
    print(f"one chunk's forward+backward (128 images): first call {min(c[0] for c in chunk):.0f}-"
          f"{max(c[0] for c in chunk):.0f} MiB, later calls {min(c[1] for c in chunk):.0f}-{max(c[1] for c in chunk):.0f} MiB")
    print(f"{'method':22s} {'count':>6s}  {'first call: least  worst  ratio':>32s}  {'later calls: least  worst':>26s}")
    for method in args.methods.split(","):
        for count in COUNTS[method]:
            runs = [measure(method, count) for _ in range(args.runs)]
            first = [r[0] for r in runs]
            later = [r[1] for r in runs]
            ratio = max(first) / max(min(first), 1.0)
            print(f"{method:22s} {count:6d}  {min(first):17.0f} {max(first):6.0f} {ratio:6.2f}  "
                  f"{min(later):19.0f} {max(later):6.0f}", flush=True)


if __name__ == "__main__":
    main()
