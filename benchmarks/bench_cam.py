"""Class activation maps: speed against limits and peers, and localisation quality.

    python benchmarks/bench_cam.py [--batch 32] [--repeats 3] [--epochs 8] [--skip-quality]

Speed, on the reference CNN (64x64x3, GAP head) at batch 32, limits measured in the same run:
  CAM                 1 compiled forward of the batch
  Grad-CAM, ++        1 compiled forward+backward of the batch
  Score-CAM           (channels x images) compiled forwards per image at the best batch size
  HiResCAM, XGradCAM  1 compiled forward+backward of the batch
  Eigen-CAM, FEM      1 compiled forward of the batch
  Ablation-CAM        (channels x images) compiled forwards per image at the best batch size (a
                      whole-model pass per ablated copy, as pytorch-grad-cam runs it; ours runs
                      only the layers after the ablated one, so it can go below this limit)
Peers (pip install -e ".[bench]"): tf-keras-vis 0.8.7 (Gradcam, GradcamPlusPlus, Scorecam) and
tf-explain 0.3.1 (GradCAM), on the same model, inputs and layer; Xplique 2.0.2 (Grad-CAM,
Grad-CAM++, FEM) where benchmarks/install_xplique.sh has set it up.

Quality: the reference GAP model trained on the built-in shapes; pointing game (the map's
maximum inside the object mask) and energy on held-out shapes, next to the mean mask fraction
and a uniform-random map's pointing game. Score-CAM runs in its three readings (weighting=
"increase", "softmax", "probability"), each with a black and a blurred baseline.
"""

from common import (
    batch_parser,
    best_forward_timer,
    forward_backward_timer,
    forward_timer,
    paired,
    reference_batch,
    report,
    try_peer,
    xplique_times,
)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402


def peers_for(model, x, target, layer):
    peers = {"cam": {}, "gradcam": {}, "gradcam++": {}, "scorecam": {}}
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        score = CategoricalScore([target] * len(x))
        for name, cls in (("gradcam", Gradcam), ("gradcam++", GradcamPlusPlus), ("scorecam", Scorecam)):
            vis = cls(model, model_modifier=ReplaceToLinear(), clone=True)
            peers[name]["tf-keras-vis"] = (lambda v: lambda: v(score, x, penultimate_layer=layer))(vis)
    except ImportError:
        pass
    try:
        from tf_explain.core.grad_cam import GradCAM as TfeGradCAM

        peers["gradcam"]["tf-explain"] = lambda: TfeGradCAM().explain((x, None), model, target, layer_name=layer)
    except ImportError:
        pass
    return peers


def speed(args):
    model, x = reference_batch(args.batch)
    target = 0
    layer = ki.GradCAM(model).layer
    channels = model.get_layer(layer).output.shape[-1]
    fwd = forward_timer(model, x.shape[1:], args.batch)
    fb = forward_backward_timer(model, x)
    per_image, best = best_forward_timer(model, x.shape[1:])
    print(f"limits: forward {fwd() * args.batch * 1e3:.1f} ms, forward+backward {fb() * 1e3:.1f} ms of "
          f"{args.batch} images; forward {per_image() * 1e6:.0f} us/image at batch {best}; layer {layer!r} "
          f"has {channels} channels (limits re-measured beside each method)")
    ours = {
        "cam": (ki.CAM(model), lambda: fwd() * args.batch),
        "gradcam": (ki.GradCAM(model), fb),
        "gradcam++": (ki.GradCAMPlusPlus(model), fb),
        "scorecam": (ki.ScoreCAM(model), lambda: channels * args.batch * per_image()),
        "hirescam": (ki.HiResCAM(model), fb),
        "xgradcam": (ki.XGradCAM(model), fb),
        "eigencam": (ki.EigenCAM(model), lambda: fwd() * args.batch),
        "fem": (ki.FEM(model), lambda: fwd() * args.batch),
        "ablationcam": (ki.AblationCAM(model), lambda: channels * args.batch * per_image()),
    }
    if args.methods:
        ours = {m: v for m, v in ours.items() if m in args.methods}
    peers = peers_for(model, x, target, layer)
    xplique = xplique_times(model, x, target, [m for m in ("gradcam", "gradcam++", "fem") if m in ours], args.repeats,
                            layer=layer)
    rows = []
    for method, (explainer, limit) in ours.items():
        seconds, limit_seconds = paired(lambda: explainer.explain(x, target=target), limit, rounds=args.repeats)
        measured = {peer: try_peer(peer, fn, args.repeats) for peer, fn in peers.get(method, {}).items()}
        if method in xplique:
            measured["xplique"] = xplique[method]
        rows.append((method, seconds, limit_seconds, measured))
    report(rows)
    for name in ("scorecam", "ablationcam"):
        for choice in (ours[name][0].chunk_choices.values() if name in ours else ()):
            print(f"{name}: forward-pass size chosen {choice['images']} (batch_size {ours[name][0].batch_size}); "
                  "us/image " + ", ".join(f"{n}: {t * 1e6:.0f}" for n, t in choice["seconds_per_image"].items()))


def quality(args):
    print(f"\ntraining the reference GAP model for {args.epochs} epochs...")
    model, _ = ki.models.train_on_shapes(epochs=args.epochs, verbose=0)
    held = ki.datasets.shapes(200, seed=4321)
    accuracy = np.mean(model.predict(held.images, verbose=0).argmax(1) == held.labels)
    random_maps = np.random.default_rng(0).uniform(size=held.masks.shape)
    print(f"held-out accuracy {accuracy:.3f}; mean mask fraction {held.masks.mean():.3f}; "
          f"uniform-random map pointing game {ki.metrics.pointing_game(random_maps, held.masks):.3f}")
    # Score-CAM with the masked-out part blurred instead of black (ScoreCAM's baseline option).
    blurred = np.stack([cv2.GaussianBlur(image, (0, 0), 5) for image in held.images])
    print(f"{'method':26s} {'pointing game':>14s} {'energy':>8s}")
    for name, explainer in (
        ("cam", ki.CAM(model)),
        ("gradcam", ki.GradCAM(model)),
        ("gradcam++", ki.GradCAMPlusPlus(model)),
        ("layercam", ki.LayerCAM(model)),
    ) + tuple(
        (f"scorecam/{weighting}" + ("/blur" if baseline is blurred else ""),
         ki.ScoreCAM(model, weighting=weighting, baseline=baseline))
        for weighting in ("increase", "softmax", "probability") for baseline in (0.0, blurred)
    ):
        maps = explainer.explain(held.images)
        print(f"{name:26s} {ki.metrics.pointing_game(maps, held.masks):14.3f} "
              f"{ki.metrics.energy_pointing_game(maps, held.masks):8.3f}")


def main():
    parser = batch_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--methods", nargs="*", help="only these methods in the speed part")
    args = parser.parse_args()
    if not args.skip_speed:
        speed(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
