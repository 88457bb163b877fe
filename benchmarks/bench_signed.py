"""Grad-CAM++ and Score-CAM on signed feature layers: the evidence for what they do there.

    python benchmarks/bench_signed.py [--epochs 10]

The papers of Grad-CAM++ and Score-CAM assume non-negative features (a layer after a ReLU).
Models from other projects often explain a signed layer by default, such as a class-map head
(mini-Xception: a conv with one channel per class, global average pooling, softmax). This
trains one on the built-in shapes, then lowers its class maps by one constant, which changes no
prediction or probability (the softmax ignores a shift of every logit) but puts the logits below
-2 and most of the maps below 0. For both it explains held-out images for their predicted class
at the default layer and prints per method and reading:

- pointing game against the object masks (higher is better);
- how many maps are zero everywhere (an empty map for a confident prediction);
- how many maps point at counter-evidence: their hottest cell is where the signed Grad-CAM
  map (relu=False) is negative.

"as written" is the published formula applied to the signed features (Grad-CAM++'s alpha with
sum A in the denominator; Score-CAM's sum of raw activations); "keras-interp" is what the
library does (|sum A|; where Score-CAM's sum is negative everywhere, channels measured from
their minimum).
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_interp as ki  # noqa: E402
from keras_interp.explainers.chunks import spatial_axes  # noqa: E402
from keras_interp.explainers.cam import _weighted_sum  # noqa: E402


class GradCAMPlusPlusAsWritten(ki.GradCAMPlusPlus):
    """Grad-CAM++ with the signed sum of activations in alpha's denominator, as published."""

    def _maps(self, x, classes, score_fn):
        features, g = self._gradients(x, classes, score_fn)
        g2 = tf.square(g)
        axes = spatial_axes(g)
        denominator = 2.0 * g2 + tf.reduce_sum(features, axis=axes, keepdims=True) * g2 * g
        alpha = tf.math.divide_no_nan(g2, denominator)
        return tf.nn.relu(_weighted_sum(features, tf.reduce_sum(alpha * tf.nn.relu(g), axis=axes)))


class ScoreCAMAsWritten(ki.ScoreCAM):
    """Score-CAM's final sum over the raw activations, as published."""

    _combine = staticmethod(_weighted_sum)


def class_map_net(size, classes):
    """A mini-Xception-like net: separable convs with residual adds, class-map conv, GAP, softmax."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for filters in (32, 64):
        shortcut = keras.layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        shortcut = keras.layers.BatchNormalization(momentum=0.9)(shortcut)
        y = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization(momentum=0.9)(y)
        y = keras.layers.MaxPooling2D(3, strides=2, padding="same")(y)
        x = keras.layers.Add()([y, shortcut])
    x = keras.layers.Conv2D(classes, 3, padding="same", name="class_maps")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="class_map_net")


def score(maps, masks, counter):
    flat = maps.reshape(len(maps), -1)
    empty = ~(flat > 0).any(axis=1)
    hottest = flat.argmax(axis=1)
    against = counter.reshape(len(maps), -1)[np.arange(len(maps)), hottest] < 0
    return ki.metrics.pointing_game(maps, masks), int(empty.sum()), int((against & ~empty).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    data = ki.datasets.shapes(args.images, image_size=args.size, seed=1234)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    trained, _ = ki.models.train_on_shapes(class_map_net(args.size, 4), train_size=args.train_size,
                                           epochs=args.epochs, image_size=args.size, verbose=0)
    print(f"class_map_net trained in {time.perf_counter() - start:.0f} s")
    # The same function with every class map lowered by one constant: the softmax (every prediction
    # and probability) is unchanged, but the logits fall below -2 and the maps below 0.
    shifted = keras.models.clone_model(trained)
    shifted.set_weights(trained.get_weights())
    layer = shifted.get_layer("class_maps")
    logits = keras.Model(trained.inputs, trained.get_layer("class_maps").output)(data.images).numpy().mean(axis=(1, 2))
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias - (logits.max() + 3.0)])
    for name, model in (("class_map_net", trained), ("class_map_net, maps lowered (same probabilities)", shifted)):
        probabilities = model.predict(data.images, verbose=0)
        predicted = probabilities.argmax(axis=1)
        print(f"\n{name}: held-out accuracy {np.mean(predicted == data.labels):.2f}, median confidence "
              f"{np.median(probabilities.max(axis=1)):.3f}")
        signed = ki.GradCAM(model, relu=False)
        counter = signed.explain(data.images, target=predicted)
        features, logits = (np.asarray(t) for t in signed._features(data.images))
        print(f"default layer {signed.layer!r}: {100 * float(np.mean(features < 0)):.0f}% of its activations are "
              f"negative; explained logits {np.median(logits[np.arange(len(logits)), predicted]):+.1f} (median)")
        print(f"{'method':36s} {'pointing':>9s} {'empty maps':>11s} {'counter-evidence':>17s}")
        readings = [
            ("Grad-CAM", ki.GradCAM(model)),
            ("Grad-CAM++ as written", GradCAMPlusPlusAsWritten(model)),
            ("Grad-CAM++ keras-interp", ki.GradCAMPlusPlus(model)),
        ]
        for weighting in ("softmax", "increase"):
            readings += [
                (f"Score-CAM {weighting} as written", ScoreCAMAsWritten(model, weighting=weighting)),
                (f"Score-CAM {weighting} keras-interp", ki.ScoreCAM(model, weighting=weighting)),
            ]
        for label, explainer in readings:
            maps = explainer.explain(data.images, target=predicted)
            pointing, empty, against = score(maps, data.masks, counter)
            print(f"{label:36s} {pointing:9.3f} {empty:6d} / {len(maps):<3d} {against:10d} / {len(maps):<3d}")


if __name__ == "__main__":
    main()
