"""Tiny models and data shared by the tests (inputs of 8x8 to 16x16 pixels)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (.ci/run: one worker per core) each worker computes on one core: two
    # workers that each spread every op over both cores only fight for them.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

# The logger's class models take 16 gradient-ascent steps in the tests instead of 100: the logger
# tests check where the pictures go and that they are the generator's (test_callbacks compares
# them with a run of the same steps); how good 100 steps make them is test_visualize's and the
# recipe bench's to judge.
from keras_interp.logger.methods import ClassModels  # noqa: E402

ClassModels.steps = 16


def tiny_cnn(input_shape=(12, 12, 3), num_classes=3, activation="softmax", seed=0, name=None):
    """conv-relu, pool, conv-relu, GAP, Dense: a CNN small enough to run in milliseconds."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or "tiny_cnn")


def linear_model(input_shape=(6, 5, 2), num_classes=3, seed=0):
    """f(x) = W.flatten(x) + b with known weights."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential(
        [keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes, name="linear")]
    )
    w = rng.normal(size=(int(np.prod(input_shape)), num_classes)).astype("float32")
    b = rng.normal(size=(num_classes,)).astype("float32")
    model.layers[-1].set_weights([w, b])
    return model, w, b


@pytest.fixture
def cnn():
    return tiny_cnn()


@pytest.fixture
def linear():
    return linear_model()


@pytest.fixture
def images():
    return np.random.default_rng(1).uniform(0, 1, size=(4, 12, 12, 3)).astype("float32")



# The longest files first. .ci/run hands each file whole to the next free worker (pytest-xdist
# --dist loadfile), in collection order: long files collected last (the model-zoo tiers sort at
# the end of the alphabet) left one worker idle for their last minutes while the other finished
# them. Started first, the short files fill in at the end.
_LONGEST_FIRST = ("test_zoo.py", "test_zoo_b.py", "test_cli.py", "test_callbacks.py", "test_tb_browser.py",
                  "test_tb_grid_browser.py", "test_evaluation.py", "test_vit.py", "test_mixed_precision.py",
                  "test_zoo_hub.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
