"""What each conv layer responds to: Zeiler and Fergus's Figure 2 on the built-in shapes.

    python examples/deconvnet.py [--epochs 8] [--channels 3] [--out out/deconvnet]

Trains the reference CNN on the shapes, then for a few channels of each conv layer (its output
after BatchNorm and ReLU) finds the held-out image that activates the channel most and shows the
image patch under that activation beside its deconvnet projection: the strongest activation
alone, unpooled with the recorded switches, rectified and passed through the transposed
convolutions down to pixels (ki.layers.DeconvStack; ki.Deconvnet gives the same image). The
patch is the projection's support, which is the unit's receptive field clipped to the image.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_interp as ki  # noqa: E402

LAYERS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2"]


def signed_picture(projection):
    """A signed RGB projection as a picture: zero is grey, the largest |value| is 0 or 1."""
    scale = np.abs(projection).max()
    return 0.5 + projection / (2 * scale) if scale > 0 else np.full_like(projection, 0.5)


def support_box(projection, image_size, min_side=8):
    """Rows and columns where the projection is non-zero (at least min_side pixels wide)."""
    touched = np.abs(projection).sum(-1) > 1e-6 * np.abs(projection).max()
    rows, cols = np.flatnonzero(touched.any(1)), np.flatnonzero(touched.any(0))
    box = []
    for found, size in ((rows, image_size[0]), (cols, image_size[1])):
        lo, hi = (found[0], found[-1] + 1) if found.size else (0, size)
        grow = max(0, min_side - (hi - lo))
        lo = max(0, min(lo - grow // 2, size - max(min_side, hi - lo)))
        box.append(slice(lo, min(size, max(hi, lo + min_side))))
    return tuple(box)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--out", default=os.path.join("out", "deconvnet"))
    args = parser.parse_args()

    model, _ = ki.models.train_on_shapes(epochs=args.epochs)
    data = ki.datasets.shapes(args.images, seed=1234)
    rows, row_labels = [], []
    for layer in LAYERS:
        stack = ki.layers.DeconvStack.from_model(model, layer)
        features, _ = stack.record(data.images)
        features = np.asarray(features)
        peak = features.reshape(len(features), -1, features.shape[-1]).max(axis=1)  # (images, channels)
        channels = np.argsort(peak.max(axis=0))[::-1][: args.channels]  # the most active channels
        row, gap = [], 0.0
        for channel in channels:
            best = int(peak[:, channel].argmax())
            image = data.images[best:best + 1]
            projection = stack.project(image, channel=int(channel))[0]
            same = ki.Deconvnet(model, layer=layer).attribute(image, target=int(channel))[0]
            gap = max(gap, float(np.abs(projection - same).max() / max(np.abs(same).max(), 1e-12)))
            box = support_box(projection, image.shape[1:3])
            row += [image[0][box], signed_picture(projection[box])]
            print(f"{layer} channel {channel:2d}: image {best:3d} ({data.class_names[data.labels[best]]}), "
                  f"activation {peak[best, channel]:.2f}, patch {box[0].stop - box[0].start}x{box[1].stop - box[1].start}")
        print(f"{layer}: DeconvStack vs ki.Deconvnet, largest relative difference {gap:.1e}")
        rows.append(row)
        row_labels.append(layer)
    col_labels = [f"{kind} {k + 1}" for k in range(args.channels) for kind in ("patch", "deconv")]
    sheet = ki.images.grid(rows, col_labels=col_labels, row_labels=row_labels, cell_size=(96, 96))
    print(f"sheet written to {ki.images.save(os.path.join(args.out, 'figure2.png'), sheet)}")


if __name__ == "__main__":
    main()
