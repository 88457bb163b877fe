"""Which image patches drive each channel: dataset search with receptive-field crops.

    python examples/dataset_search.py [--epochs 8] [--images 3000] [--channels 6] [--top-k 5]
                                      [--out docs/dataset_search.png]

Trains the reference CNN on the built-in shapes, then streams held-out shapes images once through
the network truncated at the last ReLU of each stage (relu1_2, relu2_2, relu3_2). For each
layer it first ranks all channels by their strongest response, then keeps the top-k images of
the most active channels with the receptive-field crop under each one's maximum, beside the
deconvnet projection of that single unit (Zeiler and Fergus, 2014, Figure 2). Crops grow with
depth (5, 14 and 32 pixels of the 64x64 images), and so does what the channels respond to:
colours and edges, then corners and stripes, then parts of shapes.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_interp as ki  # noqa: E402

LAYERS = ["relu1_2", "relu2_2", "relu3_2"]


def titled(sheet, title, width):
    """The sheet under a title band, padded with white to `width`."""
    band = np.full((28, width, 3), 255, np.uint8)
    cv2.putText(band, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1, cv2.LINE_AA)
    body = np.full((sheet.shape[0], width, 3), 255, np.uint8)
    body[:, :sheet.shape[1]] = sheet
    return np.concatenate([band, body])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--out", default=os.path.join("docs", "dataset_search.png"))
    args = parser.parse_args()

    model, _ = ki.models.train_on_shapes(epochs=args.epochs)
    data = ki.datasets.shapes(args.images, seed=4321)  # images the model was not trained on
    # A tf.data pipeline of (image, label) pairs, streamed once per search.
    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    sheets = []
    for layer in LAYERS:
        start = time.perf_counter()
        search = ki.DatasetSearch(model, layer)
        ranking = search.search(dataset, top_k=1)  # every channel's single best image
        channels = np.argsort(-ranking.values[:, 0], kind="stable")[: args.channels]
        result = search.search(dataset, top_k=args.top_k, channels=channels.tolist(), keep_images=True)
        rf = result.receptive_field
        print(f"{layer}: receptive field {rf.size[0]}x{rf.size[1]}, jump {rf.jump[0]}; searched {args.images} images "
              f"twice in {time.perf_counter() - start:.1f} s")
        for c, values, labels in zip(result.channels, result.values, result.labels):
            names = ", ".join(data.class_names[i] for i in labels)
            print(f"  channel {c:2d}: top values {', '.join(f'{v:.2f}' for v in values)} ({names})")
        sheets.append((layer, rf, result.sheet(project=True)))
    width = max(sheet.shape[1] for _, _, sheet in sheets)
    picture = np.concatenate([
        titled(sheet, f"{layer}: top {args.top_k} of {args.images} images per channel, receptive field "
                      f"{rf.size[0]}x{rf.size[1]} (crop | deconvnet projection of the unit)", width)
        for layer, rf, sheet in sheets
    ])
    print(f"sheet written to {ki.images.save(args.out, picture)}")


if __name__ == "__main__":
    main()
