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


def test_long_labels_wrap_at_a_legible_size_and_the_legend_goes_below():
    cell = np.zeros((40, 96, 3), np.uint8)  # the demo sheet's cell width
    short = images.grid([[cell, cell]], col_labels=["a", "b"])
    title = "Blur Integrated Gradients"
    lines, scale = images._layout(title, 96)
    assert scale >= images._MIN_SCALE and len(lines) >= 2 and " ".join(lines) == title
    assert all(images._text_width(line, scale) <= 96 for line in lines)
    wrapped = images.grid([[cell, cell]], col_labels=["a", title])
    assert wrapped.shape[0] - short.shape[0] == (len(lines) - 1) * images._LINE  # the header grew to fit
    bar = images.colorbar(100, "jet", "low", "high")
    assert bar.shape[1] == 100
    # jet runs from blue to red along the bar
    assert bar[0, 2, 2] > bar[0, 2, 0] and bar[0, -3, 0] > bar[0, -3, 2]
    with_legend = images.grid([[cell, cell]], col_labels=["a", "b"], legend=bar)
    assert with_legend.shape[0] == short.shape[0] + bar.shape[0] + 4
    np.testing.assert_array_equal(with_legend[-bar.shape[0]:, 4:104], bar)
    assert images._layout("Integratedgradientsxx", 60)[1] == images._MIN_SCALE  # never below legible


# --- 1-D and 3-D renderings -------------------------------------------------------------------


def _jet_values(pixels):
    """Invert the jet colormap: each RGB pixel -> the [0, 1] value whose colour is nearest."""
    lut = images.heatmap(np.linspace(0, 1, 256)[None]).reshape(256, 3).astype(int)
    flat = pixels.reshape(-1, 3).astype(int)
    index = np.argmin(((flat[:, None, :] - lut[None]) ** 2).sum(-1), axis=1)
    return (index / 255.0).reshape(pixels.shape[:-1])


def test_band_shape_dtype_and_default_width():
    out = images.band(np.sin(np.linspace(0, 6, 100)), np.arange(100.0))
    assert out.shape == (96 + 24, 256, 3) and out.dtype == np.uint8
    two = images.band(np.zeros((300, 2)), np.ones(300), height=40, band_height=10)
    assert two.shape == (50, 300, 3)  # longer than 256 samples: one column per sample
    rng = np.random.default_rng(0)
    long = images.band(rng.normal(size=(1000, 3)), rng.uniform(size=1000), width=200)
    assert long.shape == (120, 200, 3)


@pytest.mark.parametrize("i", [3, 8, 12])
def test_band_half_pixel_alignment(i):
    m = np.zeros(16)
    m[i] = 1.0
    out = images.band(np.zeros(16), m, width=256)
    values = _jet_values(out[96 + 12])  # one row of the band
    hottest = np.flatnonzero(values == values.max())
    expected = round((i + 0.5) * 16 - 0.5)
    assert abs(hottest.mean() - expected) <= 1, (hottest, expected)


def test_band_signal_and_band_line_up():
    s = np.zeros(16)
    s[5] = 1.0
    out = images.band(s, s, width=256)
    dark = out[:96].astype(int).sum(-1) < 600
    top = np.flatnonzero(dark.any(axis=1))[0]  # first row the curve reaches: its peak
    peak_columns = np.flatnonzero(dark[top])
    values = _jet_values(out[100])
    assert abs(peak_columns.mean() - np.flatnonzero(values == values.max()).mean()) <= 1
    assert abs(peak_columns.mean() - 87.5) <= 1  # (5 + 0.5) * 16 - 0.5
    assert top <= 5  # the 4 px margin, plus antialiasing


def test_band_polyline_drawn_where_expected():
    s = np.r_[np.ones(32), np.zeros(32)]  # high on the first half, low on the second
    out = images.band(s, np.ones(64), width=256)
    top = out[:96].astype(int).sum(-1)
    dark = top < 600
    assert dark[:48, :100].any() and not dark[48:, :100].any()  # left: upper half only
    assert dark[48:, 156:].any() and not dark[:48, 156:].any()  # right: lower half only
    assert (top[12:, :100] == 765).all() and (top[:84, 156:] == 765).all()  # away from the line: white


def test_band_channels_get_distinct_colours():
    s = np.stack([np.ones(64), np.zeros(64)], axis=1)
    out = images.band(s, np.ones(64), width=64)
    upper = out[:48].reshape(-1, 3)
    lower = out[48:96].reshape(-1, 3)
    c0 = upper[upper.astype(int).sum(-1) == upper.astype(int).sum(-1).min()][0]
    c1 = lower[lower.astype(int).sum(-1) == lower.astype(int).sum(-1).min()][0]
    assert not np.array_equal(c0, c1)


def test_band_constant_signal_is_a_flat_middle_line():
    out = images.band(np.full((50, 2), 3.0), np.full(50, 7.0))
    dark_rows = np.flatnonzero((out[:96].astype(int).sum(-1) < 600).any(axis=1))
    assert dark_rows.size and abs(dark_rows.mean() - 47.5) <= 1
    assert (_jet_values(out[100]) == 0).all()  # constant map: normalised to zeros


def test_band_errors_name_received_and_expected_shapes():
    with pytest.raises(ValueError, match=r"map of shape \(16,\).*received shape \(15,\)"):
        images.band(np.zeros(16), np.zeros(15))
    with pytest.raises(ValueError, match=r"map of shape \(16,\).*received shape \(16, 1\)"):
        images.band(np.zeros((16, 2)), np.zeros((16, 1)))
    with pytest.raises(ValueError, match=r"signal \(L,\) or \(L, C\).*received shape \(2, 3, 4\)"):
        images.band(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"received shape \(0,\)"):
        images.band(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="signal has 1 non-finite"):
        images.band(np.r_[0.0, np.nan, 1.0], np.zeros(3))
    with pytest.raises(ValueError, match="map_ has 1 non-finite"):
        images.band(np.zeros(3), np.r_[0.0, np.inf, 1.0])
    with pytest.raises(ValueError, match="width must be a positive integer"):
        images.band(np.zeros(3), np.zeros(3), width=0)


def test_slices_shape_labels_and_picks():
    vol = np.random.default_rng(0).uniform(size=(20, 16, 16, 1)).astype(np.float32)
    out = images.slices(vol, np.random.default_rng(1).uniform(size=(20, 16, 16)), num=8)
    assert out.dtype == np.uint8 and out.shape == (20 + 16 + 8, 8 * 20 + 4, 3)
    few = images.slices(np.zeros((3, 10, 12)), num=8)  # D <= num: every slice, no map
    assert few.shape == (20 + 10 + 8, 3 * 16 + 4, 3)
    big = images.slices(np.zeros((5, 8, 8, 3), np.uint8), np.ones((5, 4, 4)), num=2, cell_size=(32, 32))
    assert big.shape == (20 + 32 + 8, 2 * 36 + 4, 3)


def test_slices_picks_first_and_last_evenly(monkeypatch):
    seen = {}
    real_grid = images.grid

    def spy(cells, col_labels=None, **kwargs):
        seen["labels"] = col_labels
        return real_grid(cells, col_labels=col_labels, **kwargs)

    monkeypatch.setattr(images, "grid", spy)
    images.slices(np.zeros((20, 8, 8)), num=4)
    assert seen["labels"] == ["d=0", "d=6", "d=13", "d=19"]


def test_slices_normalise_over_the_whole_volume():
    vol = np.full((8, 12, 12), 0.5, np.float32)
    m = np.zeros((8, 12, 12), np.float32)
    m[0] = 1.0
    m[1:7] = 0.75
    m[7] = 0.5
    out = images.slices(vol, m, alpha=1.0)
    cell = lambda j: out[20 + 4 + 6, 4 + j * 16 + 6]  # centre pixel of column j
    assert not np.array_equal(cell(0), cell(7))  # per-slice normalising would make both the same
    np.testing.assert_allclose(_jet_values(cell(0)[None]), 1.0)
    np.testing.assert_allclose(_jet_values(cell(7)[None]), 0.0)
    np.testing.assert_allclose(_jet_values(cell(3)[None]), 0.5, atol=0.01)


def test_slices_errors():
    with pytest.raises(ValueError, match=r"volume \(D, H, W\) or \(D, H, W, C\).*received shape \(4, 4\)"):
        images.slices(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"map \(D, H, W\) with D = 5.*received shape \(4, 8, 8\)"):
        images.slices(np.zeros((5, 8, 8)), np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="map_ has 1 non-finite"):
        images.slices(np.zeros((2, 2, 2)), np.r_[np.zeros(7), np.nan].reshape(2, 2, 2))
    with pytest.raises(ValueError, match="alpha must be in"):
        images.slices(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), alpha=2.0)


def test_render_dispatches_on_rank():
    rng = np.random.default_rng(0)
    image, image_map = rng.uniform(size=(8, 6, 3)), rng.uniform(size=(8, 6))
    expected = images.overlay(image, image_map, alpha=0.3)
    np.testing.assert_array_equal(images.render(image, image_map, alpha=0.3), expected)
    signal, signal_map = rng.uniform(size=(40, 2)), rng.uniform(size=40)
    expected = images.band(signal, signal_map, width=64)
    np.testing.assert_array_equal(images.render(signal, signal_map, width=64), expected)
    vol, vol_map = rng.uniform(size=(10, 8, 8, 1)), rng.uniform(size=(10, 8, 8))
    np.testing.assert_array_equal(images.render(vol, vol_map, num=3), images.slices(vol, vol_map, num=3))


def test_render_errors_name_supported_shapes():
    supported = r"image \(H, W, C\), a signal \(L, C\) or a volume \(D, H, W, C\); received shape \(5,\)"
    with pytest.raises(ValueError, match=supported):
        images.render(np.zeros(5), np.zeros(5))
    wrong_map = r"map \(D, H, W\) for inputs of shape \(4, 8, 8, 1\); received shape \(8, 8\)"
    with pytest.raises(ValueError, match=wrong_map):
        images.render(np.zeros((4, 8, 8, 1)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"map \(L,\) for inputs of shape \(16, 1\); received shape \(15,\)"):
        images.render(np.zeros((16, 1)), np.zeros(15))


def test_band_shrinking_keeps_a_one_sample_spike():
    s = np.zeros(1000)
    s[501] = 1.0  # between the samples a naive 10x decimation would keep
    out = images.band(s, s, width=100)
    dark = out[:96].astype(int).sum(-1) < 600
    assert dark[:8].any() and abs(np.flatnonzero(dark[:8].any(axis=0)).mean() - 50) <= 1
    values = _jet_values(out[100])
    assert np.argmax(values) == 50 and values[50] > 0.05  # INTER_AREA: a small bump, not lost
