import keras
import numpy as np
import pytest

import keras_interp as ki
from keras_interp.explainers.occlusion import window_positions
from conftest import linear_model


def _sum_model(shape):
    """score = sum of all input values (a linear model with unit weights)."""
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([np.ones((int(np.prod(shape)), 1), "float32"), np.zeros(1, "float32")])
    return model


def _reference_occlusion(x, patch, stride, baseline):
    """NumPy brute force for the sum model: each window's drop averaged over covering windows."""
    _, h, w, _ = x.shape
    rows, ph = window_positions(h, patch[0], stride[0])
    cols, pw = window_positions(w, patch[1], stride[1])
    total = np.zeros(x.shape[:3])
    count = np.zeros((h, w))
    for r in rows:
        for c in cols:
            occluded = x.copy()
            occluded[:, r:r + ph, c:c + pw] = baseline
            drop = x.sum(axis=(1, 2, 3)) - occluded.sum(axis=(1, 2, 3))
            total[:, r:r + ph, c:c + pw] += drop[:, None, None]
            count[r:r + ph, c:c + pw] += 1
    return total / count, count


def test_window_positions_cover_the_far_edge():
    assert window_positions(65, 8, 3)[0][-1] == 57
    assert window_positions(10, 4, 3) == ([0, 3, 6], 4)
    assert window_positions(10, 4, 2) == ([0, 2, 4, 6], 4)
    assert window_positions(5, 8, 3) == ([0], 5)


def test_non_square_input_every_pixel_covered_and_averaged():
    x = np.random.default_rng(0).uniform(size=(2, 65, 47, 1)).astype("float32")
    model = _sum_model((65, 47, 1))
    occ = ki.Occlusion(model, patch_size=8, stride=3, baseline=0.25, batch_size=64)
    maps = occ.explain(x, target=0)
    expected, count = _reference_occlusion(x, (8, 8), (3, 3), 0.25)
    assert count.min() >= 1
    _, _, cover = occ.windows(65, 47)
    np.testing.assert_array_equal(cover, count)
    assert maps.shape == (2, 65, 47)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-4)


def test_rectangular_patch_and_stride():
    x = np.random.default_rng(1).uniform(size=(1, 12, 9, 2)).astype("float32")
    maps = ki.Occlusion(_sum_model((12, 9, 2)), patch_size=(5, 2), stride=(4, 2)).explain(x, target=0)
    np.testing.assert_allclose(maps, _reference_occlusion(x, (5, 2), (4, 2), 0.0)[0], rtol=1e-4, atol=1e-5)


def test_one_pixel_occlusion_of_a_linear_model(linear):
    model, w, _ = linear
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 5, 2)).astype("float32")
    baseline = rng.normal(size=(6, 5, 2)).astype("float32")
    maps = ki.Occlusion(model, patch_size=1, stride=1, baseline=baseline).explain(x, target=1)
    expected = ((x - baseline) * w[:, 1].reshape(6, 5, 2)).sum(-1)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)


def test_chunking_does_not_change_results(cnn, images):
    small = ki.Occlusion(cnn, patch_size=3, stride=2, batch_size=5).explain(images)
    large = ki.Occlusion(cnn, patch_size=3, stride=2, batch_size=4096).explain(images)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)


def test_higher_means_more_important():
    # A model that only looks at the top-left quarter: occluding it lowers the score.
    model, _, _ = linear_model((8, 8, 1), num_classes=1)
    w = np.zeros((64, 1), "float32")
    w.reshape(8, 8)[:4, :4] = 1.0
    model.layers[-1].set_weights([w, np.zeros(1, "float32")])
    maps = ki.Occlusion(model, patch_size=2, stride=2).explain(np.ones((1, 8, 8, 1), "float32"))
    assert maps[0, :4, :4].min() > 0 and np.all(maps[0, 4:, 4:] == 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(patch_size=0), r"patch_size must be a positive int or a tuple of them, one per spatial axis; received 0"),
        (dict(stride=(1, 2, 3)), r"stride \(1, 2, 3\) has 3 entries but the input has 2 spatial axes"),
        (dict(stride=(1, 2, 3, 4)), "stride must be a positive int or a tuple"),
        (dict(patch_size=2.5), "patch_size must be"),
        (dict(patch_size=(4, 2), stride=3), r"stride \(3, 3\) is larger than patch_size \(4, 2\)"),
    ],
)
def test_bad_arguments(cnn, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ki.Occlusion(cnn, **kwargs)


def test_forward_pass_size_is_measured_once_per_shape_within_batch_size(monkeypatch):
    from conftest import tiny_cnn

    model = tiny_cnn((8, 8, 3))
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")
    measured = []
    original = ki.Occlusion._measure_chunk

    def counting(self, example):
        measured.append(example.shape)
        return original(self, example)

    monkeypatch.setattr(ki.Occlusion, "_measure_chunk", counting)
    # 64 windows x 16 images = 1024 perturbed images = 16 passes of 64: large enough to measure.
    explainer = ki.Occlusion(model, patch_size=1, stride=1, batch_size=64)
    maps = explainer.explain(x)
    (choice,) = explainer.chunk_choices.values()
    assert measured == [(1, 8, 8, 3)] and set(choice["seconds_per_image"]) <= {32, 64}
    assert choice["images"] in (32, 64) and all(t > 0 for t in choice["seconds_per_image"].values())
    # Kept for the model and shape: another call, another explainer of the model, no new measurement.
    ki.Occlusion(model, patch_size=1, stride=1, batch_size=64).explain(x)
    explainer.explain(x[::-1])
    assert len(measured) == 1
    # Small calls (fewer than 16 passes of batch_size) and other batch_size bounds are not measured
    # by a larger bound's choice.
    ki.Occlusion(model, patch_size=4, stride=4, batch_size=64).explain(x[:2])
    assert len(measured) == 1
    # The pass size only regroups the same perturbations: the maps equal those of fixed passes.
    fixed = ki.Occlusion(model, patch_size=1, stride=1, batch_size=64)
    monkeypatch.setattr(fixed, "_MEASURE_FROM_PASSES", 10**9)
    np.testing.assert_allclose(maps, fixed.explain(x), rtol=1e-5, atol=1e-6)


def test_the_measured_pass_size_is_the_largest_within_5_percent_of_the_fastest(monkeypatch):
    from conftest import tiny_cnn

    explainer = ki.Occlusion(tiny_cnn((8, 8, 3)), batch_size=256)
    # Two timed runs per size (the warm-up is not timed): run seconds for 32, 64, 128, 256 images.
    durations = iter([1.0, 1.0,  # 32 images: 0.031 s per image
                      1.9, 1.9,  # 64: 0.0297 s per image, the fastest
                      3.9, 3.9,  # 128: 0.0305, within 5% of the fastest: kept, being larger
                      9.0, 9.0])  # 256: 0.035, slower
    calls = [0]

    def fake_clock():  # start of a run reads 0, its end the run's duration
        calls[0] += 1
        return next(durations) if calls[0] % 2 == 0 else 0.0

    from keras_interp.explainers import jit, perturbation

    monkeypatch.setattr(perturbation.time, "perf_counter", fake_clock)
    monkeypatch.setattr(jit, "block", lambda out: out)
    choice = explainer._measure_chunk(np.zeros((1, 8, 8, 3), "float32"))
    assert sorted(choice["seconds_per_image"]) == [32, 64, 128, 256]
    assert choice["images"] == 128
