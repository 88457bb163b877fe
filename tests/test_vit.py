"""Vision Transformers: CAMs on patch tokens and both rollouts against a forward pass written out
by hand from the layers' weights (attention recomputed from the query, key and value
projections), the default layer, the errors, and a ViT saved and loaded, in mixed precision and
over a signal."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_interp as ki
from keras_interp.tokens import Watch

SIZE, PATCH, DIM, HEADS, BLOCKS = 16, 4, 16, 2, 2


@pytest.fixture(scope="module")
def vits():
    keras.utils.set_random_seed(3)
    token = ki.models.reference_vit((SIZE, SIZE, 3), 3, PATCH, DIM, HEADS, BLOCKS, pooling="token")
    mean = ki.models.reference_vit((SIZE, SIZE, 3), 3, PATCH, DIM, HEADS, BLOCKS, pooling="mean")
    return {"token": token, "mean": mean}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(size=(3, SIZE, SIZE, 3)).astype("float32")


def _attention(layer, h):
    """Keras MultiHeadAttention's self-attention written out: (output, probabilities (B, N, T, T))."""
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    q = tf.einsum("btd,dnk->btnk", h, wq) + bq
    k = tf.einsum("btd,dnk->btnk", h, wk) + bk
    v = tf.einsum("btd,dnk->btnk", h, wv) + bv
    logits = tf.einsum("bsnk,btnk->bnts", k, q) / np.sqrt(wq.shape[-1])
    a = tf.nn.softmax(logits, axis=-1)
    return tf.einsum("btnk,nkd->btd", tf.einsum("bnts,bsnk->btnk", a, v), wo) + bo, a


def _forward(model, x, tape, pooling):
    """Pre-softmax logits, each block's first-norm output and attention probabilities, all
    watched by `tape`."""
    get = model.get_layer
    t = get("tokens")(get("patches")(get("patch_embedding")(x)))
    norms, attentions = [], []
    for i in range(1, BLOCKS + 1):
        h = get(f"block{i}_norm1")(t)
        tape.watch(h)
        norms.append(h)
        out, a = _attention(get(f"block{i}_attention"), h)
        attentions.append(a)
        t = t + out
        t = t + get(f"block{i}_mlp2")(get(f"block{i}_mlp1")(get(f"block{i}_norm2")(t)))
    t = get("norm")(t)
    pooled = t[:, 0] if pooling == "token" else tf.reduce_mean(t, axis=1)
    kernel, bias = get("predictions").get_weights()
    return pooled @ kernel + bias, norms, attentions


def _class_row(r, extra):
    row = r[:, 0] if extra else r.mean(axis=1)
    return row[:, extra:].reshape(len(r), SIZE // PATCH, SIZE // PATCH)


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_token_cams_and_both_rollouts_match_a_forward_written_out(vits, x, pooling):
    model, extra = vits[pooling], 1 if pooling == "token" else 0
    classes = np.array([0, 2, 1])
    tokens = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(tokens)
        logits, norms, attentions = _forward(model, tokens, tape, pooling)
        score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
    np.testing.assert_allclose(logits.numpy(), ki.targets.Scorer(model)(x).numpy(), atol=1e-4)
    # Grad-CAM on the last block's first norm: drop the class token, lay the rest on the 4 x 4
    # grid, weights = the gradient's mean over the grid.
    features = norms[-1].numpy()[:, extra:].reshape(3, 4, 4, DIM)
    grads = tape.gradient(score, norms[-1]).numpy()[:, extra:].reshape(3, 4, 4, DIM)
    want = np.maximum(np.einsum("bhwk,bk->bhw", features, grads.mean(axis=(1, 2))), 0)
    cam = ki.GradCAM(model, layer=f"block{BLOCKS}_norm1")
    np.testing.assert_allclose(cam.explain(x, classes, upsample=False), want, rtol=1e-4, atol=1e-6)
    assert cam.tokens.grid == (4, 4) and cam.tokens.dropped == tuple(range(extra))
    # Rollout: 0.5 A + 0.5 I per block (mean over heads), multiplied first to last.
    rollout = None
    for a in attentions:
        fused = 0.5 * a.numpy().mean(axis=1) + 0.5 * np.eye(a.shape[-1])
        fused /= fused.sum(-1, keepdims=True)
        rollout = fused if rollout is None else fused @ rollout
    got = ki.AttentionRollout(model).explain(x, target=[1, 1, 1], upsample=False)
    np.testing.assert_allclose(got, _class_row(rollout, extra), rtol=1e-4, atol=1e-6)
    # Gradient-weighted rollout: R = R + mean_heads(ReLU(dS/dA * A)) R.
    r = np.tile(np.eye(attentions[0].shape[-1]), (3, 1, 1))
    for a, g in zip(attentions, tape.gradient(score, attentions)):
        r = r + np.maximum(g.numpy() * a.numpy(), 0).mean(axis=1) @ r
    got = ki.GradientAttentionRollout(model).explain(x, classes, upsample=False)
    np.testing.assert_allclose(got, _class_row(r, extra), rtol=1e-4, atol=1e-7)


def test_rollout_options_and_the_class_agnostic_map(vits, x):
    model = vits["token"]
    rollout = ki.AttentionRollout(model)
    np.testing.assert_array_equal(rollout.explain(x, target=0), rollout.explain(x, target=2))
    assert rollout.explain(x).shape == (3, SIZE, SIZE)
    with Watch(ki.tokens.attention_layers(model)) as watch:
        ki.targets.Scorer(model)(x)
    first = watch.probabilities[0].numpy().max(axis=1)  # head_fusion="max", one block's weights
    assert len(watch.probabilities) == BLOCKS and first.shape == (3, 17, 17)
    kept = ki.AttentionRollout(model, head_fusion="max", discard_ratio=0.9).explain(x, upsample=False)
    assert np.isfinite(kept).all() and not np.allclose(kept, ki.AttentionRollout(model, "max").explain(
        x, upsample=False))
    for bad, message in (({"head_fusion": "sum"}, "head_fusion"), ({"discard_ratio": 1.0}, "discard_ratio")):
        with pytest.raises(ValueError, match=message):
            ki.AttentionRollout(model, **bad)


def test_the_default_token_layer_reaches_the_score(vits, x):
    # A class-token ViT: the last block's output reaches the score only through token 0, so the
    # default is the last attention's input; a model that pools all tokens uses its last tokens.
    assert ki.GradCAM(vits["token"]).layer == f"block{BLOCKS}_norm1"
    assert ki.GradCAM(vits["mean"]).layer == "norm"
    with pytest.raises(ValueError, match="do not reach the score.*block2_attention"):
        ki.GradCAM(vits["token"], layer="norm")
    # Naming the attention layer means its query input.
    assert ki.LayerCAM(vits["token"], layer="block1_attention").layer == "block1_norm1"
    maps = ki.GradCAM(vits["token"], relu=False).explain(x)  # random weights: signed, so never all zero
    assert maps.shape == (3, SIZE, SIZE) and np.isfinite(maps).all() and np.abs(maps).max() > 0


def test_a_hybrid_vit_takes_its_grid_from_the_map_it_flattens(x):
    # A convolutional stem (strides 2, kernels 3): no patch size, but the Reshape of its 4 x 4 map.
    hybrid = ki.models.reference_vit((SIZE, SIZE, 3), 3, PATCH, DIM, HEADS, 1, stem="conv")
    cam = ki.GradCAM(hybrid, relu=False)
    assert (cam.layer, cam.tokens.grid, cam.tokens.extra, cam.tokens.source) == ("block1_norm1", (4, 4), 1, "patches")
    assert ki.AttentionRollout(hybrid).grid == cam.tokens
    assert np.isfinite(cam.explain(x)).all()
    with pytest.raises(ValueError, match="power-of-2"):
        ki.models.reference_vit(patch_size=6, input_shape=(12, 12, 3), stem="conv")


def test_token_errors(vits, cnn, images):
    with pytest.raises(ValueError, match="no keras.layers.MultiHeadAttention"):
        ki.AttentionRollout(cnn)
    with pytest.raises(ValueError, match="No layer or operation named 'block9_norm1'.*block2_norm1.*"
                                         "Attention layers .*'block2_attention'"):
        ki.GradCAM(vits["token"], layer="block9_norm1")
    # Tokens that are no grid the model defines: 10 of the 16 patches.
    inputs = keras.Input((SIZE, SIZE, 3))
    t = keras.layers.Reshape((16, 8))(keras.layers.Conv2D(8, PATCH, strides=PATCH)(inputs))[:, :10]
    h = keras.layers.MultiHeadAttention(2, 4)(t, t)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    with pytest.raises(ValueError, match="10 tokens.*4x4 grid of 16"):
        ki.AttentionRollout(model)
    flat = keras.layers.Reshape((SIZE * SIZE // 4, 12))(inputs)  # no patch layer: no grid
    h = keras.layers.MultiHeadAttention(2, 4)(flat, flat)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    with pytest.raises(ValueError, match="defines no patch grid"):
        ki.GradientAttentionRollout(model)


def test_a_vit_saved_loaded_and_in_mixed_precision(vits, x, tmp_path):
    vits["token"].save(str(tmp_path / "vit.h5"))  # legacy HDF5 too: its layers need no custom objects
    legacy = ki.models.load_model(str(tmp_path / "vit.h5"))
    np.testing.assert_allclose(ki.AttentionRollout(legacy).explain(x), ki.AttentionRollout(vits["token"]).explain(x),
                               rtol=1e-5, atol=1e-8)
    path = str(tmp_path / "vit.keras")
    vits["token"].save(path)
    loaded = ki.models.load_model(path)
    # Signed Grad-CAM: random weights may leave the ReLU'd map at zero, which would compare nothing.
    # (AttentionRollout reads the same watched probabilities as the gradient-weighted one.)
    methods = (lambda m: ki.GradCAM(m, relu=False), ki.GradientAttentionRollout)
    for make in methods:
        want = make(vits["token"]).explain(x)
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(make(loaded).explain(x), want, rtol=1e-4, atol=1e-7)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = ki.models.reference_vit((SIZE, SIZE, 3), 3, PATCH, DIM, HEADS, BLOCKS)
        half.set_weights(vits["token"].get_weights())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for make in methods:
        want = make(vits["token"]).explain(x)
        got = make(half).explain(x)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_a_token_model_over_a_signal_gives_maps_over_the_signal():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 2))
    t = keras.layers.Conv1D(8, 8, strides=8, name="stem")(inputs)  # 8 patches of 8 samples
    t = ki.layers.TokenEmbedding(class_tokens=1)(t)
    h = keras.layers.LayerNormalization(name="norm1")(t)
    t = t + keras.layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    model = keras.Model(inputs, keras.layers.Dense(3)(t[:, 0]))
    signal = np.random.default_rng(0).normal(size=(2, 64, 2)).astype("float32")
    cam = ki.GradCAM(model)
    assert cam.layer == "norm1" and cam.tokens.grid == (8,) and cam.tokens.extra == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a map may be zero on random weights
        for explainer in (cam, ki.AttentionRollout(model), ki.GradientAttentionRollout(model)):
            maps = explainer.explain(signal)
            assert maps.shape == (2, 64) and np.isfinite(maps).all()
        assert explainer.explain(signal, upsample=False).shape == (2, 8)


def test_token_embedding_round_trip(tmp_path):
    layer = ki.layers.TokenEmbedding(class_tokens=2, name="embed")
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, layer(inputs))
    assert model.output.shape == (None, 7, 4)
    t = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    path = str(tmp_path / "embed.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(t), model(t), atol=1e-6)
    assert loaded.get_layer("embed").get_config()["class_tokens"] == 2
    with pytest.raises(ValueError, match="class_tokens must be a non-negative int"):
        ki.layers.TokenEmbedding(class_tokens=-1)


def test_the_logger_and_the_command_line_on_a_vit(vits, x, tmp_path):
    import glob
    import os

    import cv2

    from keras_interp import cli, summary

    model = keras.models.clone_model(vits["token"])
    model.set_weights(vits["token"].get_weights())
    model.compile("adam", "sparse_categorical_crossentropy")
    methods = ("gradcam", "attention_rollout", "gradient_rollout")
    logger = ki.ExplanationLogger(x[:2], tmp_path / "logs", methods=methods, labels=[0, 1], freq=1)
    model.fit(x, np.array([0, 1, 2]), epochs=2, verbose=0, callbacks=[logger])
    tags = set()
    for path in glob.glob(str(tmp_path / "logs" / summary.SUBDIR / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update((v.tag, event.step) for v in event.summary.value)
    for method in methods:
        assert {(summary.map_tag(method, i), step) for i in (0, 1) for step in (0, 1)} <= tags, method
    # The dashboard's server lists the ViT's methods and serves their maps.
    from test_tb_plugin import get, make_client, strict_json

    client = make_client(str(tmp_path))
    info = strict_json(get(client, "runs"))["runs"]["logs/explanations"]
    assert sorted(info["methods"]) == sorted(methods) and info["steps"] == [0, 1]
    assert info["labels"]["attention_rollout"] == "attention_rollout"
    for method in ("attention_rollout", "gradient_rollout"):
        served = get(client, "image", run="logs/explanations", tag=summary.map_tag(method, 1), step=1)
        assert served.status_code == 200 and served.mimetype == "image/png"
    # The command line on the saved ViT and a folder of PNG files.
    model.save(tmp_path / "vit.keras")
    (tmp_path / "images").mkdir()
    for i, image in enumerate(x):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), (image[..., ::-1] * 255).astype(np.uint8))
    code = cli.main(["explain", str(tmp_path / "vit.keras"), str(tmp_path / "images"), "--method", "attention_rollout",
                     "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    rollout = np.load(tmp_path / "out" / "0_png.attention_rollout.npy")
    read = cli.read_image(str(tmp_path / "images" / "0.png"), (SIZE, SIZE), 3)
    np.testing.assert_allclose(rollout, ki.AttentionRollout(model).explain(read[None])[0], rtol=1e-5, atol=1e-7)
    assert sorted(os.listdir(tmp_path / "out")).count("0_png.png") == 1


def test_review_findings_ablation_grid_choice_wrappers_ties_and_subclassed(vits, x):
    model = vits["token"]
    # Ablation through a watched attention replaces the tokens as query, key and value alike: the
    # same weights as ablating the norm's output in the graph.
    watched = ki.AblationCAM(model, layer="block2_attention")
    watched.site = ki.tokens.TokenLayer(watched.scorer, model.get_layer("block2_attention"), 4)
    watched._source = watched.site.features
    np.testing.assert_allclose(watched.explain(x, upsample=False), ki.AblationCAM(
        model, layer="block2_norm1").explain(x, upsample=False), rtol=1e-4, atol=1e-6)
    # Of two grids the tokens fit, the one with the fewest extra tokens: 8-pixel patches with
    # 'same' padding on 30 pixels are a 4 x 4 grid (the Reshape), not 3 x 3 plus 8 extra.
    inputs = keras.Input((30, 30, 3))
    t = keras.layers.Reshape((-1, 16))(keras.layers.Conv2D(16, 8, strides=8, padding="same")(inputs))
    t = ki.layers.TokenEmbedding(1)(t)
    h = keras.layers.LayerNormalization()(t)
    t = t + keras.layers.MultiHeadAttention(2, 8)(h, h)
    padded = keras.Model(inputs, keras.layers.Dense(2)(t[:, 0]))
    assert (ki.AttentionRollout(padded).grid.grid, ki.AttentionRollout(padded).grid.extra) == ((4, 4), 1)
    # A wrapper the user put on the layer survives a watch, and watches nest.
    layer = model.get_layer("block2_attention")
    original = layer.call
    object.__setattr__(layer, "call", lambda *a, **k: original(*a, **k))
    wrapper = layer.__dict__["call"]
    try:
        with Watch([layer]) as outer:
            with Watch([layer]) as inner:
                ki.targets.Scorer(model)(x)
            ki.targets.Scorer(model)(x)
        assert len(inner.probabilities) == 1 and len(outer.probabilities) == 2
        ki.AttentionRollout(model).explain(x)
        assert layer.__dict__["call"] is wrapper
    finally:
        layer.__dict__.pop("call", None)
    assert "call" not in layer.__dict__ and "_compute_attention" not in layer.__dict__
    # Discarding by position: uniform attention loses exactly the fraction asked.
    rollout = ki.AttentionRollout(model, discard_ratio=0.1)
    dropped = rollout._discard(tf.fill([1, 17, 17], 1 / 17), 17).numpy()
    assert (dropped == 0).sum() == int(0.1 * 17 * 17) and (dropped[0, :, 0] > 0).all()

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.embed = keras.layers.Conv2D(8, PATCH, strides=PATCH)
            self.attention = keras.layers.MultiHeadAttention(2, 4)
            self.head = keras.layers.Dense(2)

        def call(self, images):
            t = keras.ops.reshape(self.embed(images), (-1, 16, 8))
            return self.head(keras.ops.mean(self.attention(t, t), axis=1))

    sub = Subclassed()
    sub(x)
    for method in (ki.GradCAM, ki.AttentionRollout):
        with pytest.raises(ValueError, match="subclassed keras.Model"):
            method(sub)
    wrapped_inputs = keras.Input((SIZE, SIZE, 3))
    wrapped = keras.Model(wrapped_inputs, sub(wrapped_inputs))
    assert np.isfinite(ki.AttentionRollout(wrapped).explain(x)).all()
