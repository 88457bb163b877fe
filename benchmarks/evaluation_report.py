"""The evaluation report of docs/quality.md, made the way a user makes it: `keras-interp evaluate`
on a folder of image files with a folder of object masks.

    python benchmarks/evaluation_report.py [--images 64] [--out out/evaluation]

Trains the reference CNN on the built-in shapes (keras_interp.models.train_on_shapes, seed 0),
saves it, writes --images held-out shapes (seed 99) and their masks as PNG files, runs the command
with saliency, Integrated Gradients, occlusion, Grad-CAM, RISE and Kernel SHAP, prints the table
and copies the figure to docs/evaluation.png (with --docs).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402

METHODS = ("saliency", "integrated_gradients", "occlusion", "gradcam", "rise", "kernel_shap")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", default=os.path.join("out", "evaluation"))
    parser.add_argument("--docs", action="store_true", help="copy the figure to docs/evaluation.png")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.keras")
    if not os.path.exists(model_path):
        model, _ = ki.models.train_on_shapes(seed=0, verbose=0)
        model.save(model_path)
    data = ki.datasets.shapes(args.images, seed=99)
    images, masks = os.path.join(args.out, "images"), os.path.join(args.out, "masks")
    for folder in (images, masks):
        os.makedirs(folder, exist_ok=True)
    for i, (image, mask) in enumerate(zip(data.images, data.masks)):
        name = f"{i:03d}_{data.class_names[data.labels[i]]}.png"
        cv2.imwrite(os.path.join(images, name), cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        cv2.imwrite(os.path.join(masks, name), mask.astype(np.uint8) * 255)
    report = os.path.join(args.out, "report")
    command = ["keras-interp", "evaluate", model_path, images, "--masks", masks, "--out", report, "--overwrite"]
    for method in METHODS:
        command += ["--method", method]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"{time.perf_counter() - start:.0f} s for {args.images} images and {len(METHODS)} methods")
    if args.docs:
        shutil.copy(os.path.join(report, "evaluation.png"), os.path.join("docs", "evaluation.png"))


if __name__ == "__main__":
    sys.exit(main())
