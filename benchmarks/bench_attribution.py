"""The gradient family and occlusion against their physical limits and peers.

    python benchmarks/bench_attribution.py [--batch 32] [--repeats 3] [--only images|signals|larger|black_box]

Reference CNN (keras_interp.reference_cnn, 64x64x3, BatchNorm, GAP head), batch of 32 images.
Limits, measured in the same run:
  saliency            1 compiled forward+backward of the batch
  SmoothGrad (25)     25 x that
  IG (64 steps)       64 x that
  occlusion           (images x windows) x a compiled forward per image at the best batch size
  Gradient x Input    1 x that forward+backward
  SquareGrad (25)     25 x that; VarGrad (25) 26 x that (its clean gradient besides the copies)
  Expected Gradients (64 samples)  64 x that
  Guided IG (200 steps)            200 x that (the steps are sequential, one pass of the batch each)
  Blur IG (100 steps)              100 x that
Peers (pip install -e ".[bench]"): tf-keras-vis 0.8.7 and tf-explain 0.3.1 on the same model and
inputs, where they have the method; PAIR's saliency 0.2.1 (Guided IG, Blur IG: one image at a
time, as its API takes them, with a compiled gradient function); Xplique 2.0.2 when benchmarks/install_xplique.sh has set up
its environment (it runs there, on the same model saved to .keras and the same inputs). Occlusion against tf-explain uses its windows (patch 8,
stride 8). Last, occlusion's peak resident-memory growth during a call for 64 and 1024 windows
per image.

Then the same methods, plus Grad-CAM and Score-CAM, on a 1-D model: a Conv1D network of the
reference CNN's form (three conv-BatchNorm-ReLU-pool blocks, GAP, Dense) on 32 signals of
4096 samples x 3 channels (occlusion: patch 64, stride 32, 127 windows). Limits as above;
Grad-CAM's is one forward+backward, Score-CAM's (channels x images) forwards at the best batch.

Last (--only black_box), the black-box methods at their defaults on 4 images: limit = (masked
copies per image x images) x a compiled forward per image at the best batch size (RISE 4000,
Sobol 32 x (64 + 2), HSIC 1500, LIME 1000, Kernel SHAP 1000 + 2), against Xplique at the same
sample counts (their memory: benchmarks/bench_memory.py).
"""

from common import (
    batch_parser,
    best_forward_timer,
    forward_backward_timer,
    paired,
    peak_rss_growth,
    reference_batch,
    report,
    try_peer,
    xplique_times,
)


import keras_interp as ki  # noqa: E402


# The methods of ours that Xplique 2.0.2 has (benchmarks/xplique_peer.py).
XPLIQUE_HAS = ("saliency", "smoothgrad", "integrated_gradients", "occlusion", "occlusion_s8", "gradient_input",
               "squaregrad", "vargrad")


def peers_for(model, x, target):
    """{method: {peer: callable}} for the peers that are installed."""
    peers = {"saliency": {}, "smoothgrad": {}, "integrated_gradients": {}, "occlusion_s8": {}, "guided_ig": {},
             "blur_ig": {}}
    try:
        from tf_keras_vis.saliency import Saliency as VisSaliency
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        vis = VisSaliency(model, model_modifier=ReplaceToLinear(), clone=True)
        score = CategoricalScore([target] * len(x))
        peers["saliency"]["tf-keras-vis"] = lambda: vis(score, x)
        peers["smoothgrad"]["tf-keras-vis"] = lambda: vis(score, x, smooth_samples=25, smooth_noise=0.15)
    except ImportError:
        pass
    try:
        from tf_explain.core.integrated_gradients import IntegratedGradients as TfeIG
        from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity
        from tf_explain.core.smoothgrad import SmoothGrad as TfeSmoothGrad
        from tf_explain.core.vanilla_gradients import VanillaGradients

        data = (x, None)
        peers["saliency"]["tf-explain"] = lambda: VanillaGradients().explain(data, model, target)
        peers["smoothgrad"]["tf-explain"] = lambda: TfeSmoothGrad().explain(data, model, target, num_samples=25, noise=0.15)
        peers["integrated_gradients"]["tf-explain"] = lambda: TfeIG().explain(data, model, target, n_steps=64)
        peers["occlusion_s8"]["tf-explain"] = lambda: OcclusionSensitivity().explain(data, model, target, patch_size=8)
    except ImportError:
        pass
    try:
        peers.update(pair_peers(model, x, target))
    except ImportError:
        pass
    return peers


def _numpy_2_shim():
    """PAIR's saliency 0.2.1 calls np.quantile(..., interpolation=), which NumPy 2 removed; its
    Guided IG module gets a NumPy whose quantile takes the old name (the same computation)."""
    import numpy as np
    import saliency.core.guided_ig as module

    class NumPy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation="linear", **kwargs):
            return np.quantile(a, q, method=interpolation, **kwargs)

    module.np = NumPy()


def pair_call(model, target):
    """PAIR's model function: a compiled TensorFlow gradient of the class's output (the same work
    as ours), so the comparison is of the methods' loops, not of eager mode."""
    import numpy as np
    import saliency.core as saliency
    import tensorflow as tf

    @tf.function
    def gradient(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            score = model(batch, training=False)[:, target]
        return tape.gradient(score, batch)

    def call(points, call_model_args=None, expected_keys=None):
        return {saliency.INPUT_OUTPUT_GRADIENTS: gradient(tf.constant(np.asarray(points, np.float32))).numpy()}

    return call


def pair_peers(model, x, target):
    """PAIR's saliency library (the Guided IG and Blur IG papers' code): framework-free, one image
    per GetMask call, as its API takes them."""
    import saliency.core as saliency

    _numpy_2_shim()
    call = pair_call(model, target)
    guided, blur = saliency.GuidedIG(), saliency.BlurIG()
    return {
        "guided_ig": {"PAIR saliency": lambda: [guided.GetMask(image, call, x_steps=200, fraction=0.25, max_dist=0.02)
                                                for image in x]},
        "blur_ig": {"PAIR saliency": lambda: [blur.GetMask(image, call, max_sigma=50, steps=100, batch_size=100)
                                              for image in x]},
    }


def occlusion_memory(model, x, windows_per_side):
    """Peak resident-memory growth (MiB) of an occlusion call with windows_per_side**2 windows.

    The first call traces the function and sizes TensorFlow's allocator for the chunk shape
    (the same for every window count); the second call is what a user pays from then on.
    """
    patch = 64 // windows_per_side
    occlusion = ki.Occlusion(model, patch_size=patch, stride=patch)
    _, first = peak_rss_growth(lambda: occlusion.explain(x))
    _, steady = peak_rss_growth(lambda: occlusion.explain(x))
    return first / 2**20, steady / 2**20


def conv1d_model(length=4096, channels=3, classes=4):
    """A Conv1D network of the reference CNN's form, untrained (speed does not depend on weights)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((length, channels))
    h = inputs
    for filters in (32, 64, 128):
        h = keras.layers.Conv1D(filters, 9, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling1D(4)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(h), name="conv1d_reference")


def signals_section(args):
    import numpy as np

    model = conv1d_model()
    x = np.random.default_rng(0).normal(size=(args.batch, 4096, 3)).astype("float32")
    fb = forward_backward_timer(model, x)
    per_image, best_batch = best_forward_timer(model, x.shape[1:])
    print(f"\nConv1D model, {args.batch} signals of 4096 x 3. limits: forward+backward {fb() * 1e3:.1f} ms; "
          f"compiled forward {per_image() * 1e6:.0f} us/signal at best batch size {best_batch}")
    occlusion = ki.Occlusion(model, patch_size=64, stride=32)
    windows = len(occlusion.windows(4096)[0])
    score_cam = ki.ScoreCAM(model)
    channels = score_cam.site.shape[-1]
    ours = {
        "saliency": (ki.Saliency(model), lambda: fb()),
        "smoothgrad": (ki.SmoothGrad(model, samples=25, noise=0.15), lambda: 25 * fb()),
        "integrated_gradients": (ki.IntegratedGradients(model, steps=64), lambda: 64 * fb()),
        "occlusion": (occlusion, lambda: windows * args.batch * per_image()),
        "gradcam": (ki.GradCAM(model), lambda: fb()),
        "scorecam": (score_cam, lambda: channels * args.batch * per_image()),
    }
    rows = []
    for method, (explainer, limit) in ours.items():
        seconds, limit_seconds = paired(lambda: explainer.explain(x, target=0), limit, rounds=args.repeats)
        rows.append((method, seconds, limit_seconds, {}))
    report(rows)


def larger_section(args):
    """Guided IG's bookkeeping between its steps, and Blur IG's blurs, cost per input value: on the
    small reference CNN a large share of a pass, on a real model a small one."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(96, 96, 3), classes=10)
    x = ki.datasets.shapes(8, seed=0, image_size=96).images
    fb = forward_backward_timer(model, x, repeats=2)
    steps = 50
    ours = {"guided_ig": ki.GuidedIntegratedGradients(model, steps=steps),
            "blur_ig": ki.BlurIntegratedGradients(model, steps=steps)}
    peers = {}
    try:
        import saliency.core as saliency

        _numpy_2_shim()
        guided, blur, call = saliency.GuidedIG(), saliency.BlurIG(), pair_call(model, 0)
        peers = {"guided_ig": lambda: [guided.GetMask(i, call, x_steps=steps, fraction=0.25, max_dist=0.02) for i in x],
                 "blur_ig": lambda: [blur.GetMask(i, call, max_sigma=50, steps=steps, batch_size=steps) for i in x]}
    except ImportError:
        pass
    rows = []
    for method, explainer in ours.items():
        seconds, limit = paired(lambda: explainer.explain(x, target=0), lambda: steps * fb(), rounds=args.repeats)
        measured = {"PAIR saliency": try_peer("PAIR saliency", peers[method], args.repeats)} if method in peers else {}
        rows.append((f"{method} ({steps} steps)", seconds, limit, measured))
    print(f"\nResNet50 (weights=None) at 96 x 96, {len(x)} images; limit: {steps} forward+backward passes of the "
          "batch")
    report(rows)


BLACK_BOX_BATCH = 4


def black_box_section(args):
    """RISE, Sobol, HSIC, LIME and Kernel SHAP at their defaults on a few images: against the
    compiled forward passes of all their masked copies at the best batch size, and Xplique."""
    model, x = reference_batch(BLACK_BOX_BATCH)
    target = 0
    per_image, best_batch = best_forward_timer(model, x.shape[1:])
    b = len(x)
    print(f"\nblack-box methods on {b} images (compiled forward {per_image() * 1e6:.0f} us/image at batch {best_batch}):")
    sobol_copies = 32 * (64 + 2)
    ours = {
        "rise": (ki.RISE(model), lambda: 4000 * b * per_image()),
        "sobol": (ki.SobolAttribution(model), lambda: sobol_copies * b * per_image()),
        "hsic": (ki.HSICAttribution(model), lambda: 1500 * b * per_image()),
        "lime": (ki.LIME(model), lambda: 1000 * b * per_image()),
        "kernel_shap": (ki.KernelSHAP(model), lambda: 1002 * b * per_image()),
    }
    if args.methods:
        ours = {m: v for m, v in ours.items() if m in args.methods}
    xplique = xplique_times(model, x, target, list(ours), max(1, args.repeats - 1))
    rows = []
    for method, (explainer, limit) in ours.items():
        seconds, limit_seconds = paired(lambda: explainer.explain(x, target=target), limit, rounds=args.repeats)
        rows.append((method, seconds, limit_seconds, {"xplique": xplique[method]} if method in xplique else {}))
    report(rows)


def main():
    parser = batch_parser(__doc__)
    parser.add_argument("--only", choices=("images", "signals", "larger", "black_box"), help="run one section")
    parser.add_argument("--methods", nargs="*", help="only these methods of the images section")
    args = parser.parse_args()
    if args.only in (None, "images"):
        images_section(args)
    if args.only in (None, "signals"):
        signals_section(args)
    if args.only in (None, "larger"):
        larger_section(args)
    if args.only in (None, "black_box"):
        black_box_section(args)


def images_section(args):
    model, x = reference_batch(args.batch)
    target = 0
    fb = forward_backward_timer(model, x)
    per_image, best_batch = best_forward_timer(model, x.shape[1:])
    print(f"limits: forward+backward of {args.batch} images {fb() * 1e3:.1f} ms; compiled forward "
          f"{per_image() * 1e6:.0f} us/image at best batch size {best_batch} (re-measured beside each method)")

    occlusion = ki.Occlusion(model, patch_size=8, stride=4)
    occlusion_s8 = ki.Occlusion(model, patch_size=8, stride=8)
    windows = len(occlusion.windows(64, 64)[0])
    ours = {
        "saliency": (ki.Saliency(model), lambda: fb()),
        "smoothgrad": (ki.SmoothGrad(model, samples=25, noise=0.15), lambda: 25 * fb()),
        "integrated_gradients": (ki.IntegratedGradients(model, steps=64), lambda: 64 * fb()),
        "occlusion": (occlusion, lambda: windows * args.batch * per_image()),
        "occlusion_s8": (occlusion_s8, lambda: 64 * args.batch * per_image()),
        "gradient_input": (ki.GradientInput(model), lambda: fb()),
        "squaregrad": (ki.SquareGrad(model, samples=25, noise=0.15), lambda: 25 * fb()),
        "vargrad": (ki.VarGrad(model, samples=25, noise=0.15), lambda: 26 * fb()),
        "expected_gradients": (ki.ExpectedGradients(model, ki.datasets.shapes(64, seed=7).images, samples=64),
                               lambda: 64 * fb()),
        "guided_ig": (ki.GuidedIntegratedGradients(model, steps=200), lambda: 200 * fb()),
        "blur_ig": (ki.BlurIntegratedGradients(model, max_sigma=50, steps=100), lambda: 100 * fb()),
    }
    if args.methods:
        ours = {m: v for m, v in ours.items() if m in args.methods}
    peers = peers_for(model, x, target)
    xplique = xplique_times(model, x, target, [m for m in ours if m in XPLIQUE_HAS], args.repeats)
    rows = []
    for method, (explainer, limit) in ours.items():
        seconds, limit_seconds = paired(lambda: explainer.explain(x, target=target), limit, rounds=args.repeats)
        measured = {peer: try_peer(peer, fn, args.repeats) for peer, fn in peers.get(method, {}).items()}
        if method in xplique:
            measured["xplique"] = xplique[method]
        rows.append((method, seconds, limit_seconds, measured))
    report(rows)
    for name, explainer in [(n, ours[n][0]) for n in ("occlusion", "occlusion_s8") if n in ours]:
        for choice in explainer.chunk_choices.values():
            print(f"{name}: forward-pass size chosen {choice['images']} (batch_size {explainer.batch_size}); us/image "
                  + ", ".join(f"{n}: {t * 1e6:.0f}" for n, t in choice["seconds_per_image"].items()))

    if "occlusion" not in ours:
        return
    print(f"\nocclusion peak resident-memory growth during a call (batch {args.batch}, chunks of "
          f"{occlusion.batch_size} images):")
    for per_side in (8, 32):
        first, steady = occlusion_memory(model, x, per_side)
        print(f"  {per_side ** 2:5d} windows/image: first call {first:7.1f} MiB, later calls {steady:7.1f} MiB")


if __name__ == "__main__":
    main()
