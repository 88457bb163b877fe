"""Mixed precision: every explainer runs on float16 compute and matches the float32 model."""

import keras
import numpy as np
import pytest

import keras_interp as ki


def _cnn(policy=None, head="gap"):
    keras.utils.set_random_seed(0)
    dtype = policy  # per-layer policy when given, else the global one
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1", dtype=dtype)(inputs)
    x = keras.layers.MaxPooling2D(2, dtype=dtype)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2", dtype=dtype)(x)
    x = keras.layers.ReLU(name="relu2", dtype=dtype)(x)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap", dtype=dtype)(x)
        out = keras.layers.Dense(3, activation="softmax", name="predictions", dtype=dtype)(x)
    else:  # a fused-softmax convolution head: (B, 1, 1, 3) -> Flatten
        out = keras.layers.Flatten()(keras.layers.Conv2D(3, 6, activation="softmax", name="predictions", dtype=dtype)(x))
    return keras.Model(inputs, out)


def _explainers(model):
    return {
        "saliency": ki.Saliency(model),
        "smoothgrad": ki.SmoothGrad(model, samples=4),
        "ig": ki.IntegratedGradients(model, steps=8),
        "occlusion": ki.Occlusion(model, patch_size=4, stride=4),
        "gradcam": ki.GradCAM(model),
        "gradcam++": ki.GradCAMPlusPlus(model),
        "layercam": ki.LayerCAM(model),
        "scorecam": ki.ScoreCAM(model),
        "deconvnet": ki.Deconvnet(model),
        "guided": ki.GuidedBackprop(model),
        "deconvnet_channel": ki.Deconvnet(model, layer="relu2"),
        "gradient_input": ki.GradientInput(model),
        "squaregrad": ki.SquareGrad(model, samples=4),
        "vargrad": ki.VarGrad(model, samples=4),
        "hirescam": ki.HiResCAM(model),
        "xgradcam": ki.XGradCAM(model),
        "eigencam": ki.EigenCAM(model),
        "ablationcam": ki.AblationCAM(model),
        "guided_ig": ki.GuidedIntegratedGradients(model, steps=4),
        "blur_ig": ki.BlurIntegratedGradients(model, steps=4, max_sigma=3.0),
        "fem": ki.FEM(model),
        "expected_gradients": ki.ExpectedGradients(
            model, np.random.default_rng(5).uniform(size=(3, 12, 12, 3)).astype("float32"), samples=4),
    }


@pytest.fixture
def global_mixed():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _compare(mixed, images, with_cam):
    reference = _cnn(head="gap" if with_cam else "conv")
    reference.set_weights([w.astype("float32") for w in mixed.get_weights()])
    ours, theirs = _explainers(mixed), _explainers(reference)
    if with_cam:
        ours["cam"], theirs["cam"] = ki.CAM(mixed), ki.CAM(reference)
    for name in ours:
        got = ours[name].explain(images, target=[0, 1, 2, 0])
        want = theirs[name].explain(images, target=[0, 1, 2, 0])
        assert got.dtype == np.float32 and np.isfinite(got).all(), name
        # float16 flips a few ReLU gates and pooling ties, so compare the whole map, not pixels.
        # Gradient x Input's signed channel sum cancels: its float16 gradient is as close as
        # saliency's (about 0.1), the sum a little less.
        error = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert error < (0.15 if name == "gradient_input" else 0.1), (name, error)
    np.testing.assert_allclose(ki.Scorer(mixed)(images).numpy(), ki.Scorer(reference)(images).numpy(), atol=2e-2)


def test_global_mixed_policy(global_mixed, images):
    mixed = _cnn()
    assert mixed.get_layer("conv2").compute_dtype == "float16"
    keras.mixed_precision.set_global_policy("float32")
    _compare(mixed, images, with_cam=True)


def test_fused_softmax_conv_head_under_mixed_policy(global_mixed, images):
    mixed = _cnn(head="conv")
    keras.mixed_precision.set_global_policy("float32")
    assert ki.Scorer(mixed).activation == "softmax"
    _compare(mixed, images, with_cam=False)


def test_per_layer_mixed_policy(images):
    mixed = _cnn(policy="mixed_float16")
    assert mixed.get_layer("conv2").compute_dtype == "float16"
    _compare(mixed, images, with_cam=True)
