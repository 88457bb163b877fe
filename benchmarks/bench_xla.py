"""XLA or not, per architecture: what jit_compile="auto" chooses and what it gains.

    python benchmarks/bench_xla.py [--repeats 3]

For each model (untrained; speed does not depend on weights) it measures a compiled
forward+backward of the batch without and with XLA (`tf.function(jit_compile=True)`), then runs
Saliency and Grad-CAM with jit_compile="auto" and prints the mode each kept and its time divided
by the faster of the two forward+backward limits (Grad-CAM needs less than a full backward, so
its ratio can be below 1). Models: the reference CNN (64x64, batch 32), keras.applications
ResNet50 and MobileNetV2 (96x96, batch 8, weights=None), and the Conv1D model of
bench_attribution (32 signals of 4096 x 3).

    python benchmarks/bench_xla.py --first-call [--rounds 3] [--share 1.0]

measures instead what the jit_compile="auto" decision costs: the first call of Occlusion and
Saliency with "auto" on a fresh model, as a ratio to the first call with jit_compile=False on
another fresh model of the same architecture (both trace; medians over rounds that alternate
the two), and to a warm plain call, on a mini-Xception (48x48x1, separable and depthwise
convolution blocks with residual adds, a class-map head; batch 8) and the reference CNN (64x64,
batch 8). It prints what was kept, whether XLA was abandoned, and how long an abandoned compile
kept running after the call returned ("background", waited for outside the timings).
--share sets how long XLA's warm-up may take as a share of the plain call (default 1.0:
keras_interp.explainers.jit.XLA_WARM_UP_SHARE).
"""

import time

from common import batch_parser, forward_backward_timer, paired

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402
from bench_attribution import conv1d_model  # noqa: E402
from keras_interp.explainers import chunks, jit  # noqa: E402


def models():
    rng = np.random.default_rng(0)
    yield "reference CNN 64x64, batch 32", ki.reference_cnn(), ki.datasets.shapes(32, seed=0).images
    for name, build in (("ResNet50", keras.applications.ResNet50), ("MobileNetV2", keras.applications.MobileNetV2)):
        model = build(weights=None, input_shape=(96, 96, 3), classes=10)
        yield f"{name} 96x96, batch 8", model, rng.uniform(size=(8, 96, 96, 3)).astype("float32")
    yield "Conv1D 4096x3, batch 32", conv1d_model(), rng.normal(size=(32, 4096, 3)).astype("float32")


def mini_xception(classes=7, size=48, seed=0):
    """A mini-Xception (Arriaga et al. 2017's facial-expression model, smaller): two plain
    convolutions, four residual blocks of separable and depthwise convolutions, and a class-map
    head (a convolution with one channel per class, then global average pooling)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((size, size, 1))
    x = inputs
    for _ in range(2):
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, use_bias=False)(x)))
    for filters in (16, 32, 64, 128):
        residual = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x))
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(x))
        x = layers.Add()([layers.MaxPooling2D(3, strides=2, padding="same")(x), residual])
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(classes, 3, padding="same")(x))
    return keras.Model(inputs, layers.Activation("softmax")(x), name="mini_xception")


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def first_calls(rounds):
    """The first jit_compile="auto" call / the first plain call, per model and method."""
    rng = np.random.default_rng(0)
    cases = (
        ("mini-Xception 48x48x1, batch 8", mini_xception, rng.uniform(size=(8, 48, 48, 1)).astype("float32")),
        ("reference CNN 64x64, batch 8", ki.reference_cnn, ki.datasets.shapes(8, seed=0).images),
    )
    methods = (("occlusion", lambda m, jit: ki.Occlusion(m, jit_compile=jit)),
               ("saliency", lambda m, jit: ki.Saliency(m, jit_compile=jit)))
    chunks._xla_available()  # XLA's one-time start-up, and a first trace, outside the timings
    ki.Saliency(mini_xception()).explain(cases[0][2][:1])
    print(f"{'model':32s} {'method':10s} {'plain 1st':>9s} {'warm':>7s} {'auto 1st':>9s} {'/ plain 1st':>11s} "
          f"{'/ warm':>7s}  {'kept':5s} {'abandoned':9s} {'probe':>6s} {'background':>10s}")
    for name, build, x in cases:
        for method, make in methods:
            ratios, warm_ratios, rows = [], [], []
            for r in range(rounds):
                def plain_first():
                    explainer = make(build(), False)
                    first = _seconds(lambda: explainer.explain(x))
                    return first, min(_seconds(lambda: explainer.explain(x)) for _ in range(2))

                def auto_first():
                    explainer = make(build(), "auto")
                    first = _seconds(lambda: explainer.explain(x))
                    background = _seconds(jit.wait_for_probes)  # an abandoned compile's remainder
                    return first, next(iter(explainer.jit_choices.values())), background

                if r % 2:
                    auto, (plain, warm) = auto_first(), plain_first()
                else:
                    (plain, warm), auto = plain_first(), auto_first()
                ratios.append(auto[0] / plain)
                warm_ratios.append(auto[0] / warm)
                rows.append((plain, warm) + auto)
            i = int(np.argsort(ratios)[len(ratios) // 2])
            plain, warm, first, choice, background = rows[i]
            kept = "XLA" if choice["xla"] else "plain"
            print(f"{name:32s} {method:10s} {plain:8.2f}s {warm:6.2f}s {first:8.2f}s {ratios[i]:10.2f}x "
                  f"{warm_ratios[i]:6.1f}x  {kept:5s} {str(choice['abandoned']):9s} {choice['images']:6d} "
                  f"{background:9.2f}s   (ratios {' '.join(f'{q:.2f}' for q in ratios)})", flush=True)


def main():
    parser = batch_parser(__doc__)
    parser.add_argument("--first-call", action="store_true", help="what the jit_compile='auto' decision costs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--share", type=float, default=None,
                        help="with --first-call: the share of the plain call XLA's warm-up may take")
    args = parser.parse_args()
    if args.share is not None:
        jit.XLA_WARM_UP_SHARE = args.share
    if args.first_call:
        first_calls(args.rounds)
        return
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
