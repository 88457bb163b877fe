"""XLA or not, per architecture: what jit_compile="auto" chooses and what it gains.

    python benchmarks/bench_xla.py [--repeats 3]

For each model (untrained; speed does not depend on weights) it measures a compiled
forward+backward of the batch without and with XLA (`tf.function(jit_compile=True)`), then runs
Saliency and Grad-CAM with jit_compile="auto" and prints the mode each kept and its time divided
by the faster of the two forward+backward limits (Grad-CAM needs less than a full backward, so
its ratio can be below 1). Models: the reference CNN (64x64, batch 32), keras.applications
ResNet50 and MobileNetV2 (96x96, batch 8, weights=None), and the Conv1D model of
bench_attribution (32 signals of 4096 x 3).
"""

from common import batch_parser, forward_backward_timer, paired

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402
from bench_attribution import conv1d_model  # noqa: E402


def models():
    rng = np.random.default_rng(0)
    yield "reference CNN 64x64, batch 32", ki.reference_cnn(), ki.datasets.shapes(32, seed=0).images
    for name, build in (("ResNet50", keras.applications.ResNet50), ("MobileNetV2", keras.applications.MobileNetV2)):
        model = build(weights=None, input_shape=(96, 96, 3), classes=10)
        yield f"{name} 96x96, batch 8", model, rng.uniform(size=(8, 96, 96, 3)).astype("float32")
    yield "Conv1D 4096x3, batch 32", conv1d_model(), rng.normal(size=(32, 4096, 3)).astype("float32")


def main():
    args = batch_parser(__doc__).parse_args()
    print(f"{'model':32s} {'fb plain':>9s} {'fb XLA':>8s} {'XLA gain':>9s}  {'saliency: kept, / limit':>24s}  "
          f"{'Grad-CAM: kept, / limit':>24s}")
    for name, model, x in models():
        plain = forward_backward_timer(model, x, repeats=3, jit_compile=False)
        xla = forward_backward_timer(model, x, repeats=3, jit_compile=True)
        t_plain, t_xla = plain(), xla()
        row = f"{name:32s} {t_plain * 1e3:7.0f}ms {t_xla * 1e3:6.0f}ms {t_plain / t_xla:8.2f}x"
        for explainer in (ki.Saliency(model, jit_compile="auto"), ki.GradCAM(model, jit_compile="auto")):
            explainer.explain(x, target=0)  # the first call times both modes and keeps one
            kept = next(iter(explainer.jit_choices.values()))["xla"]
            seconds, limit = paired(lambda: explainer.explain(x, target=0), lambda: min(plain(), xla()),
                                    rounds=args.repeats)
            row += f"  {'XLA' if kept else 'plain':>15s} {seconds / limit:8.3f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
