"""The logger's inside view: "features" (channel images) and "top_patches" (each channel's
strongest patch among the logged images) every logged epoch, for the same channels."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import graph, summary, tags


def _pictures(log_dir, kind):
    """{index: [(step, picture (h, w, 3) uint8, label)]} of a picture kind."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, summary.SUBDIR, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                match = tags.PICTURE_TAG.match(value.tag)
                if match and match.group(1) == kind:
                    picture = tf.io.decode_png(tf.make_ndarray(value.tensor)[0]).numpy()
                    found.setdefault(int(match.group(2)), []).append((event.step, picture))
    return found


def test_features_and_top_patches_show_the_most_active_channels_every_epoch(tmp_path):
    model = tiny_cnn((16, 16, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    logger = ki.ExplanationLogger(x[:3], tmp_path, methods=("features", "top_patches"), freq=1)
    model.fit(x, np.arange(8) % 3, epochs=2, verbose=0, callbacks=[logger])
    inside = logger._pictures["features"]
    # The channels: conv2's four most active on the logged images when the first pictures were
    # made (after epoch 1), kept for epoch 2, the same for both kinds.
    assert inside.layer == "conv2" and logger._pictures["top_patches"].chosen == inside.chosen
    features = _pictures(str(tmp_path), "features")
    patches = _pictures(str(tmp_path), "top_patches")
    assert sorted(features) == sorted(patches) == [0, 1, 2, 3]
    for shown in (features, patches):
        assert all([step for step, _ in shown[i]] == [0, 1] for i in shown)
    assert features[0][0][1].shape == (16, 16, 3)
    # Each patch is a window of the logged image where its channel fires most (epoch 2's weights).
    _, (activations,) = graph.run(model, tf.constant(x[:3]), [graph.find_site(model, "conv2")], stop_after_taps=True)
    strongest = activations.numpy().max(axis=(1, 2))  # (images, channels)
    for index, channel in enumerate(inside.chosen):
        image = np.round(x[int(strongest[:, channel].argmax())] * 255)
        patch = patches[index][-1][1].astype(np.float64)
        h, w = patch.shape[:2]
        assert any(np.abs(image[i:i + h, j:j + w] - patch).max() <= 1
                   for i in range(17 - h) for j in range(17 - w)), channel


def test_inside_pictures_take_a_layer_through_an_instance_and_refuse_a_flat_layer(tmp_path):
    model = tiny_cnn((16, 16, 3))
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype("float32")
    from keras_interp.logger.inside import Features, TopPatches

    chosen = Features(model, x, generator=ki.FeatureVisualization(model, "conv1"))
    assert chosen.layer == "conv1" and len(chosen.channels()) == 4
    indices, pictures, labels = chosen.pictures(seed=0)
    assert indices == [0, 1, 2, 3] and pictures.shape == (4, 16, 16, 3) and 0 <= pictures.min() <= pictures.max() <= 1
    assert labels == [f"conv1 #{c}" for c in chosen.channels()]
    with pytest.raises(ValueError, match="spatial"):
        TopPatches(model, x, layer="predictions")
