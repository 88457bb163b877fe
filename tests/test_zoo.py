"""Model zoo tier: keras.applications architectures and common user forms, random weights.

Each model is built once (a module-scoped fixture keeping the current model; pytest groups the
tests by model), at the smallest input size at which its last stage still has a spatial extent
larger than 1x1 (at the minimum sizes keras.applications accepts, 32x32 and 75x75, that stage is
1x1 and every CAM is constant), with 5 classes, seeded random weights and a batch of 2 images.

For every model:
1. every explainer runs and returns a finite float32 (B, H, W) map; CAM on GAP -> (Dropout) -> Dense
   heads (nested ones included), and on the other heads CAM raises a ValueError pointing to GradCAM;
2. Saliency.attribute equals the gradient of the pre-softmax logit taken here with
   tf.GradientTape on the same architecture built with classifier_activation=None (or a linear
   head Dense), the weights copied over;
3. Grad-CAM's default layer is the last tensor with spatial extent > 1x1 on the path to the
   output (op outputs such as a residual `a + b` included, "nested/name" inside nested models),
   and the Grad-CAM map there is not constant.

Run this tier alone with `python -m pytest -q -m zoo tests`.
"""

import dataclasses
from typing import Callable, Optional, Union

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki

pytestmark = pytest.mark.zoo

A = keras.applications
CLASSES = 5
BATCH = 2


def _application(constructor, size):
    def build(activation):
        keras.utils.set_random_seed(0)
        return constructor(
            weights=None, input_shape=(size, size, 3), classes=CLASSES, classifier_activation=activation
        )

    return build


def _transfer_learning(size):
    """inputs -> Rescaling(1/255) -> nested MobileNetV2(include_top=False, pooling="avg") -> Dense."""

    def build(activation):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((size, size, 3), name="image")
        x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        backbone = A.MobileNetV2(weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3))
        outputs = keras.layers.Dense(CLASSES, activation=activation, name="head")(backbone(x))
        return keras.Model(inputs, outputs, name="transfer")

    return build


def _augmented_sequential(size):
    """keras.Sequential([RandomFlip(), classifier]) with a MobileNetV2 classifier."""

    def build(activation):
        keras.utils.set_random_seed(0)
        classifier = A.MobileNetV2(
            weights=None, input_shape=(size, size, 3), classes=CLASSES, classifier_activation=activation
        )
        return keras.Sequential(
            [keras.Input((size, size, 3)), keras.layers.RandomFlip(name="flip"), classifier], name="augmented"
        )

    return build


def _input_of(layer):
    """The operation (layer or op node such as `a + b`) that produced a single-input layer's input."""
    return layer.input._keras_history[0]


def _convnext_last_add(model):
    # The last residual `inputs + layer(x)` of stage 3, an op node that is in model.operations
    # but not in model.layers. Its name is generated ("add_17" in a fresh process: 3+3+9+3 blocks,
    # add .. add_17), so it depends on what else the process built; it is found from its
    # unique position here: the input of the head's global average pooling.
    add = _input_of(model.get_layer("convnext_tiny_head_gap"))
    assert type(add).__name__ == "Add" and not isinstance(add, keras.layers.Layer), add
    assert add in model.operations and add not in model.layers
    sources = [t._keras_history[0].name for t in add._inbound_nodes[0].input_tensors]
    assert "convnext_tiny_stage_3_block_2_identity" in sources, sources
    assert tuple(add.output.shape[1:3]) == (2, 2)
    return add.name


def _mobilenet_v3_last_spatial(model):
    # Head: conv_1 -> conv_1_bn -> hard_swish (an unnamed Activation, "activation_111" in a fresh
    # process) -> GlobalAveragePooling2D(keepdims=True) (1x1) -> conv_2 -> ... -> "logits" (1x1
    # conv) -> Flatten -> softmax. The last spatial tensor is the hard_swish before the pooling.
    gap = _input_of(model.get_layer("conv_2"))
    assert isinstance(gap, keras.layers.GlobalAveragePooling2D) and gap.keepdims
    act = _input_of(gap)
    assert isinstance(act, keras.layers.Activation) and _input_of(act).name == "conv_1_bn"
    assert tuple(act.output.shape[1:3]) == (2, 2)
    return act.name


@dataclasses.dataclass
class Spec:
    build: Callable  # activation -> model (the same seeded weights for any activation)
    size: int
    layer: Union[str, Callable]  # Grad-CAM's expected default layer, or model -> it
    low: float = 0.0  # inputs are uniform in [low, high], the range the model takes
    high: float = 1.0
    gap_dense_head: bool = True
    activation: Optional[str] = "softmax"


ZOO = {
    "MobileNetV2": Spec(_application(A.MobileNetV2, 33), 33, "out_relu", -1.0, 1.0),
    "ResNet50": Spec(_application(A.ResNet50, 33), 33, "conv5_block3_out", -120.0, 120.0),
    "EfficientNetB0": Spec(_application(A.EfficientNetB0, 33), 33, "top_activation", 0.0, 255.0),
    "DenseNet121": Spec(_application(A.DenseNet121, 61), 61, "relu", -2.0, 2.0),
    "ConvNeXtTiny": Spec(_application(A.ConvNeXtTiny, 64), 64, _convnext_last_add, 0.0, 255.0, gap_dense_head=False),
    "InceptionV3": Spec(_application(A.InceptionV3, 107), 107, "mixed10", -1.0, 1.0),
    "MobileNetV3Small": Spec(
        _application(A.MobileNetV3Small, 33), 33, _mobilenet_v3_last_spatial, 0.0, 255.0, gap_dense_head=False
    ),
    "transfer_MobileNetV2": Spec(_transfer_learning(33), 33, "mobilenetv2_1.00_33/out_relu", 0.0, 255.0),
    "Sequential_RandomFlip_MobileNetV2": Spec(
        _augmented_sequential(33), 33, "mobilenetv2_1.00_33/out_relu", -1.0, 1.0
    ),
}

EXPLAINERS = {
    "Saliency": lambda m: ki.Saliency(m),
    "SmoothGrad": lambda m: ki.SmoothGrad(m, samples=2),
    "IntegratedGradients": lambda m: ki.IntegratedGradients(m, steps=2),
    "Occlusion": lambda m: ki.Occlusion(m, patch_size=16, stride=16),
    "GradCAM": lambda m: ki.GradCAM(m),
    "GradCAMPlusPlus": lambda m: ki.GradCAMPlusPlus(m),
    "LayerCAM": lambda m: ki.LayerCAM(m),
    "ScoreCAM": lambda m: ki.ScoreCAM(m, max_channels=4),
    "CAM": lambda m: ki.CAM(m),
    "Deconvnet": lambda m: ki.Deconvnet(m),
    "GuidedBackprop": lambda m: ki.GuidedBackprop(m),
    "GradientInput": lambda m: ki.GradientInput(m),
    "VarGrad": lambda m: ki.VarGrad(m, samples=2),
    "HiResCAM": lambda m: ki.HiResCAM(m),
    "XGradCAM": lambda m: ki.XGradCAM(m),
    "EigenCAM": lambda m: ki.EigenCAM(m),
    # Ablation-CAM runs one forward pass per channel of the last layer (2048 for ResNet50): its
    # model forms are covered by the mixed-precision, jit and graph tiers on small models.
    "GuidedIntegratedGradients": lambda m: ki.GuidedIntegratedGradients(m, steps=2),
    "BlurIntegratedGradients": lambda m: ki.BlurIntegratedGradients(m, steps=2),
    "FEM": lambda m: ki.FEM(m),
    "ExpectedGradients": lambda m: ki.ExpectedGradients(m, np.zeros((1,) + tuple(m.inputs[0].shape[1:]), "float32"),
                                                        samples=2),
    "RISE": lambda m: ki.RISE(m, masks=8, cells=3),
    "SobolAttribution": lambda m: ki.SobolAttribution(m, grid=2, nb_design=2),
    "HSICAttribution": lambda m: ki.HSICAttribution(m, grid=2, samples=8),
    "LIME": lambda m: ki.LIME(m, segments=2, samples=8),
    "KernelSHAP": lambda m: ki.KernelSHAP(m, segments=2, samples=8),
}


class Zoo:
    """One built model, its pre-softmax twin with the same weights, inputs and explainers."""

    def __init__(self, name):
        spec = ZOO[name]
        self.name, self.spec = name, spec
        self.model = spec.build(spec.activation)
        self.logit_model = spec.build(None)
        self.logit_model.set_weights(self.model.get_weights())
        rng = np.random.default_rng(0)
        self.x = rng.uniform(spec.low, spec.high, size=(BATCH, spec.size, spec.size, 3)).astype("float32")
        self._explainers = {}

    def explainer(self, method):
        if method not in self._explainers:
            self._explainers[method] = EXPLAINERS[method](self.model)
        return self._explainers[method]

    def expected_layer(self):
        layer = self.spec.layer
        return layer(self.model) if callable(layer) else layer


_BUILT = {}


@pytest.fixture(scope="module")
def zoo(request):
    # pytest keys a parametrized fixture on the parameter's index, and each (model, method) pair
    # is a parameter of its own, so it would build the model again for every test. One model is
    # kept (tests are grouped by model): built once, with its explainers traced once.
    name = request.param
    if name not in _BUILT:
        _BUILT.clear()
        _BUILT[name] = Zoo(name)
    return _BUILT[name]


# The methods added after the lecture's run on the forms that stress them (residual adds, a
# nested backbone behind preprocessing, Sequential), which keeps the tier within the suite's
# time; the rest run on every model.
LATER = ("GradientInput", "VarGrad", "HiResCAM", "XGradCAM", "EigenCAM", "ExpectedGradients",
         "GuidedIntegratedGradients", "BlurIntegratedGradients", "FEM",
         "RISE", "SobolAttribution", "HSICAttribution", "LIME", "KernelSHAP",
         # Grad-CAM's gradient to the feature layer, which runs on every model, followed by other
         # tensor arithmetic (tested against NumPy on the small models): three forms suffice.
         "GradCAMPlusPlus", "LayerCAM",
         # Saliency's gradient (checked against the tape on every model) at noisy copies or along
         # a path, summed in the chunk loop (tested on small models and in the jit and
         # mixed-precision tiers): the three forms that stress the graph suffice; on the others
         # they cost the most traced graphs of the tier.
         "SmoothGrad", "IntegratedGradients",
         # Forward passes only, of masked copies (occlusion) or of the input scaled by each channel
         # of the CAM layer (Score-CAM, whose layer tap is Grad-CAM's, on every model): their graph
         # handling is the forward pass that Saliency's gradient runs on every model.
         "Occlusion", "ScoreCAM")
LATER_FORMS = ("ResNet50", "transfer_MobileNetV2", "Sequential_RandomFlip_MobileNetV2")
# The newest run on one form each, the one that stresses what they add: Guided IG's NumPy walk
# between compiled passes on a residual network, Blur IG's blurred copies through a nested
# backbone behind preprocessing, FEM's feature tap in a Sequential wrapper. Their graph handling
# is the gradient family's and Eigen-CAM's, which run on all three.
ONE_FORM = {"GuidedIntegratedGradients": "ResNet50", "BlurIntegratedGradients": "transfer_MobileNetV2",
            "FEM": "Sequential_RandomFlip_MobileNetV2",
            # Saliency's and Grad-CAM's passes with another product after them: one form each.
            "GradientInput": "ResNet50", "HiResCAM": "ResNet50", "XGradCAM": "transfer_MobileNetV2",
            # SmoothGrad's and IG's loops (on every model) with other sums: one form each.
            "VarGrad": "ResNet50", "ExpectedGradients": "transfer_MobileNetV2",
            # The black-box methods read the model's forward pass only (occlusion's path, on every
            # model): each on one form, their masks and estimators tested on small models.
            "RISE": "ResNet50", "SobolAttribution": "transfer_MobileNetV2",
            "HSICAttribution": "Sequential_RandomFlip_MobileNetV2", "LIME": "ResNet50",
            "KernelSHAP": "transfer_MobileNetV2"}


def make_tests(models):
    """The tier's tests over `models`. Each takes the model through the same parametrization, so
    pytest groups the tests by model and the module-scoped fixture builds each model once; the
    models are split over two files (test_zoo.py, test_zoo_b.py) so pytest-xdist runs them on
    both workers."""
    pairs = [(model, method) for model in models for method in EXPLAINERS
             if (method not in LATER or model in LATER_FORMS) and ONE_FORM.get(method, model) == model]

    @pytest.mark.parametrize("zoo, method", pairs, indirect=["zoo"])
    def every_explainer_gives_a_finite_float32_map(zoo, method):
        if method == "CAM" and not zoo.spec.gap_dense_head:
            # GAP -> LayerNorm -> Dense (ConvNeXt) and keep-dims GAP -> conv -> hard_swish -> conv
            # (MobileNetV3) are not CAM heads: CAM must refuse and point to Grad-CAM.
            with pytest.raises(ValueError, match=r"GradCAM"):
                zoo.explainer(method)
            return
        maps = zoo.explainer(method).explain(zoo.x)
        assert isinstance(maps, np.ndarray)
        assert maps.dtype == np.float32, maps.dtype
        assert maps.shape == (BATCH, zoo.spec.size, zoo.spec.size), maps.shape
        assert np.isfinite(maps).all(), f"{np.sum(~np.isfinite(maps))} non-finite values"

    @pytest.mark.parametrize("zoo", models, indirect=True)
    def saliency_is_the_gradient_of_the_pre_softmax_logit(zoo):
        x = tf.constant(zoo.x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = zoo.logit_model(x, training=False)
            top = tf.argmax(logits, axis=-1)
            score = tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
        expected = tape.gradient(score, x).numpy()
        # The twin really is the pre-softmax model with the same weights.
        np.testing.assert_allclose(
            zoo.model(x, training=False).numpy(), tf.nn.softmax(logits).numpy(), rtol=1e-4, atol=1e-6
        )
        assert np.abs(expected).max() > 0
        attr = zoo.explainer("Saliency").attribute(zoo.x)
        assert attr.shape == zoo.x.shape and attr.dtype == np.float32
        np.testing.assert_allclose(attr, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())

    @pytest.mark.parametrize("zoo", models, indirect=True)
    def grad_cam_default_layer_is_the_last_spatial_tensor(zoo):
        assert zoo.explainer("GradCAM").layer == zoo.expected_layer()

    @pytest.mark.parametrize("zoo", models, indirect=True)
    def grad_cam_default_map_is_not_constant(zoo):
        maps = zoo.explainer("GradCAM").explain(zoo.x)
        for b in range(BATCH):
            assert maps[b].max() > maps[b].min(), f"image {b}: constant map {maps[b].min()}"

    return (every_explainer_gives_a_finite_float32_map, saliency_is_the_gradient_of_the_pre_softmax_logit,
            grad_cam_default_layer_is_the_last_spatial_tensor, grad_cam_default_map_is_not_constant)


# This file: the first part of the models; test_zoo_b.py: the rest.
FIRST = ("MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121", "transfer_MobileNetV2")
REST = tuple(m for m in ZOO if m not in FIRST)
(test_every_explainer_gives_a_finite_float32_map, test_saliency_is_the_gradient_of_the_pre_softmax_logit,
 test_grad_cam_default_layer_is_the_last_spatial_tensor, test_grad_cam_default_map_is_not_constant) = make_tests(FIRST)
