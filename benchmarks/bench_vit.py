"""Speed of the ViT methods against their physical limit, measured in the same run.

    python benchmarks/bench_vit.py [--batch 16] [--repeats 5] [--models reference,vit_b16]

- AttentionRollout: limit = one compiled forward pass of the batch (it needs nothing else; the
  rollout's products are (T x T) per block). Goal: <= 1.1x.
- GradientAttentionRollout: limit = one compiled forward+backward of the batch (the gradient of
  the outputs' sum with respect to the input). Goal: <= 1.1x.
- Grad-CAM on the patch tokens: the same forward+backward limit.

Each ratio is the median over rounds that run the method and its limit back to back
(common.round_ratios). Models: ki.models.reference_vit (64 px, 8-pixel patches, 4 blocks of
width 64) and keras-hub's ViT-B/16 layout (224 px, 12 blocks of width 768) with random weights.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import batch_parser, forward_backward_timer, round_ratios, timed  # noqa: E402

import keras_interp as ki  # noqa: E402


def models(names, batch):
    if "reference" in names:
        yield "reference ViT 64 px", ki.models.reference_vit(), 64, batch
    if "vit_b16" in names:
        import keras_hub

        backbone = keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
                                                hidden_dim=768, mlp_dim=3072)
        yield ("keras-hub ViT-B/16 224 px", keras_hub.models.ViTImageClassifier(
            backbone=backbone, num_classes=1000, preprocessor=None), 224, max(batch // 8, 1))


def main():
    parser = batch_parser(__doc__, repeats=5)
    parser.set_defaults(batch=16)
    parser.add_argument("--models", default="reference,vit_b16")
    args = parser.parse_args()
    for name, model, size, batch in models(args.models.split(","), args.batch):
        x = np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype("float32")
        forward = tf.function(lambda z: model(z, training=False))
        xt = tf.constant(x)
        forward_time = lambda: timed(lambda: forward(xt).numpy(), repeats=3)  # noqa: E731
        backward_time = forward_backward_timer(model, x, repeats=3)
        print(f"{name}: {batch} images")
        rows = [("AttentionRollout", ki.AttentionRollout(model), forward_time, "forward"),
                ("GradientAttentionRollout", ki.GradientAttentionRollout(model), backward_time, "forward+backward"),
                ("Grad-CAM on tokens", ki.GradCAM(model, relu=False), backward_time, "forward+backward")]
        for label, explainer, limit, what in rows:
            ratios = round_ratios(lambda: explainer.explain(x), limit, rounds=args.repeats)
            print(f"  {label:26s} / {what:17s} median {np.median(ratios):5.2f}  "
                  f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
