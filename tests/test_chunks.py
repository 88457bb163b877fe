"""The perturbation loops: every perturbed copy passes through the model once, none for padding,
and the loop's chunking never changes a result."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp import metrics


class CountImages(keras.layers.Layer):
    """Identity that adds the number of images it sees to a counter (read after the call)."""

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, x):
        self.seen.assign_add(tf.cast(tf.shape(x)[0], self.seen.dtype))
        return x


def counting_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    counter = CountImages(name="count")
    x = counter(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs), counter


def images_seen(counter, run):
    counter.seen.assign(0.0)
    run()
    return int(counter.seen.numpy())


# (run, model passes per example besides the perturbed copies, perturbations per example):
# counts with a remainder at 2 examples and batch_size 8 (4 perturbations per pass), where the
# loops used to pad the last pass to a full one.
CASES = {
    "smoothgrad": (lambda m, x: ki.SmoothGrad(m, samples=5, batch_size=8).explain(x), 1, 5),
    # The baseline's score too, for the completeness gap.
    "integrated_gradients": (lambda m, x: ki.IntegratedGradients(m, steps=7, batch_size=8).explain(x), 2, 7),
    # 8x8, patch 4, stride 1: 5 x 5 windows.
    "occlusion": (lambda m, x: ki.Occlusion(m, patch_size=4, stride=1, batch_size=8).explain(x), 1, 25),
    # 5 channels in "conv".
    "score_cam": (lambda m, x: ki.ScoreCAM(m, layer="conv", batch_size=8).explain(x), 1, 5),
    # steps + 1 points of the curve.
    "deletion": (lambda m, x: metrics.deletion_curve(m, x, np.ones((2, 8, 8)), steps=6, batch_size=8), 1, 7),
}


@pytest.mark.parametrize("name", CASES)
def test_each_perturbed_copy_passes_once(name):
    model, counter = counting_cnn()
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    run, passes, perturbations = CASES[name]
    run(model, x)  # the first call traces; count a later one
    # The clean batch (for the class and the reference score), then every copy once.
    assert images_seen(counter, lambda: run(model, x)) == 2 * passes + 2 * perturbations


# Plain, the shorter last chunk runs in the loop; under XLA (static shapes) after it. The curves
# have no jit_compile option.
@pytest.mark.parametrize("name, jit", [
    (name, jit) for name in ("smoothgrad", "integrated_gradients", "occlusion", "score_cam", "deletion")
    for jit in (None, True) if not (name == "deletion" and jit)
])
def test_remainder_chunk_gives_the_one_pass_result(name, jit):
    model, _ = counting_cnn()
    x = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype("float32")
    make = {
        "smoothgrad": lambda bs: ki.SmoothGrad(model, samples=5, batch_size=bs, jit_compile=jit).explain(x),
        "integrated_gradients": lambda bs: ki.IntegratedGradients(model, steps=7, batch_size=bs,
                                                                  jit_compile=jit).explain(x),
        "occlusion": lambda bs: ki.Occlusion(model, patch_size=4, stride=1, batch_size=bs, jit_compile=jit).explain(x),
        "score_cam": lambda bs: ki.ScoreCAM(model, layer="conv", batch_size=bs, jit_compile=jit).explain(x),
        "deletion": lambda bs: metrics.deletion_curve(model, x, np.arange(128.0).reshape(2, 8, 8), steps=6,
                                                      batch_size=bs),
    }[name]
    whole = make(1024)
    for batch_size in (2, 6, 8):  # 1, 3 and 4 perturbations per pass: remainders of every size
        np.testing.assert_allclose(make(batch_size), whole, rtol=1e-5, atol=1e-6)
