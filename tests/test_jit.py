"""jit_compile=None | True | False | "auto" on every explainer: XLA gives the plain maps, "auto"
times both once per input shape and keeps the faster, and random draws never depend on the mode."""

import numpy as np
import pytest

import keras_interp as ki
from conftest import tiny_cnn

FACTORIES = {
    "saliency": lambda m, **kw: ki.Saliency(m, **kw),
    "integrated_gradients": lambda m, **kw: ki.IntegratedGradients(m, steps=8, **kw),
    "occlusion": lambda m, **kw: ki.Occlusion(m, patch_size=4, stride=4, **kw),
    "cam": lambda m, **kw: ki.CAM(m, **kw),
    "gradcam": lambda m, **kw: ki.GradCAM(m, **kw),
    "gradcam++": lambda m, **kw: ki.GradCAMPlusPlus(m, **kw),
    "layercam": lambda m, **kw: ki.LayerCAM(m, **kw),
    "scorecam": lambda m, **kw: ki.ScoreCAM(m, **kw),
    "deconvnet": lambda m, **kw: ki.Deconvnet(m, **kw),
    "guided_backprop": lambda m, **kw: ki.GuidedBackprop(m, **kw),
}


@pytest.fixture(scope="module")
def model_and_images():
    model = tiny_cnn(seed=3)
    images = np.random.default_rng(0).uniform(size=(3, 12, 12, 3)).astype("float32")
    return model, images


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_xla_and_auto_give_the_plain_maps(model_and_images, name):
    model, images = model_and_images
    plain = FACTORIES[name](model).explain(images)
    scale = np.abs(plain).max()
    assert scale > 0
    xla = FACTORIES[name](model, jit_compile=True)
    np.testing.assert_allclose(xla.explain(images), plain, rtol=1e-4, atol=1e-5 * scale)
    assert any(jit for (_, jit) in xla._functions)  # it did compile with XLA
    auto = FACTORIES[name](model, jit_compile="auto")
    np.testing.assert_allclose(auto.explain(images), plain, rtol=1e-4, atol=1e-5 * scale)
    (method, _), = auto.jit_choices
    choice = auto.jit_choices[method, _]
    assert isinstance(choice["xla"], bool) and set(choice["seconds"]) == {False, True}
    assert choice["seconds"][choice["xla"]] == min(choice["seconds"].values())
    traces = auto.trace_count
    auto.explain(images)  # decided: no more timing, no more tracing
    assert auto.trace_count == traces and len(auto.jit_choices) == 1
    again = FACTORIES[name](model, jit_compile="auto")  # another instance shares the decision
    np.testing.assert_allclose(again.explain(images), plain, rtol=1e-4, atol=1e-5 * scale)
    assert again.jit_choices == {}


def test_a_new_input_shape_is_timed_again(model_and_images):
    model, images = model_and_images
    auto = ki.LayerCAM(model, jit_compile="auto")
    auto.explain(images[:1])
    auto.explain(images[:2])
    auto.explain(images[:1])
    assert len(auto.jit_choices) == 2  # batches of 1 and 2 (3 was decided by an earlier test, if it ran)


def test_smoothgrad_draws_do_not_depend_on_the_mode(model_and_images):
    model, images = model_and_images
    plain = ki.SmoothGrad(model, samples=4).explain(images)
    auto = ki.SmoothGrad(model, samples=4, jit_compile="auto")
    np.testing.assert_array_equal(auto.explain(images), plain)  # "auto" stays plain: same noise
    assert auto.jit_choices == {} and not any(jit for (_, jit) in auto._functions)
    xla = ki.SmoothGrad(model, samples=4, jit_compile=True)
    first = xla.explain(images)
    np.testing.assert_array_equal(xla.explain(images), first)  # deterministic under XLA too
    without_noise = ki.SmoothGrad(model, samples=2, noise=0.0, jit_compile=True).attribute(images)
    np.testing.assert_allclose(without_noise, ki.Saliency(model).attribute(images), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("value", ["yes", 1, 0.5, "AUTO"])
def test_bad_jit_compile_values_are_refused(model_and_images, value):
    model, _ = model_and_images
    with pytest.raises(ValueError, match=r'jit_compile must be None, True, False or "auto"; received'):
        ki.Saliency(model, jit_compile=value)
