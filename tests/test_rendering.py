import cv2
import numpy as np
import pytest

from keras_interp import images


def test_normalize_minmax_and_constant():
    m = np.array([[1.0, 3.0], [5.0, 9.0]])
    np.testing.assert_allclose(images.normalize(m), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(images.normalize(np.full((2, 3, 3), 7.0)), 0)
    batch = images.normalize(np.stack([m, m * 10 + 4]))
    np.testing.assert_allclose(batch[0], batch[1])


def test_normalize_percentile_clips_outliers():
    m = np.zeros((10, 10))
    m[0, 0] = 1000.0
    m[5:, :] = 1.0
    out = images.normalize(m, method="percentile", percentile=98)
    assert out[0, 0] == 1.0 and out[9, 9] == 1.0  # the outlier no longer dwarfs the rest
    assert images.normalize(m)[9, 9] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="Unknown method 'zscore'"):
        images.normalize(m, method="zscore")


def test_heatmap_is_opencv_colormap_in_rgb():
    m = np.linspace(0, 1, 16).reshape(4, 4)
    rgb = images.heatmap(m, colormap="inferno")
    bgr = cv2.applyColorMap(np.round(m * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    with pytest.raises(ValueError, match="Unknown colormap 'rainbowz'"):
        images.heatmap(m, colormap="rainbowz")


@pytest.mark.parametrize(
    "image",
    [
        np.full((8, 6, 3), 0.5, np.float32),
        np.full((8, 6, 3), 128, np.uint8),
        np.full((8, 6), 0.5, np.float32),
        np.full((8, 6, 1), 128, np.uint8),
    ],
)
def test_overlay_blends_grey_and_rgb_float_and_uint8(image):
    m = np.random.default_rng(0).uniform(size=(4, 3))  # smaller than the image: resized
    only_image = images.overlay(image, m, alpha=0.0)
    assert only_image.shape == (8, 6, 3) and only_image.dtype == np.uint8
    assert np.all(np.abs(only_image.astype(int) - 128) <= 1)
    only_map = images.overlay(image, m, alpha=1.0)
    np.testing.assert_array_equal(only_map, images.heatmap(images.resize_map(m, (8, 6))))


def test_to_uint8_scales_out_of_range_floats():
    img = np.array([[-1.0, 1.0]]).astype(np.float32)
    np.testing.assert_array_equal(images.to_uint8(img)[..., 0], [[0, 255]])


def test_grid_layout_and_save_round_trip(tmp_path):
    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    sheet = images.grid([[red, red, red], [red, red, red]], col_labels=["a", "b", "c"], row_labels=["x", "y"], pad=2)
    assert sheet.shape == (20 + 2 * 12 + 2, 90 + 3 * 14 + 2, 3)
    path = images.save(tmp_path / "sub" / "sheet.png", sheet)
    back = cv2.imread(path)[..., ::-1]
    np.testing.assert_array_equal(back, sheet)
    np.testing.assert_array_equal(sheet[22, 92], [255, 0, 0])
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        images.grid([[red, red, red]], col_labels=["a", "b"])
