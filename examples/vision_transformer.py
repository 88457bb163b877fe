"""Explaining a Vision Transformer: Grad-CAM on its patch tokens and its attention, rolled out.

    python examples/vision_transformer.py [--epochs 20] [--out vit_explained.png] [--model vit.keras]

Trains the small hybrid ViT of keras_interp.models (a convolutional stem down to an 8 x 8 grid of
patch tokens, a class token, 4 transformer blocks; `--model` loads a saved one instead) on the
built-in shapes, then explains 4 held-out shapes with Grad-CAM on the patch tokens (where it
reads them, and which tokens it drops, is printed), attention rollout, gradient-weighted
rollout, saliency and occlusion, and saves the sheet. The same calls work on keras-hub's
`ViTImageClassifier`.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model", help="a saved ViT (.keras) to explain instead of training one")
    parser.add_argument("--out", default="vit_explained.png")
    args = parser.parse_args()
    model = ki.load_model(args.model) if args.model else ki.models.train_vit_on_shapes(args.epochs)[0]
    data = ki.datasets.shapes(4, seed=1234)
    explainers = {
        "Grad-CAM (tokens)": ki.GradCAM(model),
        "attention rollout": ki.AttentionRollout(model),
        "gradient rollout": ki.GradientAttentionRollout(model),
        "saliency": ki.Saliency(model),
        "occlusion": ki.Occlusion(model, patch_size=8, stride=4),
    }
    cam = explainers["Grad-CAM (tokens)"]
    print(f"Grad-CAM reads layer {cam.layer!r}: a {cam.tokens.grid} grid of patch tokens, dropping tokens "
          f"{cam.tokens.dropped} (the class token)")
    cells = [[image] for image in data.images]
    for explainer in explainers.values():
        for row, image, map_ in zip(cells, data.images, explainer.explain(data.images, target=data.labels)):
            row.append(ki.images.overlay(image, map_))
    p = model.predict(data.images, verbose=0)
    labels = [f"true {data.class_names[t]}\npredicted\n{data.class_names[q.argmax()]} {q.max():.0%}"
              for t, q in zip(data.labels, p)]
    sheet = ki.images.grid(cells, col_labels=["input"] + list(explainers), row_labels=labels, cell_size=(96, 96),
                           row_label_width=110)
    print(f"held-out accuracy on these 4: {np.mean(p.argmax(axis=1) == data.labels):.2f}; "
          f"sheet: {ki.images.save(args.out, sheet)}")


if __name__ == "__main__":
    main()
