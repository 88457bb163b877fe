"""ROAD, MuFidelity, infidelity and max-sensitivity against their definitions, NumPy references
and the identities of linear models."""

import os

import keras
import numpy as np
import pytest

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import metrics
from keras_interp.metrics.road import NEIGHBOUR_WEIGHTS, TOLERANCE, impute


def _neighbour_mean(image, i, j):
    """The definition: the weighted mean of pixel (i, j)'s neighbours inside the image."""
    total, weight = 0.0, 0.0
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            a, b = i + di, j + dj
            if (di or dj) and 0 <= a < image.shape[0] and 0 <= b < image.shape[1]:
                total = total + NEIGHBOUR_WEIGHTS[di + 1, dj + 1] * image[a, b].astype(np.float64)
                weight += NEIGHBOUR_WEIGHTS[di + 1, dj + 1]
    return total / weight


def _dense_imputation(x, removed):
    """The linear system written out and solved densely: sum_j w_ij (u_i - u_j) = 0 per removed i."""
    height, width, channels = x.shape
    points = np.argwhere(removed)
    index = -np.ones((height, width), int)
    index[removed] = np.arange(len(points))
    a, b = np.zeros((len(points), len(points))), np.zeros((len(points), channels))
    for n, (i, j) in enumerate(points):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                p, q, w = i + di, j + dj, NEIGHBOUR_WEIGHTS[di + 1, dj + 1]
                if w and 0 <= p < height and 0 <= q < width:
                    a[n, n] += w
                    if removed[p, q]:
                        a[n, index[p, q]] -= w
                    else:
                        b[n] += w * x[p, q]
    out = x.astype(np.float64).copy()
    out[removed] = np.linalg.solve(a, b)
    return out


def test_imputation_is_the_neighbours_weighted_mean_and_the_dense_solve():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 9, 7, 2)).astype("float32")
    removed = rng.uniform(size=(3, 9, 7)) < np.array([0.3, 0.7, 0.95])[:, None, None]
    got = impute(x, removed)
    want = np.stack([_dense_imputation(x[i], removed[i]) for i in range(3)])
    np.testing.assert_array_equal(got[~removed], x[~removed])  # kept pixels are untouched
    np.testing.assert_allclose(got, want, atol=1e-3)
    # A larger image with a hole 25 x 20 wide (coarse grids in the preconditioner): each removed
    # pixel is its neighbours' weighted mean to the documented tolerance of the value range.
    x = rng.uniform(size=(1, 40, 33, 3)).astype("float32")
    removed = rng.uniform(size=(1, 40, 33)) < 0.6
    removed[:, 5:30, 5:25] = True
    got = impute(x, removed)[0]
    gaps = [abs(got[i, j] - _neighbour_mean(got, i, j)).max() for i, j in np.argwhere(removed[0])]
    assert max(gaps) <= 2 * TOLERANCE * np.ptp(x), max(gaps)
    np.testing.assert_allclose(got, _dense_imputation(x[0], removed[0]), atol=1e-3)


def test_the_preconditioner_carries_residuals_by_the_transpose_of_its_interpolation():
    # CG needs a symmetric preconditioner: <finer(c), f> = <c, coarser(f)>, odd sizes included.
    from keras_interp.metrics.road import _coarser, _finer

    rng = np.random.default_rng(1)
    for height, width in ((8, 6), (9, 7)):
        c = rng.standard_normal((2, (height + 1) // 2, (width + 1) // 2)).astype("float32")
        f = rng.standard_normal((2, height, width)).astype("float32")
        fine, coarse = _finer(c, (height, width)).numpy(), _coarser(f).numpy()
        np.testing.assert_allclose((fine * f).sum(), (c * coarse).sum(), rtol=1e-5)
    # The interpolation is bilinear between cell centres: a linear ramp stays one inside.
    ramp = np.arange(6, dtype="float32")[None, :, None] * np.ones((1, 1, 4), "float32")
    np.testing.assert_allclose(_finer(ramp, (12, 8)).numpy()[0, 1:-1, 0], np.arange(10) / 2 + 0.25)


def test_constant_images_and_tiny_images_are_imputed_at_once():
    flat = np.full((1, 32, 32, 3), 0.7, "float32")
    removed = np.zeros((1, 32, 32), bool)
    removed[0, 4:28, 4:28] = True
    np.testing.assert_allclose(impute(flat, removed), flat, atol=1e-6)
    # 90% of 2 x 2 pixels rounds to all four: one is kept, so the system keeps its boundary.
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    curve = metrics.road_curve(model, np.arange(8, dtype="float32").reshape(2, 2, 2, 1), np.ones((2, 2, 2)))
    assert np.isfinite(curve).all()
    with pytest.raises(ValueError, match="image 0 has every pixel removed"):
        impute(flat, np.ones((1, 32, 32), bool))


def test_imputation_noise_is_relative_to_the_image_and_seeded():
    rng = np.random.default_rng(1)
    x = (50.0 * rng.uniform(size=(2, 24, 24, 3))).astype("float32")
    removed = rng.uniform(size=(2, 24, 24)) < 0.5
    clean, noisy = impute(x, removed), impute(x, removed, noise=0.05, seed=3)
    moved = (noisy - clean)[removed]
    assert np.abs((noisy - clean)[~removed]).max() == 0
    for i in range(2):
        assert np.std((noisy - clean)[i][removed[i]]) == pytest.approx(0.05 * x[i].std(), rel=0.1)
    np.testing.assert_array_equal(impute(x, removed, noise=0.05, seed=3), noisy)
    assert not np.array_equal(impute(x, removed, noise=0.05, seed=4), noisy) and moved.std() > 0


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_curve_matches_a_numpy_reference(linear, order):
    model, w, b = linear
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 6, 5, 2)).astype("float32")
    maps = rng.normal(size=(3, 6, 5))
    fractions = (0.0, 0.2, 0.5, 0.9)
    got = metrics.road_curve(model, x, maps, percentages=fractions, order=order, noise=0.0)
    top = (x.reshape(3, -1) @ w + b).argmax(axis=1)
    want = np.zeros((3, len(fractions)))
    for i in range(3):
        order_of = np.argsort(-maps[i].ravel(), kind="stable")  # no ties in a normal draw
        for k, fraction in enumerate(fractions):
            n = int(np.floor(fraction * 30 + 0.5))
            chosen = order_of[:n] if order == "morf" else order_of[30 - n:]
            removed = np.zeros(30, bool)
            removed[chosen] = True
            image = _dense_imputation(x[i], removed.reshape(6, 5))
            want[i, k] = _softmax(image.ravel() @ w + b)[top[i]]
    assert got.shape == (3, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-3)
    area = metrics.road(model, x, maps, percentages=fractions, order=order, noise=0.0)
    np.testing.assert_allclose(area, np.trapezoid(want, fractions, axis=1) / 0.9, atol=2e-3)


def _bright_square_model(size=12):
    """Two classes: logit_0 = 4 * (mean of the central 6x6 square - 0.5), logit_1 = 0."""
    region = np.zeros((size, size), bool)
    region[3:9, 3:9] = True
    model = keras.Sequential([keras.Input((size, size, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    kernel = np.zeros((size * size, 2), "float32")
    kernel[region.ravel(), 0] = 4.0 / region.sum()
    model.layers[-1].set_weights([kernel, np.array([-2.0, 0.0], "float32")])
    return model, region


def test_an_oracle_map_beats_a_random_one_in_both_orders_and_batches_change_nothing():
    model, region = _bright_square_model()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.uniform(size=(4, 12, 12, 1)) + region[None, ..., None]).astype("float32")  # a bright square
    oracle = np.repeat(region[None], 4, axis=0) + rng.uniform(0, 0.01, (4, 12, 12))
    random = rng.uniform(size=(4, 12, 12))
    kw = dict(target=0)
    morf = [metrics.road(model, x, m, order="morf", **kw) for m in (oracle, random)]
    lerf = [metrics.road(model, x, m, order="lerf", **kw) for m in (oracle, random)]
    assert (morf[0] < morf[1]).all() and (lerf[0] > lerf[1]).all(), (morf, lerf)
    assert morf[0].mean() < 0.3 and lerf[0].mean() > 0.8
    # An image's curve does not depend on the rest of its batch or on the pass size.
    whole = metrics.road_curve(model, x, random, **kw)
    single = np.concatenate([metrics.road_curve(model, x[i:i + 1], random[i:i + 1], **kw) for i in range(4)])
    np.testing.assert_allclose(single, whole, atol=1e-6)
    np.testing.assert_allclose(metrics.road_curve(model, x, random, batch_size=5, **kw), whole, atol=1e-6)


def test_mu_fidelity_of_gradient_x_input_on_a_linear_model_is_one(linear):
    model, w, b = linear
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 5, 2)).astype("float32")
    top = (x.reshape(3, -1) @ w + b).argmax(axis=1)
    attribution = x * w[:, top].T.reshape(3, 6, 5, 2)  # x * gradient, per channel
    maps = ki.GradientInput(model).explain(x)  # its sum over channels, as the explainer gives it
    for phi in (attribution, maps):
        np.testing.assert_allclose(metrics.mu_fidelity(model, x, phi, grid=3, samples=32), 1.0, atol=1e-5)
    # Pearson: unchanged by a positive scale, negated with the attributions; a random map is poor.
    np.testing.assert_allclose(metrics.mu_fidelity(model, x, -3.0 * maps, grid=3, samples=32), -1.0, atol=1e-5)
    noise = metrics.mu_fidelity(model, x, rng.normal(size=(3, 6, 5)), grid=3, samples=32)
    assert noise.shape == (3,) and noise.dtype == np.float32 and (np.abs(noise) < 0.6).all()
    # A score that never changes has no correlation: 0, not NaN.
    flat = keras.Sequential([keras.Input((6, 5, 2)), keras.layers.Flatten(), keras.layers.Dense(3)])
    flat.layers[-1].set_weights([np.zeros((60, 3), "float32"), np.arange(3, dtype="float32")])
    np.testing.assert_array_equal(metrics.mu_fidelity(flat, x, maps, samples=8), 0.0)


def test_infidelity_of_the_gradient_is_zero_and_matches_its_closed_form(linear):
    model, w, b = linear
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 2)).astype("float32")
    top = (x.reshape(2, -1) @ w + b).argmax(axis=1)
    gradient = w[:, top].T.reshape(2, 6, 5, 2)
    scores = np.abs(x.reshape(2, -1) @ w + b).max()
    for phi in (gradient, 5.0 * gradient, gradient.sum(axis=-1)):  # the optimal scale; a per-pixel map
        assert (metrics.infidelity(model, x, phi) <= 1e-9 * scores ** 2).all()
    # E over Gaussian I of (I.w - beta I.phi)^2 at the best beta: sigma^2 (|w|^2 - <w, phi>^2 / |phi|^2).
    phi = rng.normal(size=gradient.shape)
    got = metrics.infidelity(model, x, phi, samples=4000, noise=0.1)
    sigma = 0.1 * np.ptp(x.reshape(2, -1), axis=1)
    g, p = gradient.reshape(2, -1), phi.reshape(2, -1)
    want = sigma ** 2 * ((g * g).sum(1) - (g * p).sum(1) ** 2 / (p * p).sum(1))
    np.testing.assert_allclose(got, want, rtol=0.1)


def test_max_sensitivity_of_saliency_on_a_linear_model_is_zero(linear, images):
    model, w, b = linear
    x = np.random.default_rng(0).normal(size=(3, 6, 5, 2)).astype("float32")
    np.testing.assert_array_equal(metrics.max_sensitivity(ki.Saliency(model), x, radius=0.1, samples=4), 0.0)
    # Gradient x Input moves with x: |phi(x + d) - phi(x)| = |sum_c d w| <= r range sum_c |w|.
    explainer = ki.GradientInput(model)
    got = metrics.max_sensitivity(explainer, x, radius=0.05, samples=6)
    top = (x.reshape(3, -1) @ w + b).argmax(axis=1)
    for i in range(3):
        wi = w[:, top[i]].reshape(6, 5, 2)
        bound = 0.05 * np.ptp(x[i]) * np.linalg.norm(np.abs(wi).sum(-1)) / np.linalg.norm((x[i] * wi).sum(-1))
        assert 0 < got[i] <= bound * (1 + 1e-5)
    cnn = tiny_cnn()
    saliency = ki.Saliency(cnn)
    assert (metrics.max_sensitivity(saliency, images, radius=0.0, samples=2) == 0).all()
    assert (metrics.max_sensitivity(saliency, images, radius=0.05, samples=2) > 0).all()


def _diverged():
    model = tiny_cnn()
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([np.full_like(kernel, np.nan), bias])
    return model


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: metrics.road(_diverged(), x, np.ones((4, 12, 12))), "has training diverged"),
        (lambda m, x: metrics.max_sensitivity(ki.Saliency(_diverged()), x), "has training diverged"),
        (lambda m, x: ki.evaluate(m, x[..., :2]), "Image channels is 2 but the model expects 3"),
        (lambda m, x: ki.evaluate(m, x, methods=()), "methods is empty"),
        (lambda m, x: ki.evaluate(m, x, batch_size=0), "batch_size must be a positive int"),
        (lambda m, x: ki.evaluate(m, x, measures=()), "measures must be a sequence"),
        (lambda m, x: ki.evaluate(m, x, measures=("box_iou",)), "pass masks"),
        (lambda m, x: ki.evaluate(m, x, masks=np.zeros((4, 12, 12), bool)), r"4 masks are empty \(first: image 0"),
        (lambda m, x: metrics.road(m, x, np.ones((4, 12, 12)), order="best"), r"order must be one of \('morf', 'lerf'\)"),
        (lambda m, x: metrics.road(m, x, np.ones((4, 12, 12)), percentages=(0.5, 0.2)), "increasing fractions"),
        (lambda m, x: metrics.road(m, x, np.ones((4, 12, 12)), percentages=(0.5, 1.0)), r"in \[0, 1\)"),
        (lambda m, x: metrics.road(m, x, np.ones((4, 12, 12)), noise=-1), r"noise must be a number in \[0"),
        (lambda m, x: metrics.road_curve(m, x, np.full((4, 12, 12), np.nan)), "NaN or infinite"),
        (lambda m, x: metrics.mu_fidelity(m, x, np.ones((4, 12, 12)), subset=0), r"subset must be a number in \(0"),
        (lambda m, x: metrics.mu_fidelity(m, x, np.ones((3, 12, 12))), "3 maps but 4 inputs"),
        (lambda m, x: metrics.infidelity(m, x, np.ones((4, 12, 12, 2))), r"inputs' shape \(4, 12, 12, 3\)"),
        (lambda m, x: metrics.infidelity(m, x, np.ones((4, 12, 12)), samples=1), "samples must be an int >= 2"),
        (lambda m, x: metrics.max_sensitivity(m, x), "takes a keras_interp explainer"),
        (lambda m, x: metrics.max_sensitivity(ki.Saliency(m), x, radius=-0.1), r"radius must be a number in \[0"),
        (lambda m, x: impute(x, np.ones((4, 12, 11), bool)), r"removed mask \(B, H, W\)"),
    ],
)
def test_evaluation_errors(cnn, images, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(cnn, images)


def test_the_report_is_the_metrics_and_the_cli_writes_it_from_a_folder(tmp_path, capsys):
    import csv

    import cv2

    from keras_interp import cli

    model = tiny_cnn((16, 16, 3), num_classes=3)
    data = ki.datasets.shapes(6, image_size=16, seed=5)
    images = np.round(data.images * 255) / 255  # what PNG files hold
    images = images.astype("float32")
    masks = data.masks
    # One batch here (the command below streams batches of 4 and must agree); the references share
    # the report's pass size, so nothing is traced twice.
    report = ki.evaluate(model, images, methods=("saliency", "gradcam"), masks=masks, batch_size=6)
    assert report.measures == ["deletion", "insertion", "road_morf", "road_lerf", "mu_fidelity", "pointing_game",
                               "energy", "box_iou", "mask_iou", "localization_accuracy"]
    # Each column is the metric functions' value on the method's maps, for the top class.
    top = np.asarray(ki.Scorer(model)(images)).argmax(axis=1)
    maps = ki.GradCAM(model).explain(images, target=top)
    found = ki.localize(maps)
    iou = metrics.box_iou(found.boxes, metrics.mask_boxes(masks))
    kw = dict(target=top, batch_size=6)
    want = {"deletion": metrics.deletion_auc(model, images, maps, steps=16, **kw),
            "road_morf": metrics.road(model, images, maps, **kw),
            "road_lerf": metrics.road(model, images, maps, order="lerf", **kw),
            "mu_fidelity": metrics.mu_fidelity(model, images, maps, **kw),
            "energy": metrics.energy_in_mask(maps, masks), "box_iou": iou,
            "localization_accuracy": iou >= 0.5}
    for measure, values in want.items():
        np.testing.assert_allclose(report.per_image["gradcam"][measure], values, atol=1e-5, err_msg=measure)
    xs, mean_curve = report.curves["gradcam"]["deletion"]
    np.testing.assert_allclose(mean_curve, metrics.deletion_curve(model, images, maps, steps=16, **kw).mean(0),
                               atol=1e-6)
    assert xs[0] == 0 and xs[-1] == 1 and len(xs) == 17

    # The command: a folder of files and a folder of masks with their names, kept inside the
    # images' folder (where they are not read as images).
    folder, out = tmp_path / "images", tmp_path / "report"
    mask_folder = folder / "masks"
    mask_folder.mkdir(parents=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mask_folder / f"{i}.png"), mask.astype(np.uint8) * 255)
    model.save(tmp_path / "model.keras")
    argv = ["evaluate", tmp_path / "model.keras", folder, "--method", "saliency", "--method", "gradcam",
            "--masks", mask_folder, "--out", out, "--batch-size", "4", "--quiet", "--measure", "deletion",
            "--measure", "road_morf", "--measure", "box_iou"]
    assert cli.main([str(a) for a in argv]) == 0
    rows = list(csv.reader(open(out / "evaluation.csv")))
    assert rows[0][:3] == ["method", "images", "deletion (lower is better)"] and [r[:2] for r in rows[1:]] == [
        ["saliency", "6"], ["gradcam", "6"]]
    for measure in ("deletion", "road_morf", "box_iou"):
        column = next(i for i, name in enumerate(rows[0]) if name.startswith(measure + " "))
        assert float(rows[2][column]) == pytest.approx(report.mean("gradcam", measure), abs=1e-4), measure
    markdown = (out / "evaluation.md").read_text()
    assert "| gradcam | 6 |" in markdown and "none where the best is tied" in markdown
    figure = cv2.imread(str(out / "evaluation.png"))
    assert figure.shape == (2 * 260, 2 * 460, 3)  # deletion, ROAD MoRF; localization
    # A missing mask, a mask of another size, an unknown measure: usage errors, before any work.
    cv2.imwrite(str(mask_folder / "2.png"), np.ones((16, 20), np.uint8))
    capsys.readouterr()
    assert cli.main([str(a) for a in argv + ["--overwrite"]]) == 2
    assert "is 20x16 pixels but its image" in capsys.readouterr().err
    os.remove(mask_folder / "3.png")
    capsys.readouterr()
    assert cli.main([str(a) for a in argv + ["--overwrite"]]) == 2
    assert "no mask for" in capsys.readouterr().err
    assert cli.main([str(a) for a in argv + ["--measure", "accuracy", "--overwrite"]]) == 2
    assert "unknown measure 'accuracy'" in capsys.readouterr().err
