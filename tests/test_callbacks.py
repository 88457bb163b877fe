import glob
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import summary


def _events(log_dir):
    """{tag: [(step, value tensor proto, metadata)]} from the logger's event files."""
    found = {}
    for path in sorted(glob.glob(os.path.join(log_dir, summary.SUBDIR, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, size=n)
    masks = np.zeros((n, 12, 12), bool)
    masks[:, 3:8, 3:8] = True
    return x, y, masks


def test_event_files_hold_the_expected_tags_steps_and_pictures(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, masks = _data()
    logger = ki.ExplanationLogger(x[:3], tmp_path, methods=("saliency", "cam", "smoothgrad"), labels=y[:3],
                                  masks=masks[:3], class_names=["a", "b", "c"])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    for i in range(3):
        (step, value), = events[summary.input_tag(i)]
        assert step == 0 and value.metadata.plugin_data.plugin_name == summary.PLUGIN_NAME
        assert value.metadata.data_class == 3  # DATA_CLASS_BLOB_SEQUENCE
        assert tf.io.decode_png(tf.make_ndarray(value.tensor)[0]).shape == (12, 12, 3)
        for method in ("saliency", "cam", "smoothgrad"):
            written = events[summary.map_tag(method, i)]
            assert [s for s, _ in written] == [0, 1]
            assert tf.io.decode_png(tf.make_ndarray(written[0][1].tensor)[0]).shape == (12, 12, 1)
        prediction = events[summary.prediction_tag(i)]
        assert [s for s, _ in prediction] == [0, 1] and prediction[0][1].metadata.data_class == 2  # TENSOR
        predicted, confidence, explained = tf.make_ndarray(prediction[-1][1].tensor)
        assert explained == y[i] and 0 < confidence < 1
    probabilities = model.predict(x[:3], verbose=0)
    np.testing.assert_allclose(
        tf.make_ndarray(events[summary.prediction_tag(2)][-1][1].tensor)[1], probabilities[2, y[2]], rtol=1e-5
    )
    for method in ("saliency", "cam", "smoothgrad"):
        grid = events[f"explanations/{method}"][0][1]
        shape = tf.io.decode_png(tf.make_ndarray(grid.tensor)[2]).shape
        assert shape == (3 * 16 + 4, 2 * 16 + 4, 3)
        assert [s for s, _ in events[f"explanations/{method}/pointing_game"]] == [0, 1]
        assert [s for s, _ in events[f"explanations/{method}/energy"]] == [0, 1]
    assert [s for s, _ in events["explanations/confidence"]] == [0, 1]


def test_freq_and_shared_log_dir_with_tensorboard_callback(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("gradcam",), freq=2, overlays=False)
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    model.fit(x, y, epochs=4, verbose=0, callbacks=[logger, board])
    events = _events(str(tmp_path))
    assert [s for s, _ in events[summary.map_tag("gradcam", 0)]] == [1, 3]
    assert "explanations/gradcam" not in events
    assert glob.glob(os.path.join(tmp_path, "train", "events.out.tfevents.*"))


def test_a_failing_method_warns_once_and_the_rest_go_on(tmp_path):
    class Broken(ki.Saliency):
        def explain(self, inputs, target=None):
            raise RuntimeError("boom")

    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=(Broken(model), "gradcam"))
    with pytest.warns(UserWarning, match="method 'broken' failed and is skipped.*RuntimeError: boom") as record:
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[logger])
    assert sum("failed" in str(w.message) for w in record) == 1
    assert len(history.history["loss"]) == 3
    events = _events(str(tmp_path))
    assert [s for s, _ in events[summary.map_tag("gradcam", 1)]] == [0, 1, 2]
    assert not any(tag.startswith(f"{summary.PLUGIN_NAME}/map/broken") for tag in events)


def test_cam_falls_back_to_gradcam_and_says_so(tmp_path):
    model = ki.reference_cnn((16, 16, 3), head="flatten", width=4)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("cam",))
    with pytest.warns(UserWarning, match="'cam' uses Grad-CAM"):
        model.fit(x, np.array([0, 1, 2, 3]), epochs=1, verbose=0, callbacks=[logger])
    assert isinstance(logger._explainers["cam"], ki.GradCAM)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((0, 12, 12, 3))), "empty batch"),
        (dict(images=np.zeros((12, 12, 3))), r"For a single image pass image\[None\]"),
        (dict(methods=("salincy",)), "Unknown method 'salincy'; choose from"),
        (dict(methods=()), "methods is empty"),
        (dict(freq=0), "freq must be an int >= 1"),
        (dict(labels=[0, 1]), r"labels must have shape \(3,\)"),
        (dict(masks=np.zeros((3, 5, 5))), r"masks must have shape \(3, 12, 12\)"),
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path, kwargs, message):
    args = dict(images=np.zeros((3, 12, 12, 3)), log_dir=tmp_path)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ki.ExplanationLogger(**args)


def test_wrong_image_size_or_labels_fail_before_training(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    x, y, _ = _data()
    logger = ki.ExplanationLogger(np.zeros((2, 16, 16, 3)), tmp_path)
    with pytest.raises(ValueError, match="Image height is 16 but the model expects 12"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    bad_labels = ki.ExplanationLogger(x[:2], tmp_path, labels=[0, 3])
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\] for this model; received \[0, 3\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[bad_labels])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _run(code, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_training_is_bit_identical_with_and_without_the_logger(tmp_path):
    out = _run(
        """
        import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras, tensorflow as tf, keras_interp as ki
        tf.config.experimental.enable_op_determinism()

        def train(with_logger):
            keras.utils.set_random_seed(1)
            inputs = keras.Input((12, 12, 3))
            h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
            h = keras.layers.Dropout(0.3)(h)
            h = keras.layers.GlobalAveragePooling2D()(h)
            model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
            model.compile("adam", "sparse_categorical_crossentropy")
            rng = np.random.default_rng(0)
            x = rng.uniform(size=(64, 12, 12, 3)).astype("float32"); y = rng.integers(0, 3, 64)
            data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=3).batch(8).repeat()
            callbacks = []
            if with_logger:
                callbacks.append(ki.ExplanationLogger(x[:4], "logs", methods=("saliency", "smoothgrad", "cam", "scorecam")))
            model.fit(data, epochs=3, steps_per_epoch=5, validation_data=(x[:16], y[:16]), verbose=0, callbacks=callbacks)
            return model.get_weights()

        a, b = train(False), train(True)
        assert all(np.array_equal(u, v) for u, v in zip(a, b)), "weights differ"
        assert os.path.isdir("logs/explanations")
        print("identical", len(a))
        """,
        tmp_path,
    )
    assert "identical" in out


def test_works_under_mirrored_strategy(tmp_path):
    out = _run(
        """
        import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, keras_interp as ki
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = ki.reference_cnn((16, 16, 3), width=4)
            model.compile("adam", "sparse_categorical_crossentropy")
        x = np.random.default_rng(0).uniform(size=(16, 16, 16, 3)).astype("float32")
        y = np.arange(16) % 4
        logger = ki.ExplanationLogger(x[:2], "logs", methods=("saliency", "cam", "occlusion"))
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[logger])
        print("replicas", strategy.num_replicas_in_sync, sorted(logger._explainers))
        """,
        tmp_path,
    )
    assert "replicas 2 ['cam', 'occlusion', 'saliency']" in out
    assert glob.glob(str(tmp_path / "logs" / "explanations" / "events.out.tfevents.*"))
