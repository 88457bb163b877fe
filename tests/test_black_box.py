"""Black-box attribution (RISE, Sobol, HSIC, LIME, Kernel SHAP) against references written from
the papers' definitions: the expectation identities of RISE on a linear score, variance shares
of an additive score, exact Shapley values by enumeration, OpenCV's bilinear resize, Xplique's
HSIC estimator written out with its kernel matrices."""

import math

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp.explainers.rise import _Draws, rise_masks
from keras_interp.explainers.sensitivity import hsic_binary
from keras_interp.explainers.surrogate import grid_segments, superpixels


def score_model(shape, weights=None, bias=0.0, seed=0):
    """A model with one unsquashed output f(x) = w . x + bias: the score the black-box methods read
    (no class axis, so no probability is defined and "probability" reads the score too)."""
    inputs = keras.Input(shape)
    out = keras.layers.Dense(1, name="score")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, out)
    w = np.random.default_rng(seed).normal(size=(int(np.prod(shape)), 1)) if weights is None else weights
    model.get_layer("score").set_weights([np.asarray(w, np.float32).reshape(-1, 1), np.array([bias], np.float32)])
    return model


def one_cell_model(size, cell, cells):
    """A nonlinear score of the pixels of one grid cell only: relu(sum of the cell)^2 + 1."""
    inputs = keras.Input((size, size, 1))
    step = size // cells
    r, c = divmod(cell, cells)
    x = keras.layers.Cropping2D(((r * step, size - (r + 1) * step), (c * step, size - (c + 1) * step)))(inputs)
    x = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(keras.layers.Flatten()(x))
    x = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, keras.layers.Multiply()([x, x]))


def scores_of(model, x, masks, baseline=0.0):
    """f(x * M + (1 - M) * baseline) for each mask (N, H, W), in NumPy and model.predict."""
    copies = x[None] * masks[..., None] + (1 - masks[..., None]) * baseline
    return model.predict(copies, verbose=0, batch_size=512)[:, 0]


# ---------------------------------------------------------------------------------------- RISE


def test_rise_with_pixel_masks_is_the_expectation_identity():
    # E[f(x * M) M_i] / p = (1 - p) w_i x_i + p f(x) for iid Bernoulli(p) pixels and a linear f.
    size, p, n = 6, 0.3, 20000
    model = score_model((size, size, 1))
    w = model.get_layer("score").get_weights()[0].reshape(size, size)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 1)).astype("float32")
    masks = (np.random.default_rng(2).random((n, size, size)) < p).astype("float32")
    got = ki.RISE(model, masks=masks, p=p, score="logit").explain(x)
    for b in range(2):
        f = float((w * x[b, ..., 0]).sum())
        expected = (1 - p) * w * x[b, ..., 0] + p * f
        # Monte Carlo: five standard errors of the mean of f(x * M) M_i / p.
        samples = scores_of(model, x[b], masks)[:, None, None] * masks / p
        tolerance = 5 * samples.std(axis=0) / np.sqrt(n)
        assert (np.abs(got[b] - expected) < tolerance).all(), np.abs(got[b] - expected).max()


def test_rise_masks_are_the_papers_shifted_bilinear_grids():
    # Each mask: a binary grid upsampled (OpenCV's bilinear, half-pixel centres) to (s + 1) C with
    # C = ceil(H / s), cropped at the mask's own shift in [0, C).
    spatial, cells, n = (20, 14), (4, 3), 40
    draws = _Draws(n, spatial, cells, 0.5, seed=3)
    masks = rise_masks(n, spatial, cells=cells, p=0.5, seed=3)
    sizes = [-(-s // c) for s, c in zip(spatial, cells)]
    assert len(set(map(tuple, draws.shifts))) > 5 and (draws.shifts < np.array(sizes)).all()
    for i in range(n):
        up = cv2.resize(draws.grids[i], ((cells[1] + 1) * sizes[1], (cells[0] + 1) * sizes[0]),
                        interpolation=cv2.INTER_LINEAR)
        dy, dx = draws.shifts[i]
        np.testing.assert_allclose(masks[i], up[dy:dy + spatial[0], dx:dx + spatial[1]], atol=1e-5)


def test_rise_with_upsampled_masks_blurs_w_x_around_a_constant():
    # With w nonzero at one pixel q, E[f(x * M) M_i] / p = p f(x) + w_q x_q cov(M_i, M_q) / p: a
    # bump centred on q (the masks' covariance, a blur) over the constant p f(x).
    size, q = 24, (11, 12)
    w = np.zeros((size, size, 1))
    w[q] = 2.0
    model = score_model((size, size, 1), weights=w)
    x = np.ones((1, size, size, 1), np.float32)
    rise = ki.RISE(model, masks=4000, cells=4, p=0.5, score="logit", seed=1)
    heat = rise.explain(x)[0]
    f = 2.0
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert max(abs(peak[0] - q[0]), abs(peak[1] - q[1])) <= 2, peak  # the bump is flat on top: noise moves it
    # Far from q (beyond two cells of 6 pixels) the masks are independent of M_q: the constant.
    far = np.hypot(*np.meshgrid(np.arange(size) - q[0], np.arange(size) - q[1], indexing="ij")) > 13
    assert abs(heat[far].mean() - 0.5 * f) < 0.05 and heat[far].std() < 0.08
    # The bump: w_q x_q var(M_q) / p at q, falling with distance.
    masks = rise_masks(4000, (size, size), cells=4, p=0.5, seed=1)
    np.testing.assert_allclose(heat[q] - 0.5 * f, f * masks[:, q[0], q[1]].var() / 0.5, rtol=0.15)
    assert heat[q] > heat[q[0], q[1] + 4] > heat[q[0], q[1] + 8] > heat[far].mean() - 0.05


def test_rise_reads_the_models_own_probabilities_and_streams_in_chunks(images):
    model = tiny_cnn()  # softmax head: f is its probability, not a softmax of it
    masks = rise_masks(50, (12, 12), cells=3, p=0.5, seed=0)
    classes = model.predict(images, verbose=0).argmax(axis=1)
    expected = np.stack([
        model.predict(images[b][None] * masks[..., None], verbose=0)[:, classes[b]][:, None, None] * masks
        for b in range(len(images))]).sum(axis=1) / (50 * 0.5)
    for batch_size in (256, 7):  # one chunk; chunks of one mask per image with a remainder
        got = ki.RISE(model, masks=50, cells=3, seed=0, batch_size=batch_size).explain(images)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------- Sobol


def test_sobol_total_and_first_order_agree_on_an_additive_score():
    # f(x * M) = sum_c M_c a_c with a_c the cell's sum of w x: Var = sum a_c^2 / 12, so both
    # indices of cell c are a_c^2 / sum a^2.
    size, cells = 16, 4
    model = score_model((size, size, 1), seed=4)
    w = model.get_layer("score").get_weights()[0].reshape(size, size)
    x = np.random.default_rng(5).uniform(0.5, 1, (1, size, size, 1)).astype("float32")
    a = (w * x[0, ..., 0]).reshape(cells, 4, cells, 4).sum(axis=(1, 3))
    share = a ** 2 / (a ** 2).sum()
    total = ki.SobolAttribution(model, grid=cells, nb_design=256).cell_values(x)[0]
    first = ki.SobolAttribution(model, grid=cells, nb_design=256, indices="first").cell_values(x)[0]
    np.testing.assert_allclose(total, share, atol=0.02)
    np.testing.assert_allclose(first, share, atol=0.04)
    assert (np.argsort(total.ravel()) == np.argsort(share.ravel())).mean() > 0.7


def test_sobol_and_hsic_give_all_the_mass_to_the_one_cell_a_model_reads():
    model = one_cell_model(12, cell=5, cells=3)
    x = np.random.default_rng(0).uniform(0.2, 1, (1, 12, 12, 1)).astype("float32")
    total = ki.SobolAttribution(model, grid=3, nb_design=64).cell_values(x)[0].ravel()
    assert abs(total[5] - 1) < 0.25 and np.abs(np.delete(total, 5)).max() == 0
    hsic = ki.HSICAttribution(model, grid=3, samples=256).cell_values(x)[0].ravel()
    assert hsic[5] > 20 * np.abs(np.delete(hsic, 5)).max()
    # The map is the cells resized bicubically to the input, as Xplique does.
    cells = ki.HSICAttribution(model, grid=3, samples=256).cell_values(x)
    expected = tf.image.resize(cells[..., None].astype("float32"), (12, 12), method="bicubic")[..., 0].numpy()
    np.testing.assert_allclose(ki.HSICAttribution(model, grid=3, samples=256).explain(x), expected,
                               rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_hsic_is_xpliques_estimator_on_the_same_masks():
    # Xplique: K_i = 1 + (0.5 - (m_i - m_i')^2), L = exp(-(y - y')^2 / (2 width^2)) with width the
    # median of the scores, HSIC_i = sum(HK_iH * (HLH)') / N; written out with its matrices.
    model = tiny_cnn(input_shape=(8, 8, 3))
    x = np.random.default_rng(3).uniform(0, 1, (1, 8, 8, 3)).astype("float32")
    hsic = ki.HSICAttribution(model, grid=2, samples=64, bandwidth=np.median, score="probability")
    masks = hsic.designs(4)
    upsampled = np.kron(masks.reshape(-1, 2, 2), np.ones((4, 4)))
    top = model.predict(x, verbose=0).argmax()
    y = model.predict(x * upsampled[..., None], verbose=0)[:, top].astype(np.float64)
    n = len(y)
    H = np.eye(n) - np.ones((n, n)) / n
    width = np.percentile(y, 50)
    L = np.exp(-((y[:, None] - y[None]) ** 2) / (2 * width ** 2))
    expected = []
    for i in range(4):
        K = 1 + (0.5 - (masks[:, i][:, None] - masks[:, i][None]) ** 2)
        expected.append(np.sum((H @ K @ H) * (H @ L @ H).T) / n)
    np.testing.assert_allclose(hsic.cell_values(x)[0].ravel(), expected, rtol=1e-4, atol=1e-9)
    # The kernel is built a block of rows at a time: any block size gives the same values.
    np.testing.assert_allclose(hsic_binary(y, masks, width, block=7), hsic_binary(y, masks, width), rtol=1e-12)


# -------------------------------------------------------------------------- LIME and Kernel SHAP


def exact_shapley(values, m):
    """Shapley values by the subset formula from v of every coalition (values[code], bit j of code
    set when segment j is kept): phi_i = sum_S |S|! (m - |S| - 1)! / m! (v(S + i) - v(S))."""
    phi = np.zeros(m)
    for code in range(2 ** m):
        size = bin(code).count("1")
        for i in range(m):
            if not code >> i & 1:
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                phi[i] += weight * (values[code | 1 << i] - values[code])
    return phi


def coalition_values(model, x, labels, m, baseline, cls):
    """v(S) for every coalition S of the m segments (indexed by bit code), one predict call."""
    codes = np.arange(2 ** m)
    kept = (codes[:, None] >> np.arange(m)) & 1  # (2^m, m)
    masks = kept[:, labels].astype(np.float32)  # (2^m, H, W)
    copies = x * masks[..., None] + (1 - masks[..., None]) * baseline
    return model.predict(copies, verbose=0, batch_size=512)[:, cls].astype(np.float64)


def test_kernel_shap_is_the_exact_shapley_value_by_enumeration_and_close_by_sampling():
    model = tiny_cnn(input_shape=(8, 8, 3), activation=None)
    x = np.random.default_rng(4).uniform(0, 1, (1, 8, 8, 3)).astype("float32")
    cls = int(model.predict(x, verbose=0).argmax())
    for cells, samples, tolerance in ((2, 14, 1e-4), (3, 400, 0.15)):
        labels = grid_segments((8, 8), cells)
        m = cells * cells
        v = coalition_values(model, x[0], labels, m, 0.5, cls)
        exact = exact_shapley(v, m)
        got = ki.KernelSHAP(model, segments=cells, samples=samples, baseline=0.5).explain(x)[0]
        values = np.array([got[labels == s][0] for s in range(m)])
        # Efficiency holds exactly either way.
        np.testing.assert_allclose(values.sum(), v[-1] - v[0], rtol=1e-4, atol=1e-5)
        assert np.abs(values - exact).max() <= tolerance * np.abs(exact).max() + 1e-5, (cells, values, exact)


def test_lime_and_kernel_shap_recover_each_segments_contribution_to_a_linear_score():
    size = 12
    model = score_model((size, size, 2), bias=0.7, seed=2)
    w = model.get_layer("score").get_weights()[0].reshape(size, size, 2)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 2)).astype("float32")
    b = 0.3
    labels = superpixels(x[0], 9)
    contribution = np.stack([np.bincount(labels.ravel(), weights=(w * (x[i] - b)).sum(-1).ravel())[labels]
                             for i in range(2)])
    own = np.stack([labels, labels])  # one's own superpixels, one per image
    exact = {"LIME alpha=0": ki.LIME(model, segments=own, samples=60, alpha=0.0, baseline=b),
             "Kernel SHAP": ki.KernelSHAP(model, segments=own, samples=40, baseline=b)}
    for name, explainer in exact.items():
        np.testing.assert_allclose(explainer.explain(x), contribution, atol=1e-4, err_msg=name)
    ridge = ki.LIME(model, segments=own, samples=500, baseline=b).explain(x)  # lime's Ridge(alpha=1)
    np.testing.assert_allclose(ridge, contribution, atol=0.1 * np.abs(contribution).max())


def test_seeds_fix_the_draws_and_a_map_does_not_depend_on_the_rest_of_the_batch(images):
    model = tiny_cnn()
    for make in (lambda s: ki.RISE(model, masks=40, cells=3, seed=s),
                 lambda s: ki.LIME(model, segments=3, samples=30, seed=s),
                 lambda s: ki.KernelSHAP(model, segments=3, samples=30, seed=s)):
        first = make(0).explain(images)
        np.testing.assert_array_equal(make(0).explain(images), first)
        assert not np.allclose(make(1).explain(images), first)
        np.testing.assert_allclose(make(0).explain(images[2:3]), first[2:3], rtol=1e-5, atol=1e-6)


def test_superpixels_follow_edges():
    # Two flat halves split off the grid's lines: no region straddles the edge.
    image = np.zeros((32, 32, 3), np.float32)
    image[:, 13:] = 1.0
    labels = superpixels(image, 16)
    assert labels.shape == (32, 32) and labels.dtype == np.int32 and 8 <= labels.max() + 1 <= 16
    assert not set(np.unique(labels[:, :13])) & set(np.unique(labels[:, 13:]))


def test_bad_inputs_get_clear_errors(images):
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"LIME with 9 segments needs samples >= 10"):
        ki.LIME(model, segments=3, samples=5).explain(images)
    with pytest.raises(ValueError, match=r"segments of shape \(5, 5\) match neither"):
        ki.KernelSHAP(model, segments=np.zeros((5, 5), int)).explain(images)
    with pytest.raises(ValueError, match=r"labels must be integers, one per pixel; received dtype float"):
        ki.LIME(model, segments=np.zeros((12, 12)))
    with pytest.raises(ValueError, match=r"segments must be an int .*; received 2.0"):
        ki.KernelSHAP(model, segments=2.0)
    with pytest.raises(ValueError, match=r"callable returned labels of shape \(3,\)"):
        ki.LIME(model, segments=lambda image: np.zeros(3, int)).explain(images)
    with pytest.raises(ValueError, match=r"nb_design must be a power of two .*; received 24"):
        ki.SobolAttribution(model, nb_design=24)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        ki.RISE(model, masks=np.full((4, 12, 12), 2.0))
    with pytest.raises(ValueError, match=r"score must be one of"):
        ki.HSICAttribution(model, score="prob")
    with pytest.raises(ValueError, match=r"grid \(13, 13\) exceeds"):
        ki.SobolAttribution(model, grid=13).explain(images)
    with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\]; received 'a'"):
        ki.RISE(model, p="a")
    with pytest.raises(ValueError, match=r"seed must be a non-negative int; received None"):
        ki.LIME(model, seed=None)
    with pytest.raises(ValueError, match=r"kernel_width must be a number in \(0, inf\]"):
        ki.LIME(model, kernel_width=None)
    with pytest.raises(ValueError, match=r"masks' mean is 0.200 but p=0.5"):
        ki.RISE(model, masks=np.full((4, 12, 12), 0.2))


def test_a_diverged_model_is_refused_and_a_constant_one_gets_zero_indices(images):
    broken = tiny_cnn()
    broken.set_weights([np.full_like(w, np.nan) for w in broken.get_weights()])
    for explainer in (ki.RISE(broken, masks=8, cells=3), ki.SobolAttribution(broken, grid=2, nb_design=2),
                      ki.LIME(broken, segments=2, samples=8)):
        with pytest.raises(ValueError, match=r"NaN or infinite scores .*has training diverged"):
            explainer.explain(images, target=0)
    # Scores that vary by float rounding only: no dependence, not a map of the noise.
    flat = score_model((12, 12, 3), weights=np.full(12 * 12 * 3, 1e-9), bias=3.0)
    assert not ki.HSICAttribution(flat, grid=3, samples=32).cell_values(images).any()
    assert not ki.SobolAttribution(flat, grid=3, nb_design=4).cell_values(images).any()
