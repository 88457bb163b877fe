import glob
import json
import os
import subprocess
import sys
import textwrap
import warnings

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
            assert summary.decode_map(tf.make_ndarray(written[0][1].tensor)[0]).shape == (12, 12)
        prediction = events[summary.prediction_tag(i)]
        assert [s for s, _ in prediction] == [0, 1] and prediction[0][1].metadata.data_class == 2  # TENSOR
        predicted, p_predicted, explained, p_explained = tf.make_ndarray(prediction[-1][1].tensor)
        assert explained == y[i] and 0 < p_explained <= p_predicted < 1
    probabilities = model.predict(x[:3], verbose=0)
    last = tf.make_ndarray(events[summary.prediction_tag(2)][-1][1].tensor)
    np.testing.assert_allclose(last[[1, 3]], [probabilities[2].max(), probabilities[2, y[2]]], rtol=1e-5)
    assert last[0] == probabilities[2].argmax()
    for method in ("saliency", "cam", "smoothgrad"):
        grid = events[f"explanations/{method}"][0][1]
        shape = tf.io.decode_png(tf.make_ndarray(grid.tensor)[2]).shape
        assert shape == (3 * 16 + 4, 2 * 16 + 4, 3)
        assert [s for s, _ in events[f"explanations/{method}/pointing_game"]] == [0, 1]
        assert [s for s, _ in events[f"explanations/{method}/energy"]] == [0, 1]
        # Per image: the hit and the energy of the logged map (read back at 16 bits), whose means are the scalars.
        quality = events[summary.quality_tag(method)]
        assert [s for s, _ in quality] == [0, 1]
        assert json.loads(quality[0][1].metadata.plugin_data.content)["fields"] == ["pointing_game", "energy"]
        values = tf.make_ndarray(quality[-1][1].tensor)
        maps = np.stack([summary.decode_map(tf.make_ndarray(events[summary.map_tag(method, i)][-1][1].tensor)[0])
                         for i in range(3)])
        np.testing.assert_array_equal(values[:, 0], ki.metrics.pointing_hits(maps, masks[:3]))
        np.testing.assert_allclose(values[:, 1], ki.metrics.energy_in_mask(maps, masks[:3]), atol=1e-3)
        for k, metric in enumerate(("pointing_game", "energy")):
            scalar = float(tf.make_ndarray(events[f"explanations/{method}/{metric}"][-1][1].tensor))
            assert scalar == pytest.approx(values[:, k].mean(), rel=1e-5)
    assert [s for s, _ in events["explanations/confidence"]] == [0, 1]


def test_faithfulness_scalars_equal_the_metrics_on_the_final_weights(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    logger = ki.ExplanationLogger(x[:3], tmp_path, methods=("saliency", "gradcam"), labels=y[:3], faithfulness=5,
                                  overlays=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    for method, explainer in (("saliency", ki.Saliency(model)), ("gradcam", ki.GradCAM(model))):
        maps = explainer.explain(x[:3], target=y[:3])
        for metric, fn in (("deletion_auc", ki.metrics.deletion_auc), ("insertion_auc", ki.metrics.insertion_auc)):
            written = events[f"explanations/{method}/{metric}"]
            assert [s for s, _ in written] == [0, 1]
            want = fn(model, x[:3], maps, target=y[:3], steps=5)
            assert float(tf.make_ndarray(written[-1][1].tensor)) == pytest.approx(want.mean(), rel=1e-5)
            # Each image's value, for the dashboard to sort by: one (images, measures) tensor per epoch.
            (step, quality) = events[summary.quality_tag(method)][-1]
            fields = json.loads(events[summary.quality_tag(method)][0][1].metadata.plugin_data.content)["fields"]
            assert step == 1 and fields == ["deletion_auc", "insertion_auc", "road_morf", "road_lerf"]
            np.testing.assert_allclose(tf.make_ndarray(quality.tensor)[:, fields.index(metric)], want, rtol=1e-5)
        for order in ("morf", "lerf"):
            written = events[f"explanations/{method}/road_{order}"]
            want = ki.metrics.road(model, x[:3], maps, target=y[:3], order=order)
            assert [s for s, _ in written] == [0, 1]
            assert float(tf.make_ndarray(written[-1][1].tensor)) == pytest.approx(want.mean(), rel=1e-5)
    assert not any(tag.endswith(("_auc", "_morf", "_lerf")) for tag in _events_of_default_logger(tmp_path / "plain", model, x, y))


def _events_of_default_logger(log_dir, model, x, y):
    logger = ki.ExplanationLogger(x[:2], log_dir, methods=("saliency",), overlays=False)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    return _events(str(log_dir))


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


# ---- The logger's cost: by default it keeps within a share of the training time


class _Clock:
    """A fake clock for the logger: time moves only when the test says (no flaky timing)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Train(keras.callbacks.Callback):
    """Listed before the logger: each epoch's training takes `seconds` on the fake clock;
    `stop` sets model.stop_training after that epoch, as EarlyStopping does."""

    def __init__(self, clock, seconds, stop=None):
        super().__init__()
        self.clock, self.seconds, self.stop = clock, seconds, stop

    def on_epoch_end(self, epoch, logs=None):
        self.clock.now += self.seconds
        if epoch == self.stop:
            self.model.stop_training = True


def _costed_fit(tmp_path, epoch_seconds, log_seconds, epochs, stop=None, fits=1, **kwargs):
    """Fit the tiny CNN (`fits` times) with a logger whose real logs take log_seconds(i) seconds
    (i-th log) and whose epochs take epoch_seconds, on a fake clock; returns (logger, budget
    warnings, events)."""
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    clock = _Clock()
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("saliency",), overlays=False, **kwargs)
    logger._clock = clock
    real_log = logger.log

    def log(step):
        real_log(step)
        clock.now += log_seconds(len(logger.logged_epochs))

    logger.log = log
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(fits):
            history = model.fit(x, y, epochs=epochs, verbose=0, callbacks=[_Train(clock, epoch_seconds, stop), logger])
            assert len(history.history["loss"]) == (epochs if stop is None else stop + 1)  # not cut short
    budget = [str(w.message) for w in record if "budget" in str(w.message)]
    return logger, budget, _events(str(tmp_path))


def _first_slow(first, then):
    return lambda i: first if i == 0 else then


def test_by_default_slow_logs_skip_epochs_to_stay_within_the_budget_and_say_so_once(tmp_path):
    # Epochs of 2 s; logs of 1 s (the first 2.5 s, with tracing): 10% of training allows one
    # log per 10 s of training, after paying for the first.
    logger, budget, events = _costed_fit(tmp_path, 2.0, _first_slow(2.5, 1.0), epochs=60)
    logged = logger.logged_epochs
    assert logged[0] == 0 and logged[-1] == 59 and len(logged) >= 4
    assert logger.training_time == 120.0 and logger.logging_time == 2.5 + (len(logged) - 1) * 1.0
    assert logger.logging_time <= 0.1 * logger.training_time
    # Spread out: at least a log's cost / budget (10 s, 5 epochs) of training between logs.
    assert all(b - a >= 5 for a, b in zip(logged[1:-1], logged[2:-1]))
    assert [s for s, _ in events[summary.map_tag("saliency", 0)]] == logged
    assert len(budget) == 1
    assert budget[0].startswith("ExplanationLogger: one log takes 2.50 s and training 2.00 s an epoch, so to keep "
                                "within budget=0.1 of the training time")
    assert "epoch 2 is not logged" in budget[0] and "freq=1" in budget[0] and "budget=None" in budget[0]


def test_first_and_last_epochs_are_logged_even_over_budget_and_an_early_stop_is_the_last(tmp_path):
    logger, budget, _ = _costed_fit(tmp_path / "a", 1.0, _first_slow(3.0, 3.0), epochs=10)
    assert logger.logged_epochs == [0, 9] and len(budget) == 1
    logger, budget, _ = _costed_fit(tmp_path / "b", 1.0, _first_slow(3.0, 3.0), epochs=10, stop=4)
    assert logger.logged_epochs == [0, 4]


@pytest.mark.parametrize("kwargs", [dict(freq=1), dict(budget=None)])
def test_freq_1_or_no_budget_logs_every_epoch_whatever_the_cost(tmp_path, kwargs):
    logger, budget, events = _costed_fit(tmp_path, 0.01, _first_slow(5.0, 3.0), epochs=6, **kwargs)
    assert logger.logged_epochs == [0, 1, 2, 3, 4, 5] and budget == []
    assert [s for s, _ in events[summary.map_tag("saliency", 1)]] == [0, 1, 2, 3, 4, 5]
    assert logger.logging_time == 5.0 + 5 * 3.0 and logger.training_time == pytest.approx(0.06)


def test_logs_cheap_against_the_epochs_are_all_kept_in_every_fit(tmp_path):
    logger, budget, _ = _costed_fit(tmp_path, 20.0, _first_slow(1.0, 0.5), epochs=8, fits=2)
    assert logger.logged_epochs == list(range(8)) * 2 and budget == []  # each fit has its own budget
    assert logger.training_time == 160.0 and logger.logging_time == 8 * 0.5


def test_a_failing_method_warns_once_and_the_rest_go_on(tmp_path):
    class Broken(ki.Saliency):
        def explain(self, inputs, target=None):
            raise RuntimeError("boom")

    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=(Broken(model), "gradcam"), freq=1)
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
    assert isinstance(logger._explainers["cam_as_gradcam"], ki.GradCAM)
    (step, value), = _events(str(tmp_path))[summary.map_tag("cam_as_gradcam", 0)]
    assert json.loads(value.metadata.plugin_data.content)["label"] == "Grad-CAM (cam fallback: no GAP head)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((0, 12, 12, 3))), "empty batch"),
        (dict(methods=("salincy",)), "Unknown method 'salincy'; choose from"),
        (dict(methods=()), "methods is empty"),
        (dict(freq=0), r"freq must be an int >= 1 \(log every freq epochs\) or None"),
        (dict(freq=1.5), "freq must be an int >= 1"),
        (dict(budget=0), r"budget must be None \(no limit\) or a share of training time in \(0, 1\]"),
        (dict(budget=1.5), "budget must be None"),
        (dict(budget=True), "budget must be None"),
        (dict(budget="10%"), "budget must be None"),
        (dict(labels=[0, 1]), r"labels must have shape \(3,\)"),
        (dict(masks=np.zeros((3, 5, 5))), r"masks must have shape \(3, 12, 12\)"),
        (dict(faithfulness=0), "faithfulness must be False, True or a number of steps >= 1; received 0"),
        (dict(faithfulness="yes"), "faithfulness must be False, True or a number of steps"),
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
    # One image without its batch axis reads as a batch of signals until the model says otherwise.
    single = ki.ExplanationLogger(np.zeros((12, 12, 3)), tmp_path)
    with pytest.raises(ValueError, match=r"For a single image pass image\[None\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[single])
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
                callbacks.append(ki.ExplanationLogger(x[:4], "logs", methods=("saliency", "smoothgrad", "cam", "scorecam",
                                                                             "class_model"), faithfulness=4, freq=1))
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


def test_works_under_mirrored_strategy_and_logs_the_single_device_maps(tmp_path):
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
        # The last epoch's maps, recomputed on one device from a plain copy of the final weights.
        plain = ki.reference_cnn((16, 16, 3), width=4)
        plain.set_weights(model.get_weights())
        np.save("single.npy", np.stack([ki.Saliency(plain).explain(x[:2]), ki.CAM(plain).explain(x[:2]),
                                        ki.Occlusion(plain).explain(x[:2])]))
        """,
        tmp_path,
    )
    assert "replicas 2 ['cam', 'occlusion', 'saliency']" in out
    events = _events(str(tmp_path / "logs"))
    single = np.load(tmp_path / "single.npy")
    for m, method in enumerate(("saliency", "cam", "occlusion")):
        for i in range(2):
            step, value = events[summary.map_tag(method, i)][-1]
            logged = summary.decode_map(tf.make_ndarray(value.tensor)[0])
            span = single[m, i].max() - single[m, i].min()
            assert step == 1 and np.abs(logged - single[m, i]).max() <= 2e-3 * span, (method, i)


# ---- The logger never breaks fit

def _fit(model, logger, x, y, epochs=3):
    history = model.fit(x, y, epochs=epochs, verbose=0, callbacks=[logger])
    assert len(history.history["loss"]) == epochs
    return _events(logger.log_dir)


def _conv_gap_dense(input_shape, filters, units, activation, seed=0):
    """Conv(relu) -> GAP -> Dense(units, activation); seed=None keeps the current random state."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(filters, 3, activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(h))


class _PoisonAt(keras.callbacks.Callback):
    """Sets every weight to NaN at the end of epoch `epoch` (before the logger runs)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


def test_nan_maps_and_scalars_of_a_diverged_run_are_skipped(tmp_path):
    model = tiny_cnn()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y, masks = _data()
    logger = ki.ExplanationLogger(x[:3], tmp_path, methods=("saliency", "cam", "occlusion", "scorecam"),
                                  masks=masks[:3], labels=y[:3], faithfulness=3, freq=1)
    with pytest.warns(UserWarning) as record:
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[_PoisonAt(1), logger])
    assert len(history.history["loss"]) == 3
    messages = [str(w.message) for w in record if "ExplanationLogger" in str(w.message)]
    assert sum("'saliency' gave NaN" in m for m in messages) == 1
    # Score-CAM's maps of a NaN model are all zero (every channel is constant), so they are
    # logged, but its faithfulness scalars are NaN: skipped with one warning each.
    assert sum("'scorecam' deletion_auc scalar is NaN" in m for m in messages) == 1
    events = _events(str(tmp_path))
    for method in ("saliency", "cam", "occlusion", "scorecam"):
        assert [s for s, _ in events[f"explanations/{method}/deletion_auc"]] == [0]
    for method in ("saliency", "cam", "occlusion"):
        assert [s for s, _ in events[summary.map_tag(method, 0)]] == [0]
        assert [s for s, _ in events[f"explanations/{method}/pointing_game"]] == [0]
    steps = [s for s, _ in events[summary.prediction_tag(0)]]
    assert steps == [0, 1, 2]
    predicted, p_predicted, explained, p_explained = tf.make_ndarray(events[summary.prediction_tag(0)][-1][1].tensor)
    assert np.isnan(predicted) and np.isnan(p_predicted) and explained == y[0] and np.isnan(p_explained)
    assert [s for s, _ in events["explanations/confidence"]] == [0]


def test_segmentation_scalar_and_four_channel_models(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Segmentation: (B, H, W, K) outputs need a callable target, asked for before the first batch.
    inputs = keras.Input((12, 12, 3))
    seg = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", activation="softmax")(inputs))
    seg.compile("adam", "sparse_categorical_crossentropy")
    x = rng.uniform(size=(4, 12, 12, 3)).astype("float32")
    ys = rng.integers(0, 2, size=(4, 12, 12))
    with pytest.raises(ValueError, match=r"not \(batch, classes\): pass ExplanationLogger\(\.\.\., target=callable\)"):
        seg.fit(x, ys, epochs=1, verbose=0, callbacks=[ki.ExplanationLogger(x[:2], tmp_path / "a")])
    logger = ki.ExplanationLogger(x[:2], tmp_path / "b", methods=("saliency", "gradcam", "occlusion"),
                                  target=lambda y: keras.ops.sum(y[..., 1], axis=(1, 2)))
    events = _fit(seg, logger, x, ys, epochs=2)
    assert [s for s, _ in events[summary.map_tag("gradcam", 1)]] == [0, 1]
    assert np.isnan(tf.make_ndarray(events[summary.prediction_tag(0)][0][1].tensor)).all()
    # One score per example, (B,).
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3)(inputs))
    scalar = keras.Model(inputs, keras.ops.squeeze(keras.layers.Dense(1)(h), -1))
    scalar.compile("adam", "mse")
    events = _fit(scalar, ki.ExplanationLogger(x[:2], tmp_path / "c", methods=("saliency", "gradcam")), x, rng.normal(size=4), 2)
    assert [s for s, _ in events[summary.map_tag("saliency", 0)]] == [0, 1]
    # Four channels (RGBA-like inputs): the pictures show RGB.
    rgba = _conv_gap_dense((12, 12, 4), filters=3, units=3, activation="softmax", seed=None)
    rgba.compile("adam", "sparse_categorical_crossentropy")
    x4 = rng.uniform(size=(4, 12, 12, 4)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        events = _fit(rgba, ki.ExplanationLogger(x4[:2], tmp_path / "d", methods=("cam",)), x4, np.arange(4) % 3, 2)
    png = tf.io.decode_png(tf.make_ndarray(events[summary.input_tag(0)][0][1].tensor)[0]).numpy()
    np.testing.assert_array_equal(png, np.round(x4[0, ..., :3] * 255).astype(np.uint8))


@pytest.mark.parametrize("broken", ["metrics", "rendering", "writing"])
def test_failures_outside_explain_are_skipped(tmp_path, monkeypatch, broken):
    from keras_interp import callbacks

    def boom(*args, **kwargs):
        raise RuntimeError(f"{broken} broke")

    if broken == "metrics":
        monkeypatch.setattr(callbacks.metrics, "pointing_hits", boom)
    elif broken == "rendering":
        monkeypatch.setattr(callbacks.render, "overlay", boom)
    else:
        monkeypatch.setattr(summary, "write_map", boom)
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, masks = _data()
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("saliency", "cam"), masks=masks[:2], freq=1)
    with pytest.warns(UserWarning, match=f"failed and is skipped: RuntimeError: {broken} broke") as record:
        events = _fit(model, logger, x, y)
    assert sum(f"{broken} broke" in str(w.message) for w in record) == 2  # once per method, not per epoch
    assert [s for s, _ in events["explanations/confidence"]] == [0, 1, 2]
    assert [s for s, _ in events["explanations/saliency/energy"]] == [0, 1, 2]
    if broken != "writing":
        assert [s for s, _ in events[summary.map_tag("saliency", 1)]] == [0, 1, 2]


def test_two_instances_of_one_class_and_a_thousand_images(tmp_path):
    model = _conv_gap_dense((8, 8, 1), filters=2, units=2, activation="softmax")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(size=(1001, 8, 8, 1)).astype("float32")
    logger = ki.ExplanationLogger(x, tmp_path, methods=(ki.Saliency(model), ki.SmoothGrad(model, samples=2), ki.Saliency(model)),
                                  overlays=False)
    events = _fit(model, logger, x[:4], np.array([0, 1, 0, 1]), epochs=1)
    assert summary.map_tag("saliency", 1000) == "keras_interp/map/saliency/1000"
    for name in ("saliency", "smoothgrad", "saliency_2"):
        assert [s for s, _ in events[summary.map_tag(name, 1000)]] == [0]
    with pytest.raises(ValueError, match="listed twice"):
        ki.ExplanationLogger(x[:2], tmp_path, methods=("saliency", "saliency"))


def test_binary_sigmoid_predictions_show_the_predicted_label(tmp_path):
    model = _conv_gap_dense((12, 12, 3), filters=3, units=1, activation="sigmoid")
    model.compile("adam", "binary_crossentropy")
    x, _, _ = _data()
    events = _fit(model, ki.ExplanationLogger(x[:3], tmp_path, methods=("saliency",)), x, np.array([0, 1] * 3), 1)
    p = model.predict(x[:3], verbose=0)[:, 0]
    for i in range(3):
        predicted, p_predicted, explained, _ = tf.make_ndarray(events[summary.prediction_tag(i)][0][1].tensor)
        assert predicted == float(p[i] > 0.5) and explained == predicted
        np.testing.assert_allclose(p_predicted, max(p[i], 1 - p[i]), rtol=1e-5)
        assert p_predicted >= 0.5


def test_only_the_chief_writes():
    from keras_interp.callbacks import is_chief

    class Resolver:
        def __init__(self, task_type, task_id, jobs):
            self.task_type, self.task_id, self._jobs = task_type, task_id, jobs

        def cluster_spec(self):
            return tf.train.ClusterSpec({job: ["localhost:1"] * n for job, n in self._jobs.items()})

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    assert is_chief(tf.distribute.get_strategy())
    assert is_chief(Strategy(Resolver("chief", 0, {"chief": 1, "worker": 2})))
    assert not is_chief(Strategy(Resolver("worker", 0, {"chief": 1, "worker": 2})))
    assert is_chief(Strategy(Resolver("worker", 0, {"worker": 2})))
    assert not is_chief(Strategy(Resolver("worker", 1, {"worker": 2})))
    assert not is_chief(Strategy(Resolver("evaluator", 0, {"worker": 2, "evaluator": 1})))


def test_class_model_pictures_one_per_class_per_logged_epoch(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data(8)
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("class_model", "saliency"), freq=2,
                                  class_names=["a", "b", "c"])
    model.fit(x, y, epochs=4, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    for c, name in enumerate(["a", "b", "c"]):
        written = events[summary.picture_tag("class_model", c)]
        assert [s for s, _ in written] == [1, 3]
        content = json.loads(written[0][1].metadata.plugin_data.content)
        assert content["kind"] == "class_model" and content["label"] == name and content["index"] == c
        assert tf.io.decode_png(tf.make_ndarray(written[-1][1].tensor)[0]).shape == (12, 12, 3)
    # The last picture is the class model of the final weights, scaled from the images' range.
    generator = logger._pictures["class_model"].generator
    want = generator.visualize([0, 1, 2], steps=logger._pictures["class_model"].steps, seed=0)
    low, high = generator.value_range
    got = tf.io.decode_png(tf.make_ndarray(events[summary.picture_tag("class_model", 1)][-1][1].tensor)[0]).numpy()
    np.testing.assert_allclose(got / 255.0, (want[1] - low) / (high - low), atol=1 / 255 + 1e-6)
    assert [s for s, _ in events["explanations/class_model"]] == [1, 3]


def test_class_model_classes_and_errors(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data(4)
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods="class_model", classes=[2])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    assert summary.picture_tag("class_model", 2) in events and summary.picture_tag("class_model", 0) not in events
    with pytest.raises(ValueError, match=r"class 5 is out of range: the model has 3 classes"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ki.ExplanationLogger(x[:2], tmp_path, methods="class_model",
                                                                              classes=[5])])
    with pytest.raises(ValueError, match="listed twice"):
        ki.ExplanationLogger(x[:2], tmp_path, methods=("class_model", ki.ClassModelVisualization(model)))
    for bad in ([], [1.7], "ab"):
        with pytest.raises(TypeError, match="classes must be an int or a non-empty sequence of ints"):
            ki.ExplanationLogger(x[:2], tmp_path, methods="class_model", classes=bad)


def test_default_methods_add_class_models_for_classifiers_only(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data(4)
    logger = ki.ExplanationLogger(x[:2], tmp_path / "a")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path / "a"))
    assert summary.picture_tag("class_model", 2) in events and summary.map_tag("cam", 0) in events
    inputs = keras.Input((12, 12, 3))
    seg = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    seg.compile("adam", "mse")
    logger = ki.ExplanationLogger(x[:2], tmp_path / "b", target=lambda o: keras.ops.sum(o[..., 0], axis=(1, 2)))
    with pytest.warns(UserWarning, match="default 'class_model' pictures are left out"):
        seg.fit(x, np.zeros((4, 12, 12, 2), "float32"), epochs=1, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path / "b"))
    assert summary.map_tag("saliency", 0) in events
    assert not any(tag.startswith("keras_interp/class_model") for tag in events)


# ---- Signals, several inputs and several outputs


def _conv1d(length=24, channels=2, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((length, channels))
    h = keras.layers.Conv1D(6, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(h))


def _png(value):
    return tf.io.decode_png(tf.make_ndarray(value.tensor)[0]).numpy()


def test_signals_are_logged_as_curves_with_their_map_as_one_row(tmp_path):
    model = _conv1d()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 24, 2)).astype("float32"), rng.integers(0, 3, 8)
    logger = ki.ExplanationLogger(x[:2], tmp_path, methods=("saliency", "cam", "occlusion"))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    picture = _png(events[summary.input_tag(0)][0][1])
    np.testing.assert_array_equal(picture, ki.images.plot_signal(x[0]))  # the curves, 256 px wide
    for method, explainer in (("saliency", ki.Saliency(model)), ("cam", ki.CAM(model)),
                              ("occlusion", ki.Occlusion(model))):
        logged = summary.decode_map(tf.make_ndarray(events[summary.map_tag(method, 1)][0][1].tensor)[0])
        assert logged.shape == (1, 24)  # one value per sample; the dashboard stretches it over the curves
        expected = explainer.explain(x[:2])[1]
        np.testing.assert_allclose(logged[0], expected, atol=1e-4 * (expected.max() - expected.min()))
    assert "explanations/saliency" in events  # the overlay grid: curves above a colour band


def test_signal_logger_refuses_what_needs_images(tmp_path):
    model = _conv1d()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.zeros((4, 24, 2), "float32"), np.zeros(4, int)
    with pytest.raises(ValueError, match=r"masks \(pointing game\) need \(N, H, W, C\) images"):
        ki.ExplanationLogger(x, tmp_path, masks=np.zeros((4, 24), bool))
    for kwargs, message in ((dict(faithfulness=True), "faithfulness=True needs a single-input image model"),
                            (dict(methods=("saliency", "class_model")), "'class_model' pictures need a single-input")):
        logger = ki.ExplanationLogger(x, tmp_path, **kwargs)
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])


def _two_in_two_out(seed=0):
    keras.utils.set_random_seed(seed)
    image, vector = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="vector")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    h = keras.layers.GlobalAveragePooling2D()(h)
    z = keras.layers.Concatenate()([h, vector])
    return keras.Model([image, vector], [keras.layers.Dense(3, activation="softmax", name="cls")(z),
                                         keras.layers.Dense(1, activation="sigmoid", name="aux")(z)])


def test_several_inputs_log_the_chosen_input_and_output(tmp_path):
    model = _two_in_two_out()
    model.compile("adam", ["sparse_categorical_crossentropy", "binary_crossentropy"])
    rng = np.random.default_rng(1)
    images, vectors = rng.uniform(size=(6, 8, 8, 1)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")
    logger = ki.ExplanationLogger({"vector": vectors[:3], "image": images[:3]}, tmp_path,
                                  methods=("saliency", "gradcam", "occlusion"), output="cls", input="image")
    model.fit([images, vectors], [rng.integers(0, 3, 6), rng.integers(0, 2, 6)], epochs=1, verbose=0,
              callbacks=[logger])
    events = _events(str(tmp_path))
    np.testing.assert_array_equal(_png(events[summary.input_tag(2)][0][1])[..., 0],
                                  ki.images.to_uint8(images[2])[..., 0])
    x = [images[:3], vectors[:3]]
    for method, maps in (("saliency", ki.Saliency(model, output="cls").explain(x)[0]),
                         ("gradcam", ki.GradCAM(model, output="cls").explain(x)),
                         ("occlusion", ki.Occlusion(model, output="cls", input="image").explain(x))):
        grey = _png(events[summary.map_tag(method, 0)][0][1])[..., 0]
        m = maps[0]
        span = m.max() - m.min()
        np.testing.assert_allclose(grey, np.round((m - m.min()) / (span if span > 0 else 1) * 255), atol=1)
    predicted = tf.make_ndarray(events[summary.prediction_tag(1)][0][1].tensor)
    probabilities = model.predict(x, verbose=0)[0][1]
    assert predicted[0] == probabilities.argmax() and np.isclose(predicted[1], probabilities.max(), atol=1e-5)
    with pytest.raises(ValueError, match=r"has 2 outputs \['cls', 'aux'\]; pass output="):
        model.fit([images, vectors], [rng.integers(0, 3, 6), rng.integers(0, 2, 6)], epochs=1, verbose=0,
                  callbacks=[ki.ExplanationLogger((images[:2], vectors[:2]), tmp_path, methods=("saliency",))])


def test_logged_maps_say_how_to_read_them_and_integrated_gradients_keeps_its_sign(tmp_path):
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y, _ = _data()
    logger = ki.ExplanationLogger(x[:3], tmp_path, methods=("integrated_gradients", "gradcam", "occlusion", "saliency"),
                                  labels=y[:3], overlays=False)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    events = _events(str(tmp_path))
    content = {m: json.loads(events[summary.map_tag(m, 0)][0][1].metadata.plugin_data.content)
               for m in ("integrated_gradients", "gradcam", "occlusion", "saliency")}
    assert {m: (c["signed"], c["clip"]) for m, c in content.items()} == {
        "integrated_gradients": (True, [62.0, 99.9]), "gradcam": (False, [0.0, 99.9]),
        "occlusion": (True, [0.0, 99.9]), "saliency": (False, [62.0, 99.9])}
    # IG's logged map is the signed channel sum of its attribution (completeness holds for it).
    attribution = ki.IntegratedGradients(model).attribute(x[:3], target=y[:3])
    for i in range(3):
        logged = summary.decode_map(tf.make_ndarray(events[summary.map_tag("integrated_gradients", i)][0][1].tensor)[0])
        want = attribution[i].sum(axis=-1)
        np.testing.assert_allclose(logged, want, atol=2e-4 * (want.max() - want.min()) + 1e-7)
    assert logged.min() < 0 < logged.max()
