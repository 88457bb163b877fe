"""Model zoo, keras-hub tier: keras-hub's image classifiers (ViT, ResNet, DenseNet, EfficientNet,
MobileNet) built from configuration with seeded random weights (presets cannot be downloaded
here), small enough for the suite, with 3 classes and 2 images of 32 x 32.

For every model: saliency is the tape's gradient of the classifier's logit (keras-hub heads have
no softmax); Grad-CAM's default layer gives finite, non-constant maps; occlusion gives
finite maps of the input's size; CAM reads the GAP -> Dense heads and refuses the others (ViT,
MobileNet). (The other CAM methods read Grad-CAM's feature tap, and the gradient and perturbation
methods Saliency's and occlusion's passes: the keras.applications tier and tests/test_vit.py run
them on residual, nested and token models.) For the ViT also: Grad-CAM on the patch tokens at the last
attention's input (inside keras-hub's blocks), both rollouts, and a class row that depends on the
class for the gradient-weighted rollout, not for plain rollout.
"""

import keras
import keras_hub  # in the test extra (setup.py), not an install requirement
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki

pytestmark = pytest.mark.zoo

SIZE, CLASSES = 32, 3


def _vit():
    backbone = keras_hub.models.ViTBackbone(image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=CLASSES, preprocessor=None)


def _resnet():
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=True, image_shape=(SIZE, SIZE, 3))
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=CLASSES, preprocessor=None)


def _densenet():
    backbone = keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1], growth_rate=8,
                                                 image_shape=(SIZE, SIZE, 3))
    return keras_hub.models.DenseNetImageClassifier(backbone=backbone, num_classes=CLASSES, preprocessor=None)


def _efficientnet():
    backbone = keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1], stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 2],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25], stackwise_strides=[1, 2],
        stackwise_block_types=["fused", "unfused"], stackwise_width_coefficients=[1.0, 1.0],
        stackwise_depth_coefficients=[1.0, 1.0], num_features=32, input_shape=(SIZE, SIZE, 3))
    return keras_hub.models.EfficientNetImageClassifier(backbone=backbone, num_classes=CLASSES, preprocessor=None)


def _mobilenet():
    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16], [24]], stackwise_num_blocks=[1, 1], stackwise_num_filters=[[8], [16]],
        stackwise_kernel_size=[[3], [3]], stackwise_num_strides=[[2], [2]], stackwise_se_ratio=[[None], [0.25]],
        stackwise_activation=[["relu"], ["hard_swish"]], stackwise_padding=[[1], [1]], output_num_filters=32,
        depthwise_filters=8, depthwise_stride=1, depthwise_residual=False, last_layer_filter=32,
        image_shape=(SIZE, SIZE, 3))
    return keras_hub.models.MobileNetImageClassifier(backbone=backbone, num_classes=CLASSES, num_features=32,
                                                     preprocessor=None)


BUILDERS = {"ViT": _vit, "ResNet": _resnet, "DenseNet": _densenet, "EfficientNet": _efficientnet,
            "MobileNet": _mobilenet}
_BUILT = {}


@pytest.fixture(scope="module")
def hub(request):
    if request.param not in _BUILT:
        _BUILT.clear()
        keras.utils.set_random_seed(0)
        model = BUILDERS[request.param]()
        x = np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
        _BUILT[request.param] = (model, x)
    return _BUILT[request.param]


def _finite_maps(maps):
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32 and np.isfinite(maps).all()
    return maps


@pytest.mark.parametrize("hub", list(BUILDERS), indirect=True)
def test_keras_hub_classifiers(hub):
    model, x = hub
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = model(xt, training=False)
        score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
    want = tape.gradient(score, xt).numpy()
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(ki.Saliency(model).attribute(x), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    cam = ki.GradCAM(model, relu=False)
    maps = _finite_maps(cam.explain(x))
    assert all(m.max() > m.min() for m in maps), cam.layer
    _finite_maps(ki.Occlusion(model, patch_size=8, stride=8).explain(x))
    # CAM reads the GAP -> Dense heads; it refuses the ViT's class token and MobileNet's keep-dims
    # pooling followed by convolutions, pointing to Grad-CAM.
    if type(model).__name__ in ("ViTImageClassifier", "MobileNetImageClassifier"):
        with pytest.raises(ValueError, match="GradCAM"):
            ki.CAM(model)
    else:
        _finite_maps(ki.CAM(model).explain(x))
    if "ViT" in type(model).__name__:
        assert cam.layer.endswith("transformer_block_2/mha") and cam.tokens.grid == (4, 4) and cam.tokens.extra == 1
        rollout = ki.AttentionRollout(model)
        np.testing.assert_array_equal(rollout.explain(x, target=0), rollout.explain(x, target=1))
        _finite_maps(rollout.explain(x))
        gradient = ki.GradientAttentionRollout(model)
        by_class = [_finite_maps(gradient.explain(x, target=c)) for c in range(CLASSES)]
        assert not np.allclose(by_class[0], by_class[1])
    else:
        with pytest.raises(ValueError, match="no keras.layers.MultiHeadAttention"):
            ki.AttentionRollout(model)
