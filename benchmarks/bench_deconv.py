"""Deconvnet and guided backprop against their physical limit and tf-keras-vis.

    python benchmarks/bench_deconv.py [--batch 32] [--repeats 10]

Reference CNN (keras_interp.reference_cnn, 64x64x3, conv-BN-ReLU layers, max pooling, GAP head),
batch of 32 images. The limit of both methods is one compiled forward+backward pass of the batch
(measured in the same run, re-measured beside each method). Also timed: the Zeiler-Fergus
projection of one channel of relu3_2 through the explainer and through DeconvStack.

Peer (pip install -e ".[bench]"): tf-keras-vis 0.8.7's Saliency with its ReplaceToLinear and
GuidedBackpropagation model modifiers on a clone of the same model. Besides its speed, the script
prints how its map compares with our guided backprop and with the plain gradient: its modifier
only swaps `layer.activation`, so ReLU *layers* (as in this model and in keras.applications)
keep their ordinary gradient.
"""

import numpy as np
from common import batch_parser, forward_backward_timer, paired, reference_batch, report, try_peer, xplique_times

import keras_interp as ki  # noqa: E402


def vis_guided(model, x, target):
    """tf-keras-vis guided backprop as a callable returning (B, H, W) maps, or None."""
    try:
        from tf_keras_vis.saliency import Saliency as VisSaliency
        from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation, ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    vis = VisSaliency(model, model_modifier=[ReplaceToLinear(), GuidedBackpropagation()], clone=True)
    score = CategoricalScore([target] * len(x))
    return lambda: vis(score, x, normalize_map=False)


def correlation(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


def main():
    parser = batch_parser(__doc__, repeats=10)  # a pass is ~50 ms: more rounds, less noise
    args = parser.parse_args()

    model, x = reference_batch(args.batch)
    target = 0
    fb = forward_backward_timer(model, x)
    print(f"limit: compiled forward+backward of {args.batch} images {fb() * 1e3:.1f} ms (re-measured beside each method)")

    stack = ki.layers.DeconvStack.from_model(model, "relu3_2")
    deconvnet, guided = ki.Deconvnet(model), ki.GuidedBackprop(model)
    from_channel = ki.Deconvnet(model, layer="relu3_2")
    ours = {
        "deconvnet": (lambda: deconvnet.explain(x, target=target), fb),
        "guided_backprop": (lambda: guided.explain(x, target=target), fb),
        "deconvnet relu3_2 channel": (lambda: from_channel.explain(x), fb),
        "DeconvStack.project": (lambda: stack.project(x), fb),
    }
    peer = vis_guided(model, x, target)
    xplique = xplique_times(model, x, target, ["deconvnet", "guided_backprop"], args.repeats)
    rows = []
    for method, (fn, limit) in ours.items():
        seconds, limit_seconds = paired(fn, limit, rounds=args.repeats)
        peers = {"tf-keras-vis": try_peer("tf-keras-vis", peer, args.repeats)} if peer and method == "guided_backprop" else {}
        if method in xplique:
            peers["xplique"] = xplique[method]
        rows.append((method, seconds, limit_seconds, peers))
    report(rows)

    if peer is not None:
        theirs = np.asarray(peer())
        guided = ki.GuidedBackprop(model).explain(x, target=target)
        plain = ki.Saliency(model).explain(x, target=target)
        print(f"\ntf-keras-vis guided backprop vs ours: correlation {correlation(theirs, guided):.3f}; "
              f"vs the plain gradient (saliency): {correlation(theirs, plain):.3f}; "
              f"max |theirs - saliency| / max |saliency| = {np.abs(theirs - plain).max() / np.abs(plain).max():.2e}")
    print(f"DeconvStack.project equals Deconvnet(layer='relu3_2'): max |difference| = "
          f"{np.abs(stack.project(x) - ki.Deconvnet(model, layer='relu3_2').attribute(x)).max():.2e}")


if __name__ == "__main__":
    main()
