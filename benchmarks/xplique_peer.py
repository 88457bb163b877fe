"""Time Xplique 2.0.2's explainers on a saved model, in Xplique's own environment.

Xplique caps TensorFlow at 2.20 and pulls CUDA wheels, so it lives in a separate virtual
environment (see benchmarks/install_xplique.sh) and the benchmarks call this script with that
environment's Python:

    /opt/xplique-env/bin/python benchmarks/xplique_peer.py MODEL.keras INPUTS.npy TARGET METHOD... [--repeats 3]

It prints one JSON object {method: seconds (best of repeats after a warm-up) or "failed: ..."}
and, with --save DIR, each method's maps as DIR/<method>.npy for comparing results.
Xplique explains the model's output as it is: a softmax model's probabilities, unlike
keras-interp (which explains the logits), so the work is the same but the maps differ.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402


def explainers(model, settings):
    from xplique.attributions import (FEM, DeconvNet, GradCAM, GradCAMPP, GradientInput, GuidedBackprop,
                                      IntegratedGradients, Occlusion, Saliency, SmoothGrad, SquareGrad, VarGrad)

    return {
        "saliency": lambda: Saliency(model, batch_size=settings["batch"]),
        "smoothgrad": lambda: SmoothGrad(model, batch_size=128, nb_samples=25, noise=0.15),
        "integrated_gradients": lambda: IntegratedGradients(model, batch_size=128, steps=64),
        "occlusion": lambda: Occlusion(model, batch_size=256, patch_size=8, patch_stride=4),
        "occlusion_s8": lambda: Occlusion(model, batch_size=256, patch_size=8, patch_stride=8),
        "gradcam": lambda: GradCAM(model, batch_size=settings["batch"], conv_layer=settings.get("layer")),
        "gradcam++": lambda: GradCAMPP(model, batch_size=settings["batch"], conv_layer=settings.get("layer")),
        "deconvnet": lambda: DeconvNet(model, batch_size=settings["batch"]),
        "guided_backprop": lambda: GuidedBackprop(model, batch_size=settings["batch"]),
        "gradient_input": lambda: GradientInput(model, batch_size=settings["batch"]),
        "squaregrad": lambda: SquareGrad(model, batch_size=128, nb_samples=25, noise=0.15),
        "vargrad": lambda: VarGrad(model, batch_size=128, nb_samples=25, noise=0.15),
        "fem": lambda: FEM(model, batch_size=settings["batch"], conv_layer=settings.get("layer")),
        # Black-box methods at our defaults' sample counts (LIME and Kernel SHAP on our default
        # 6 x 6 grid of segments, given as Xplique's map to its interpretable space).
        "rise": lambda: _xplique("Rise")(model, batch_size=256, nb_samples=4000, grid_size=7),
        "sobol": lambda: _xplique("SobolAttributionMethod")(model, grid_size=8, nb_design=32, batch_size=256),
        "hsic": lambda: _xplique("HsicAttributionMethod")(model, grid_size=8, nb_design=1500, batch_size=256),
        "lime": lambda: _xplique("Lime")(model, batch_size=256, nb_samples=1000, map_to_interpret_space=_grid6,
                                         ref_value=np.zeros(3, np.float32), distance_mode="cosine", kernel_width=0.25),
        "kernel_shap": lambda: _xplique("KernelShap")(model, batch_size=256, nb_samples=1000,
                                                      map_to_interpret_space=_grid6, ref_value=np.zeros(3, np.float32)),
    }


def _xplique(name):
    import xplique.attributions

    return getattr(xplique.attributions, name)


def _grid6(image):
    h, w = int(image.shape[0]), int(image.shape[1])
    rows = np.minimum(np.arange(h) * 6 // h, 5)
    cols = np.minimum(np.arange(w) * 6 // w, 5)
    return tf.constant(rows[:, None] * 6 + cols[None], tf.int32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("target", type=int)
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer")
    parser.add_argument("--save")
    args = parser.parse_args()
    model = keras.saving.load_model(args.model, compile=False)
    x = np.load(args.inputs)
    y = tf.one_hot(np.full(len(x), args.target), model.output_shape[-1])
    factories = explainers(model, {"batch": len(x), "layer": args.layer})
    results = {}
    for method in args.methods:
        try:
            explainer = factories[method]()
            maps = explainer.explain(x, y)  # warm-up: traces
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                np.asarray(explainer.explain(x, y))
                best = min(best, time.perf_counter() - start)
            results[method] = best
            if args.save:
                np.save(os.path.join(args.save, f"{method}.npy"), np.asarray(maps))
        except Exception as exc:  # noqa: BLE001 - a failing peer is reported, not raised
            results[method] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
