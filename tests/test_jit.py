"""jit_compile=None | True | False | "auto" on every explainer: XLA gives the plain maps, "auto"
decides once per input shape on one chunk's model pass (its first call runs the method plain, never
with XLA, and gives up on an XLA compile that outlasts that call), and random draws never depend on
the mode."""

import threading
import time

import numpy as np
import pytest

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp.explainers import jit
from keras_interp.explainers.base import Explainer

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
    # Of the later methods, those with compiled code of their own (Gradient x Input, HiResCAM and
    # XGradCAM reuse saliency's and Grad-CAM's gradients): an SVD, an ablation loop, drawn paths.
    "eigencam": lambda m, **kw: ki.EigenCAM(m, **kw),
    "ablationcam": lambda m, **kw: ki.AblationCAM(m, **kw),
    # A NumPy walk between compiled gradient passes; blurs built in the compiled loop; k-sigma masks.
    "guided_ig": lambda m, **kw: ki.GuidedIntegratedGradients(m, steps=4, **kw),
    "blur_ig": lambda m, **kw: ki.BlurIntegratedGradients(m, steps=4, max_sigma=3.0, **kw),
    "fem": lambda m, **kw: ki.FEM(m, **kw),
    # Its draws are made by NumPy, outside the compiled function: the same in every mode.
    "expected_gradients": lambda m, **kw: ki.ExpectedGradients(
        m, np.random.default_rng(5).uniform(size=(4, 12, 12, 3)).astype("float32"), samples=3, **kw),
}


@pytest.fixture(autouse=True)
def no_probe_left_running():
    yield
    jit.wait_for_probes()  # an abandoned XLA compile would slow the next test


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
    assert not any(jit for (_, jit) in auto._functions)  # the first call never runs the method with XLA
    (choice,) = auto.jit_choices.values()
    assert isinstance(choice["xla"], bool) and choice["error"] is None
    assert choice["probe"] == ("forward" if name in ("occlusion", "scorecam", "cam", "eigencam", "ablationcam", "fem") else "gradient")
    if choice["abandoned"] != "compile":
        assert choice["seconds"][False] > 0 and choice["compile_seconds"] > 0
    if choice["xla"]:
        assert choice["seconds"][True] < choice["seconds"][False] and choice["abandoned"] is None
    np.testing.assert_allclose(auto.explain(images), plain, rtol=1e-4, atol=1e-5 * scale)  # the kept mode
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


@pytest.mark.parametrize("cls", [ki.SmoothGrad, ki.SquareGrad, ki.VarGrad], ids=lambda c: c.__name__)
def test_smoothgrad_draws_do_not_depend_on_the_mode(model_and_images, cls):
    model, images = model_and_images
    plain = cls(model, samples=4).explain(images)
    auto = cls(model, samples=4, jit_compile="auto")
    np.testing.assert_array_equal(auto.explain(images), plain)  # "auto" stays plain: same noise
    assert auto.jit_choices == {} and not any(jit for (_, jit) in auto._functions)
    xla = cls(model, samples=4, jit_compile=True)
    first = xla.explain(images)
    np.testing.assert_array_equal(xla.explain(images), first)  # deterministic under XLA too
    without_noise = cls(model, samples=2, noise=0.0, jit_compile=True).attribute(images)
    gradient = ki.Saliency(model).attribute(images)
    expected = {ki.SmoothGrad: gradient, ki.SquareGrad: gradient ** 2, ki.VarGrad: 0 * gradient}[cls]
    np.testing.assert_allclose(without_noise, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("value", ["yes", 1, 0.5, "AUTO"])
def test_bad_jit_compile_values_are_refused(model_and_images, value):
    model, _ = model_and_images
    with pytest.raises(ValueError, match=r'jit_compile must be None, True, False or "auto"; received'):
        ki.Saliency(model, jit_compile=value)


def _counting_runs(monkeypatch, before_plain=None):
    """[(method, jit)] of every run of an explainer's compiled method from now on; `before_plain`
    (if given) runs before each plain run."""
    runs, original = [], Explainer._compiled

    def compiled(self, name, jit=None):
        fn = original(self, name, jit)

        def run(*args):
            runs.append((name, jit))
            if before_plain is not None and not jit:
                before_plain()
            return fn(*args)

        return run

    monkeypatch.setattr(Explainer, "_compiled", compiled)
    return runs


def _fake_probes(monkeypatch, plain=None, xla=None):
    """Replace the probed passes: plain(real_plain, x) and xla(real_plain, x) run instead of the
    real plain and XLA passes (None: the real one)."""
    real = jit._probe_functions

    def functions(scorer, kind):
        fns = real(scorer, kind)
        return {False: fns[False] if plain is None else (lambda x: plain(fns[False], x)),
                True: fns[True] if xla is None else (lambda x: xla(fns[False], x))}

    monkeypatch.setattr(jit, "_probe_functions", functions)


def _fake_clock(monkeypatch):
    """A clock that runs `offset[0]` seconds ahead of perf_counter: raise it to fake time spent."""
    offset = [0.0]
    monkeypatch.setattr(jit, "_clock", lambda: time.perf_counter() + offset[0])
    return offset


def test_the_first_auto_call_runs_the_method_once_plain_and_probes_one_chunk(monkeypatch):
    model = tiny_cnn(seed=11)  # a model of its own: no decision shared from another test
    images = np.random.default_rng(1).uniform(size=(3, 12, 12, 3)).astype("float32")
    runs = _counting_runs(monkeypatch)
    occlusion = ki.Occlusion(model, patch_size=4, stride=2, batch_size=16, jit_compile="auto")
    first = occlusion.explain(images)
    assert runs == [("_occlude_fn", False)]  # once, plain: its result is the one returned
    (choice,) = occlusion.jit_choices.values()
    # 25 windows of 3 images, 16 images a pass: 5 windows (15 images) per pass, the probed batch.
    assert choice["probe"] == "forward" and choice["images"] == 15 and choice["call_seconds"] > 0
    np.testing.assert_allclose(occlusion.explain(images), first, rtol=1e-4, atol=1e-5 * np.abs(first).max())
    assert runs[1:] == [("_occlude_fn", choice["xla"])]  # later calls run the kept mode
    saliency = ki.Saliency(model, jit_compile="auto")
    saliency.explain(images)
    assert runs[2:] == [("_reduced", False)]
    (choice,) = saliency.jit_choices.values()
    assert choice["probe"] == "gradient" and choice["images"] == 3  # one pass of the batch itself


def test_a_slow_xla_compile_is_abandoned_without_waiting_for_it(monkeypatch):
    release, finished = threading.Event(), threading.Event()

    def stuck_compile(plain, x):
        release.wait(60)
        finished.set()

    _fake_probes(monkeypatch, xla=stuck_compile)
    runs = _counting_runs(monkeypatch)
    model = tiny_cnn(seed=12)
    images = np.random.default_rng(2).uniform(size=(2, 12, 12, 3)).astype("float32")
    auto = ki.Saliency(model, jit_compile="auto")
    try:
        start = time.perf_counter()
        maps = auto.explain(images)
        elapsed = time.perf_counter() - start
        assert not finished.is_set()  # decided while the compile was still running
        # It waited for the compile as long as the plain call took, no longer.
        assert elapsed < 2 * auto.jit_choices[next(iter(auto.jit_choices))]["call_seconds"] + 5
        (choice,) = auto.jit_choices.values()
        assert choice["xla"] is False and choice["abandoned"] == "compile"
        assert choice["seconds"] == {} and choice["compile_seconds"] is None
        np.testing.assert_allclose(auto.explain(images), maps)
        assert runs == [("_reduced", False)] * 2
    finally:
        release.set()


def _long_plain_calls(offset, seconds=30.0):
    """before_plain for _counting_runs: each plain run of the method "takes" `seconds` more, so
    XLA's warm-up (a fake that returns at once) is given that long."""
    return lambda: offset.__setitem__(0, offset[0] + seconds)


def test_xla_is_kept_when_faster_on_the_probe_and_later_calls_use_it(monkeypatch):
    offset = _fake_clock(monkeypatch)

    def slow_plain(plain, x):
        offset[0] += 5.0  # the plain pass "takes" 5 s
        return plain(x)

    _fake_probes(monkeypatch, plain=slow_plain, xla=lambda plain, x: x)
    runs = _counting_runs(monkeypatch, before_plain=_long_plain_calls(offset))
    model = tiny_cnn(seed=13)
    images = np.random.default_rng(3).uniform(size=(2, 12, 12, 3)).astype("float32")
    plain_maps = ki.Saliency(model).explain(images)
    auto = ki.Saliency(model, jit_compile="auto")
    np.testing.assert_allclose(auto.explain(images), plain_maps, rtol=1e-5, atol=1e-7)
    (choice,) = auto.jit_choices.values()
    assert choice["xla"] is True and choice["abandoned"] is None and choice["error"] is None
    assert choice["seconds"][False] >= 5.0 > choice["seconds"][True]
    del runs[:]
    scale = np.abs(plain_maps).max()
    np.testing.assert_allclose(auto.explain(images), plain_maps, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(auto.explain(images), plain_maps, rtol=1e-4, atol=1e-5 * scale)
    assert runs == [("_reduced", True)] * 2
    again = ki.Saliency(model, jit_compile="auto")  # the decision is shared
    again.explain(images)
    assert again.jit_choices == {} and runs[-1] == ("_reduced", True)


def test_an_xla_run_slower_than_plain_is_abandoned_without_waiting_for_it(monkeypatch):
    offset = _fake_clock(monkeypatch)
    warmed, release, finished = threading.Event(), threading.Event(), threading.Event()

    def plain_pass(plain, x):
        offset[0] += 0.05
        return plain(x)

    def slow_xla(plain, x):
        if warmed.is_set():  # every run after the warm-up never ends in time
            release.wait(60)
            finished.set()
        warmed.set()

    _fake_probes(monkeypatch, plain=plain_pass, xla=slow_xla)
    _counting_runs(monkeypatch, before_plain=_long_plain_calls(offset))
    model = tiny_cnn(seed=14)
    images = np.random.default_rng(4).uniform(size=(2, 12, 12, 3)).astype("float32")
    auto = ki.GradCAM(model, jit_compile="auto")
    try:
        auto.explain(images)
        assert not finished.is_set()
        (choice,) = auto.jit_choices.values()
        assert choice["xla"] is False and choice["abandoned"] == "run"
        assert set(choice["seconds"]) == {False} and choice["compile_seconds"] is not None
    finally:
        release.set()


def test_a_model_xla_cannot_compile_stays_plain(monkeypatch):
    offset = _fake_clock(monkeypatch)

    def failing_xla(plain, x):
        raise RuntimeError("XLA cannot compile this op")

    _fake_probes(monkeypatch, xla=failing_xla)
    _counting_runs(monkeypatch, before_plain=_long_plain_calls(offset))
    model = tiny_cnn(seed=15)
    images = np.random.default_rng(5).uniform(size=(2, 12, 12, 3)).astype("float32")
    auto = ki.Occlusion(model, patch_size=4, stride=4, jit_compile="auto")
    auto.explain(images)
    (choice,) = auto.jit_choices.values()
    assert choice["xla"] is False and "XLA cannot compile this op" in choice["error"]
