"""Class-model gradient ascent against its physical limit and tf-keras-vis.

    python benchmarks/bench_visualize.py [--batch 8] [--steps 50] [--repeats 3]

Reference CNN (keras_interp.reference_cnn, 64x64x3) with `--batch` classes, untrained: one
class-model step optimizes every class at once, so its limit is one compiled forward+backward
pass of a batch of that many images (measured in the same run, re-measured beside the method).
Printed per step: ours (the pixel recipe: L2 decay and a blur every 4 steps) / limit, and
ours / tf-keras-vis 0.8.7's ActivationMaximization (its default jitter, rotation, total
variation and norm regularizers, ReplaceToLinear, on a clone) for the same classes and steps
(pip install -e ".[bench]"). Also: Deep Dream time per step and per pixel on a 1024x768 photo.

    python benchmarks/bench_visualize.py --evidence [--steps 256] [--seeds 0 1] [--cache DIR] [--docs]

The recipes compared (issue: class models a person, or another model, recognises). Trains, as a
judge, a model of another architecture on other shapes: a residual CNN with average and max
pooling (`judge_model`), trained on this bench's own shapes (`judge_shapes`, seeds 11 and 12,
copies=True): radius 5-28 px on 64 px images, any position (a quarter of them partly out of the
frame), rotation and colour, on the library's textured backgrounds, flat colours, colour clouds or
noise, some shaded or blurred; half the pictures hold 2 to 8 shapes of their class, since a
global-average-pooling CNN's class model repeats its class over the image. It never sees a class
model. A second judge, the same network trained on single shapes only (the earlier instrument),
gives a second opinion. The judges are first checked on held-out clean shapes (solid shapes of a
random colour, rotation and position, on flat grey): one at radius 6, 9, 14, 20 and 26 px, and 4
of radius 8 or 9 of radius 6. Two CNNs are then drawn: the reference CNN trained on the library's
shapes (seed 0, the demo's), and the same architecture at width 32 trained on broad single shapes
(`train_shapes_cnn`, seeds 31 and 32), a CNN that had to learn the shapes themselves. For each
recipe ("yosinski", "fourier", "fourier" rotating all the way round (`fourier_recipe(180)`),
"maco") and each ascent seed, prints how many of the 4 class models each judge classifies as
their class, how many of those also beat the best of 1000 real training images' logit on the
CNN, the first judge's probability of each, and each class model's logit. A control draws the
Fourier recipes' class models of the same architecture untrained (two initializations). --docs
writes docs/class_model_recipes.png (the library's CNN) and docs/class_model_recipes_shapes.png
(the CNN that learned shapes), one row per recipe (first seed). --cache DIR keeps the four
trained models (about 30 minutes to train on 2 cores, the shapes CNN 15 of them).
"""

import numpy as np
from common import batch_parser, forward_backward_timer, paired, report, timed, try_peer

import keras_interp as ki  # noqa: E402


def judge_shapes(n, seed, size=64, radii=(5, 28), copies=False):
    """The judge's training data, drawn with the library's shapes (`datasets._draw`) but with far
    broader variation than `datasets.shapes`: radius `radii` px, any rotation and colour, centres
    anywhere the shape fits (a quarter may leave up to a fifth of the radius out of the frame), on
    the library's textured background, a flat colour, smooth colour clouds or noise; 30% of the
    objects shaded, 30% of the images blurred. With `copies`, half the images hold 2 to 8 shapes
    of their class instead of one (radius 5-14 px, each its own colour, rotation and position,
    overlaps allowed): a picture made of one kind of shape, as a person would name it."""
    import cv2

    from keras_interp.datasets import _background, _draw

    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.float32)
    labels = rng.integers(0, 4, size=n).astype(np.int32)
    for i, label in enumerate(labels):
        kind = rng.integers(0, 4)
        if kind == 0:
            bg = _background(rng, size)
        elif kind == 1:
            bg = np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32), (size, size, 3)).copy()
        elif kind == 2:
            coarse = rng.uniform(0, 1, size=(int(rng.integers(2, 9)),) * 2 + (3,)).astype(np.float32)
            bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
        else:
            noise = rng.normal(0, rng.uniform(0.02, 0.15), (size, size, 3)).astype(np.float32)
            bg = rng.uniform(0, 1, 3).astype(np.float32) + noise
        count = int(rng.integers(2, 9)) if copies and rng.uniform() < 0.5 else 1
        shaded = None
        image = bg.copy()
        for _ in range(count):
            r = int(rng.integers(radii[0], radii[1] + 1)) if count == 1 else int(rng.integers(5, 15))
            reach = int(np.ceil(r * 1.25))
            lo, hi = min(reach, size // 2), max(size - reach, size // 2 + 1)
            slack = (int(r * 0.2) if rng.uniform() < 0.25 else 0) if count == 1 else reach // 2
            cx, cy = rng.integers(lo - slack, hi + slack, size=2)
            mask = np.zeros((size, size), np.uint8)
            _draw(mask, int(label), int(cx), int(cy), r, rng.uniform(0, 2 * np.pi))
            m = mask.astype(bool)
            under = image[m].mean(axis=0) if m.any() else bg.mean(axis=(0, 1))
            colour = rng.uniform(0, 1, 3)
            while np.abs(colour - under).max() < 0.35:
                colour = rng.uniform(0, 1, 3)
            shaded = rng.uniform() < 0.3 if shaded is None else shaded
            image[m] = colour + (rng.normal(0, 0.06, (size, size, 1))[m] if shaded else 0)
        if rng.uniform() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
        images[i] = np.clip(image, 0, 1)
    return images, labels


def clean_shapes(per_class, radius, seed, size=64, copies=1):
    """Held-out clean shapes: `copies` solid shapes of a random colour (far from grey), rotation
    and position, radius `radius` px, on flat grey."""
    from keras_interp.datasets import _draw

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per_class).astype(np.int32)
    images = np.full((len(labels), size, size, 3), 0.5, np.float32)
    reach = int(np.ceil(radius * 1.25))
    for i, label in enumerate(labels):
        for _ in range(copies):
            mask = np.zeros((size, size), np.uint8)
            cx, cy = rng.integers(min(reach, size // 2), max(size - reach, size // 2 + 1), size=2)
            _draw(mask, int(label), int(cx), int(cy), radius, rng.uniform(0, 2 * np.pi))
            colour = rng.uniform(0, 1, 3)
            while np.abs(colour - 0.5).max() < 0.35:
                colour = rng.uniform(0, 1, 3)
            images[i][mask.astype(bool)] = colour
    return images, labels


def judge_model():
    """Another architecture than the reference CNN (plain conv-BN-ReLU pairs, VGG-style, global
    average pooling): a strided 5x5 stem, three residual stages with 1x1 projections, and
    average and max pooling."""
    import keras

    layers = keras.layers
    inputs = keras.Input((64, 64, 3))
    x = layers.Conv2D(32, 5, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters in (32, 64, 128):
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        x = layers.ReLU()(layers.Add()([y, layers.Conv2D(filters, 1, use_bias=False)(x)]))
        if filters != 128:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    outputs = layers.Dense(4, activation="softmax")(layers.Dropout(0.2)(x))
    return keras.Model(inputs, outputs, name="judge")


def accuracy(model, images, labels):
    return float(np.mean(model.predict(images, verbose=0).argmax(1) == labels))


def cached(cache, name, make):
    """The model `name` in the folder `cache` (None: none), or `make()`, saved there."""
    import os

    path = os.path.join(cache, name) if cache else None
    if path and os.path.exists(path):
        return ki.load_model(path)
    model = make()
    if path:
        os.makedirs(cache, exist_ok=True)
        model.save(path)
    return model


def train_judge(train_size=10000, epochs=10, seed=11, verbose=0, copies=True):
    import keras

    keras.utils.set_random_seed(seed)
    x, y = judge_shapes(train_size, seed, copies=copies)
    val = judge_shapes(train_size // 8, seed + 1, copies=copies)
    judge = judge_model()
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * (train_size // 64 + 1))
    judge.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = judge.fit(x, y, batch_size=64, epochs=epochs, validation_data=val, verbose=verbose)
    return judge, history.history["val_accuracy"][-1]


JUDGE_RADII = (6, 9, 14, 20, 26)
# (copies, radius): pictures made of several shapes of one class, as a GAP network's class models are.
JUDGE_COPIES = ((4, 8), (9, 6))


def train_shapes_cnn(train_size=10000, epochs=12, seed=31, verbose=0):
    """The reference CNN's architecture at width 32, trained on broad shapes (`judge_shapes`,
    seeds 31 and 32, not the judge's): a CNN that had to learn the shapes themselves, where the
    library's varies little else than the shape on its backgrounds."""
    import keras

    keras.utils.set_random_seed(seed)
    x, y = judge_shapes(train_size, seed)
    val = judge_shapes(train_size // 8, seed + 1)
    model = ki.reference_cnn(width=32, name="shapes_cnn")
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, epochs * (train_size // 64 + 1))
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(epochs):  # one fit per epoch, so a 15-minute training shows its progress
        history = model.fit(x, y, batch_size=64, epochs=epoch + 1, initial_epoch=epoch, validation_data=val,
                            verbose=verbose)
        print(f"  shapes CNN epoch {epoch + 1}: validation accuracy {history.history['val_accuracy'][-1]:.3f}",
              flush=True)
    return model, history.history["val_accuracy"][-1]


def check_on_clean_shapes(models, names):
    """Each model's recognised fraction per class of held-out clean shapes (50 per class): one
    shape at each of JUDGE_RADII, and JUDGE_COPIES pictures of several."""
    for copies, radius in [(1, r) for r in JUDGE_RADII] + list(JUDGE_COPIES):
        clean, clean_labels = clean_shapes(50, radius, seed=1000 + radius + (100 * copies if copies > 1 else 0), copies=copies)
        parts = []
        for name, m in models.items():
            predicted = m.predict(clean, verbose=0).argmax(1)
            fractions = [np.mean(predicted[clean_labels == c] == c) for c in range(len(names))]
            parts.append(f"{name} {' '.join(f'{f:.2f}' for f in fractions)} (all {np.mean(fractions):.2f})")
        print(f"  {copies} x radius {radius:2d} px: " + "; ".join(parts))


# (row name, recipe): each recipe as shipped, and Lucid's rotating all the way round. (The Adam
# recipes without their redirected ReLU steps gave the same images to the last digit on both
# CNNs: the rule never fires on a trained CNN.)
VARIANTS = [("yosinski", "yosinski"), ("fourier", "fourier"), ("fourier, any rotation", ki.visualize.fourier_recipe(180)),
            ("maco", "maco")]


def judge_recipes(title, model, judges, real_images, real_labels, names, steps, seeds, variants=VARIANTS):
    """Each recipe's class models of `model`, per ascent seed, put to each judge of `judges`
    (name -> model; the first one's answers are detailed); prints the counts and returns the
    first seed's sheet rows and their labels."""
    import time

    logits = ki.targets.Scorer(model)(real_images).numpy()
    best = [logits[real_labels == c, c].max() for c in range(len(names))]
    print(f"{title}: best of {len(real_labels)} real images' logit per class: "
          f"{', '.join(f'{n} {b:.1f}' for n, b in zip(names, best))}")
    rows, labels = [], []
    detailed = next(iter(judges))
    for name, recipe in variants:
        counts = {judge: [] for judge in judges}
        for seed in seeds:
            start = time.perf_counter()
            images = ki.ClassModelVisualization(model, recipe=recipe).visualize(steps=steps, seed=seed)
            seconds = time.perf_counter() - start
            own = ki.targets.Scorer(model)(images).numpy()
            for judge_name, judge in judges.items():
                p = judge.predict(images, verbose=0)
                hits = p.argmax(1) == np.arange(len(names))
                # A grey or washed-out image can land in the judge's class by default: a recognised
                # class model counts only where it also beats the best real image's logit on the CNN.
                strong = hits & (np.diag(own) > np.asarray(best))
                counts[judge_name].append((int(hits.sum()), int(strong.sum())))
                if judge_name == detailed:
                    print(f"{name:22s} seed {seed}: recognised by the judge {hits.sum()} of {len(names)}, "
                          f"{strong.sum()} of them above the best real logit (judge's probability of the class: "
                          f"{', '.join(f'{p[c, c]:.2f}' for c in range(len(names)))}; its top classes "
                          f"{[names[k] for k in p.argmax(1)]}); CNN logits "
                          f"{', '.join(f'{own[c, c]:.1f}' for c in range(len(names)))}; {seconds:.0f} s")
            if seed == seeds[0]:
                rows.append(list(images))
                labels.append(f"{name.replace(', ', chr(10))}\n{counts[detailed][-1][0]} of {len(names)}\nrecognised")
        for judge_name, judged in counts.items():
            print(f"{name:22s} seeds {list(seeds)}, judge {judge_name!r}: recognised {[c[0] for c in judged]}, of "
                  f"them above the best real logit {[c[1] for c in judged]}")
    return rows, labels


def vis_activation_maximization(model, classes, steps):
    try:
        from tf_keras_vis.activation_maximization import ActivationMaximization
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    maximization = ActivationMaximization(model, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore(list(classes))
    # One image per class, started like ours (uniform noise in the input range).
    seed = np.random.default_rng(0).uniform(size=(len(classes), 64, 64, 3)).astype("float32")
    return lambda: maximization(score, seed_input=seed, steps=steps, input_range=(0.0, 1.0))


def evidence(steps, docs, cache=None, seeds=(0,)):
    import os
    import time

    start = time.perf_counter()
    # A model's file name changes with its recipe, so a cache of an older one is not reused.
    model = cached(cache, "cnn.keras", lambda: ki.models.train_on_shapes(seed=0, verbose=0)[0])
    judge = cached(cache, "judge_copies.keras", lambda: train_judge()[0])
    # The judge trained on single shapes only (the earlier instrument), as a second opinion.
    single = cached(cache, "judge_broad.keras", lambda: train_judge(copies=False)[0])
    held_out = ki.datasets.shapes(500, seed=4321)
    names = held_out.class_names
    library = [accuracy(m, held_out.images, held_out.labels) for m in (model, judge, single)]
    print(f"models ready in {time.perf_counter() - start:.0f} s (trained, or loaded from --cache); held-out accuracy on "
          f"the library's shapes: CNN {library[0]:.3f}, judge {library[1]:.3f}, single-shape judge {library[2]:.3f}; "
          f"the judge on its validation shapes {accuracy(judge, *judge_shapes(1250, 12, copies=True)):.3f}")
    # The judge checked as an instrument: held-out clean shapes at each size (50 per class and size).
    print("the judge on held-out clean shapes (solid, random colour, rotation and position, on grey), "
          f"recognised fraction per class {list(names)}; the CNN's for comparison:")
    check_on_clean_shapes({"judge": judge, "single-shape judge": single, "CNN": model}, names)
    judges = {"copies": judge, "single shapes": single}
    real = ki.datasets.shapes(1000, seed=0)
    rows, labels = judge_recipes("the CNN", model, judges, real.images, real.labels, names, steps, seeds)
    # A CNN that learned shapes: the same architecture (twice as wide) trained on broad shapes
    # (other seeds than the judge's), checked on the clean shapes as the judge was.
    start = time.perf_counter()
    shapes_cnn = cached(cache, "cnn_shapes_w32.keras", lambda: train_shapes_cnn()[0])
    val = judge_shapes(10000 // 8, 32)
    print(f"\nA CNN that learned shapes (reference_cnn, width 32, trained on broad single shapes, seeds 31 and 32) "
          f"ready in {time.perf_counter() - start:.0f} s; validation accuracy {accuracy(shapes_cnn, *val):.3f}; on the "
          f"library's shapes {accuracy(shapes_cnn, held_out.images, held_out.labels):.3f}")
    check_on_clean_shapes({"shapes CNN": shapes_cnn}, names)
    real_broad = judge_shapes(1000, seed=33)
    shape_rows, shape_labels = judge_recipes("the shapes CNN", shapes_cnn, judges, *real_broad, names, steps, seeds)
    # A control: the same architecture untrained (two initializations). Its class models are
    # noise to a person; a judge naming them right more often than chance (1 in 4) would be
    # naming the recipe's look, not the class.
    import keras

    for init in (0, 1):
        keras.utils.set_random_seed(init)
        untrained = ki.reference_cnn(width=32, name="untrained")
        judge_recipes(f"control: the untrained CNN, initialization {init}", untrained, judges, *real_broad, names,
                      steps, seeds, variants=[v for v in VARIANTS if v[0].startswith("fourier")])
    # Deep Dream on a class: how far it moves a photo, and how far it moves the class.
    from keras_interp.metrics.randomization import ssim

    photos = ki.datasets.shapes(8, seed=99)
    moved = []
    for photo, label in zip(photos.images, photos.labels):
        target = int((label + 1) % len(names))
        dream = ki.DeepDream(model, target=target).dream(photo, octaves=3, steps=20, seed=0)
        p = model.predict(np.stack([photo, dream]), verbose=0)[:, target]
        moved.append((np.abs(dream - photo).mean() / np.ptp(photo),
                      float(ssim(photo[None].mean(-1), dream[None].mean(-1))[0]), p[0], p[1]))
    moved = np.array(moved)
    print(f"Deep Dream toward the next class (8 shapes, 3 octaves x 20 steps): mean |change| "
          f"{moved[:, 0].mean():.3f} of the range, SSIM to the photo {moved[:, 1].mean():.2f} (lowest "
          f"{moved[:, 1].min():.2f}), the class's probability {moved[:, 2].mean():.3f} -> {moved[:, 3].mean():.3f}")
    if docs:
        for rows_, labels_, name in ((rows, labels, "class_model_recipes.png"),
                                     (shape_rows, shape_labels, "class_model_recipes_shapes.png")):
            sheet = ki.images.grid(rows_, col_labels=list(names), row_labels=labels_, cell_size=(128, 128),
                                   row_label_width=110)
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", name)
            print(f"wrote {ki.images.save(path, sheet)}")
        # Diversity: three seeds against three images made to differ, for two channels of relu3_1.
        generator = ki.FeatureVisualization(model, "relu3_1")
        seeds = [generator.visualize([3, 7], steps=128, seed=seed) for seed in range(3)]
        diverse = generator.visualize([3, 7], steps=128, seed=0, diversity=3)
        rows = [[seeds[k][c] for c in (0, 1) for k in range(3)], [diverse[i] for i in range(6)]]
        sheet = ki.images.grid(rows, col_labels=["channel 3"] * 3 + ["channel 7"] * 3,
                               row_labels=["seeds 0, 1, 2", "diversity=3"], cell_size=(96, 96), row_label_width=110)
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "diversity.png")
        print(f"wrote {ki.images.save(path, sheet)}")


def main():
    parser = batch_parser(__doc__)
    parser.set_defaults(batch=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--evidence", action="store_true", help="compare the recipes (see the docstring)")
    parser.add_argument("--docs", action="store_true")
    parser.add_argument("--cache", help="with --evidence: a folder keeping the two trained models between runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="with --evidence: the ascent seeds each recipe runs with (the sheet shows the first)")
    args = parser.parse_args()
    if args.evidence:
        return evidence(args.steps, args.docs, args.cache, tuple(args.seeds))

    classes = list(range(args.batch))
    model = ki.reference_cnn(num_classes=args.batch)
    x = np.random.default_rng(0).uniform(size=(args.batch, 64, 64, 3)).astype("float32")
    fb = forward_backward_timer(model, x)
    print(f"limit: compiled forward+backward of {args.batch} images {fb() * 1e3:.1f} ms (re-measured beside each method)")

    generator = ki.ClassModelVisualization(model, recipe="yosinski")  # the pixel recipe; Fourier's below
    seconds, limit = paired(lambda: generator.visualize(classes, steps=args.steps), fb, rounds=args.repeats)
    peer = vis_activation_maximization(model, classes, args.steps)
    peers = {"tf-keras-vis": try_peer("tf-keras-vis", peer, args.repeats)} if peer else {}
    per_step = {k: v / args.steps if isinstance(v, float) else v for k, v in peers.items()}
    report([(f"class-model step ({args.batch} classes)", seconds / args.steps, limit, per_step)])
    for name, value in per_step.items():
        if isinstance(value, float):
            print(f"  {name}: {value * 1e3:.1f} ms per step; ours {seconds / args.steps * 1e3:.1f} ms "
                  f"({value / (seconds / args.steps):.1f}x faster)")
    print(f"  traces of our step function: {generator.trace_count}")

    # The other recipes: limit = the same forward+backward plus the parameterization's own pass
    # (its FFT and colour mapping, forward and backward), measured alone.
    import tensorflow as tf

    for recipe in ("fourier", "maco"):
        generator = ki.ClassModelVisualization(model, recipe=recipe)
        generator.visualize(classes, steps=2)  # builds the engine, traces
        engine = generator._engine(args.steps)
        params = tf.constant(engine.parameterization.initial(len(classes), generator.image_shape, 0))

        @tf.function
        def parameterization_pass(p, engine=engine):
            with tf.GradientTape() as tape:
                tape.watch(p)
                total = tf.reduce_sum(engine.images(p))
            return tape.gradient(total, p)

        parameterization_pass(params)
        own = lambda: timed(lambda: parameterization_pass(params).numpy(), repeats=5)  # noqa: E731
        seconds, limit = paired(lambda: generator.visualize(classes, steps=args.steps), lambda: fb() + own(),
                                rounds=args.repeats)
        print(f"  {recipe} step: {seconds / args.steps * 1e3:.1f} ms, limit (forward+backward + its "
              f"parameterization) {limit * 1e3:.1f} ms, ratio {seconds / args.steps / limit:.2f}")

    dream = ki.DeepDream(model, layers=["relu2_2", "relu3_2"])
    photo = np.random.default_rng(1).uniform(0.2, 0.8, size=(768, 1024, 3)).astype("float32")
    print("\nDeep Dream on a 1024x768 photo (one octave, 4 steps; memory: peak resident-memory growth of")
    print("the first call, in a fresh process per tile size):")
    for tile in (256, 1024):
        run = lambda: dream.dream(photo, octaves=1, steps=4, tile_size=tile)  # noqa: E731
        seconds = timed(run, repeats=2, warmup=1)  # the warm-up call traces
        print(f"  tiles of {tile:4d}: {seconds / 4:.2f} s per step ({seconds / 4 / (768 * 1024) * 1e9:.0f} ns per pixel), "
              f"peak memory growth {_dream_memory(tile):.0f} MiB")


_MEMORY_PROBE = """
import sys, numpy as np, keras_interp as ki
from common import peak_rss_growth
model = ki.reference_cnn(num_classes=8)
dream = ki.DeepDream(model, layers=["relu2_2", "relu3_2"])
photo = np.random.default_rng(1).uniform(0.2, 0.8, size=(768, 1024, 3)).astype("float32")
_, grown = peak_rss_growth(lambda: dream.dream(photo, octaves=1, steps=2, tile_size=int(sys.argv[1])))
print(grown / 2**20)
"""


def _dream_memory(tile):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tile)], capture_output=True, text=True, env=env,
                         cwd=here)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
