import os
import subprocess
import sys

import numpy as np
import pytest

import keras_interp as ki
from keras_interp import metrics


def test_pointing_game_hits_misses_and_constant_maps():
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 1:3, 1:3] = True
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 2] = 1.0  # inside
    maps[1, 0, 0] = 1.0  # outside
    # maps[2] constant: points nowhere
    np.testing.assert_array_equal(metrics.pointing_hits(maps, masks), [True, False, False])
    assert metrics.pointing_game(maps, masks) == pytest.approx(1 / 3)


def test_pointing_game_resizes_small_maps_to_the_masks():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 4:, 4:] = True
    maps = np.array([[[0.0, 0.0], [0.0, 1.0]]])
    assert metrics.pointing_game(maps, masks) == 1.0


def test_energy_pointing_game():
    masks = np.zeros((2, 2, 2), bool)
    masks[:, 0, 0] = True
    maps = np.array([[[3.0, 1.0], [-5.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(metrics.energy_in_mask(maps, masks), [0.75, 0.0])
    assert metrics.energy_pointing_game(maps, masks) == pytest.approx(0.375)
    with pytest.raises(ValueError, match="2 maps but 1 masks"):
        metrics.energy_pointing_game(maps, masks[:1])


def test_shapes_are_deterministic_and_well_formed():
    a = ki.datasets.shapes(40, image_size=32, seed=3)
    b = ki.datasets.shapes(40, image_size=32, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, ki.datasets.shapes(40, image_size=32, seed=4).images)
    assert a.images.shape == (40, 32, 32, 3) and a.images.dtype == np.float32
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert a.masks.shape == (40, 32, 32) and a.masks.dtype == bool
    assert set(a.labels) == {0, 1, 2, 3} and a.class_names == ki.datasets.SHAPE_CLASSES
    fractions = a.masks.mean(axis=(1, 2))
    assert fractions.min() > 0 and fractions.mean() <= 0.08 and fractions.max() <= 0.12
    # The object differs from the background: pixels inside the mask are not the background's.
    inside = a.images[a.masks].reshape(-1, 3)
    assert inside.std(axis=0).max() > 0.1


def test_shapes_argument_errors():
    with pytest.raises(ValueError, match="n must be a positive int; received 0"):
        ki.datasets.shapes(0)
    with pytest.raises(ValueError, match="num_classes must be in"):
        ki.datasets.shapes(3, num_classes=9)


def test_photos_resized():
    images, names = ki.datasets.photos(image_size=32)
    assert images.shape == (4, 32, 32, 3) and names == ki.datasets.PHOTO_NAMES
    assert 0 <= images.min() and images.max() <= 1


def test_import_is_cheap_and_writes_nothing(tmp_path):
    code = "import sys, keras_interp; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert os.listdir(tmp_path) == []


def test_load_model_round_trip(tmp_path, images):
    from conftest import tiny_cnn

    model = tiny_cnn()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = ki.load_model(path)
    np.testing.assert_allclose(ki.Saliency(loaded).explain(images), ki.Saliency(model).explain(images), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="No model file at"):
        ki.load_model(tmp_path / "missing.keras")


def test_reference_cnn_heads():
    gap = ki.reference_cnn((32, 32, 3), num_classes=5)
    flat = ki.reference_cnn((32, 32, 3), head="flatten")
    assert gap.output_shape == (None, 5) and gap.get_layer("gap") is not None
    assert flat.get_layer("flatten") is not None
    assert ki.Scorer(gap).activation == "softmax"
    with pytest.raises(ValueError, match="head must be 'gap' or 'flatten'"):
        ki.reference_cnn(head="vit")
