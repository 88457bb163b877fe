"""The keras-interp command: subcommands on a model saved in the test, files written, exit codes."""

import csv
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

import keras_interp as ki
from conftest import tiny_cnn
from keras_interp import cli
from keras_interp.callbacks import METHODS

SIZE = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved tiny CNN and a folder of images in several formats, one of them not an image."""
    root = tmp_path_factory.mktemp("cli")
    model = tiny_cnn(input_shape=(SIZE, SIZE, 3))
    model.save(root / "model.keras")
    rng = np.random.default_rng(0)
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "sub" / "grey16.png"), rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16))
    cv2.imwrite(str(folder / "c.jpg"), rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "d.bmp"), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    (folder / "broken.png").write_text("not an image")
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(h))
    keras.Model(inputs, keras.layers.Dense(2)(h)).save(root / "lambda.keras")
    keras.Model(inputs, keras.layers.Conv2D(2, 1, padding="same")(inputs)).save(root / "segmentation.keras")
    (root / "fake.keras").write_text("not a zip")
    return root, model


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_and_module_entry_points(files):
    root, _ = files
    assert shutil.which("keras-interp"), "setup.py's console_scripts entry point is not installed"
    version = subprocess.run(["keras-interp", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"keras-interp {ki.__version__}"
    layers = subprocess.run([sys.executable, "-m", "keras_interp", "layers", str(root / "model.keras")],
                            capture_output=True, text=True, cwd=root)
    assert layers.returncode == 0, layers.stderr
    rows = {line.split()[0]: line for line in layers.stdout.splitlines()[1:]}
    assert rows["conv2"].endswith("gradcam, search, deconvnet, cam") and "(None, 8, 8, 6)" in rows["conv2"]
    assert rows["predictions"].split()[-1] == "3)"  # a Dense output: usable for nothing listed
    # In a fresh process stderr holds the one error line, not TensorFlow's C++ start-up lines.
    failed = subprocess.run(["keras-interp", "explain", str(root / "model.keras"), str(root / "nothing.png"),
                             "--method", "saliency"], capture_output=True, text=True, cwd=root)
    assert failed.returncode == 2 and failed.stderr == "keras-interp: error: no such file or folder: " \
        f"{root / 'nothing.png'}\n", failed.stderr
    for command in ("demo", "explain", "layers", "visualize", "dream", "search"):
        helped = subprocess.run(["keras-interp", command, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0 and "usage: keras-interp " + command in helped.stdout


def test_explain_a_folder_writes_sheets_maps_and_a_csv(files, tmp_path, capsys):
    root, model = files
    out = tmp_path / "out"
    code, _, err = run(["explain", root / "model.keras", root / "images", "--method", "gradcam", "--method",
                        "saliency", "--out", out, "--quiet", "--batch-size", "3"], capsys)
    assert code == 1  # one input could not be read; the others are explained
    assert err.count("\n") == 2 and "skipped" in err and "broken.png" in err and "1 of 5 inputs" in err
    names = ["a_png", "c_jpg", "d_bmp", "sub__grey16_png"]
    # .keras-interp holds the job's record (for --resume and the workers' merge).
    assert sorted(os.listdir(out)) == sorted([".keras-interp", "explanations.csv"] + [f"{n}.png" for n in names] +
                                             [f"{n}.{m}.npy" for n in names for m in ("gradcam", "saliency")])
    rows = list(csv.DictReader(open(out / "explanations.csv")))
    files_read = [os.path.join(root, "images", p) for p in ("a.png", "c.jpg", "d.bmp", os.path.join("sub", "grey16.png"))]
    assert [r["file"] for r in rows] == files_read
    # Each image as the command reads it: RGB in [0, 1], 16-bit scaled, grey repeated, centre-cropped
    # to the model's square (a.png is 20 x 24: columns 2 to 21 kept), resized.
    grey = cv2.imread(files_read[3], cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535.0
    np.testing.assert_allclose(cli.read_image(files_read[3], (SIZE, SIZE), 3), np.repeat(grey[..., None], 3, -1))
    bgr = cv2.imread(files_read[0]).astype(np.float32) / 255.0
    np.testing.assert_allclose(cli.read_image(files_read[0], (SIZE, SIZE), 3),
                               cv2.resize(bgr[:, 2:22, ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA), atol=1e-6)
    np.testing.assert_allclose(cli.read_image(files_read[0], (SIZE, SIZE), 3, resize="stretch"),
                               cv2.resize(bgr[..., ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA), atol=1e-6)
    padded = np.zeros((24, 24, 3), np.float32)
    padded[2:22] = bgr[..., ::-1]  # 20 rows, 2 black rows above and below
    np.testing.assert_allclose(cli.read_image(files_read[0], (SIZE, SIZE), 3, resize="pad"),
                               cv2.resize(padded, (SIZE, SIZE), interpolation=cv2.INTER_AREA), atol=1e-6)
    images = np.stack([cli.read_image(f, (SIZE, SIZE), 3) for f in files_read])
    probabilities = model.predict(images, verbose=0)
    for row, p, name, image in zip(rows, probabilities, names, images):
        assert int(row["predicted_class"]) == p.argmax() == int(row["explained_class"])
        assert float(row["confidence"]) == pytest.approx(p.max(), abs=1e-6)
        np.testing.assert_allclose(np.load(out / f"{name}.gradcam.npy"), ki.GradCAM(model).explain(image[None])[0],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.load(out / f"{name}.saliency.npy"), ki.Saliency(model).explain(image[None])[0],
                                   rtol=1e-5, atol=1e-7)
    assert [r["output"] for r in rows] == names
    sheet = cv2.imread(str(out / "a_png.png"))
    assert sheet.shape[1] > 3 * 160  # input + two method columns


def test_target_scaling_and_other_subcommands(files, tmp_path, capsys):
    root, model = files
    image = root / "images" / "d.bmp"
    code, _, _ = run(["explain", root / "model.keras", image, "--method", "occlusion", "--target", "2", "--scale",
                      "0-255", "--mean", "100", "--std", "50", "--out", tmp_path / "e", "--quiet"], capsys)
    assert code == 0
    x = (cli.read_image(str(image), (SIZE, SIZE), 3) * 255.0 - 100.0) / 50.0
    np.testing.assert_allclose(np.load(tmp_path / "e" / "d_bmp.occlusion.npy"),
                               ki.Occlusion(model).explain(x[None], target=2)[0], rtol=1e-5, atol=1e-6)
    assert list(csv.DictReader(open(tmp_path / "e" / "explanations.csv")))[0]["explained_class"] == "2"
    # Not quiet: what was done to a photo of another aspect is said once, in one line.
    code, _, err = run(["explain", root / "model.keras", root / "images" / "a.png", root / "images" / "c.jpg", "--method",
                        "saliency", "--out", tmp_path / "r"], capsys)
    assert code == 0 and err.count("\n") == 1 and "--resize pad, stretch" in err
    assert f"1 of 2 images (first: {root / 'images' / 'a.png'}) have another aspect than the model's 16x16: centre-cropped" in err
    code, _, _ = run(["visualize", root / "model.keras", "--classes", "0", "2", "--steps", "5", "--out",
                      tmp_path / "v", "--quiet"], capsys)
    assert code == 0 and sorted(os.listdir(tmp_path / "v")) == ["class_0.png", "class_2.png", "class_models.png"]
    # Class names: --labels names the classes in the CSV and sheets, and names stand for numbers.
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\n")
    code, _, _ = run(["explain", root / "model.keras", image, "--method", "saliency", "--labels", labels, "--target", "fox",
                      "--out", tmp_path / "named", "--quiet"], capsys)
    row = list(csv.DictReader(open(tmp_path / "named" / "explanations.csv")))[0]
    assert code == 0 and row["explained_class"] == "2" and row["explained_name"] == "fox"
    assert row["predicted_name"] == ["cat", "dog", "fox"][int(row["predicted_class"])]
    code, _, _ = run(["visualize", root / "model.keras", "--classes", "dog", "0", "--labels", labels, "--steps", "2",
                      "--out", tmp_path / "vn", "--quiet"], capsys)
    assert code == 0 and sorted(os.listdir(tmp_path / "vn")) == ["class_0.png", "class_1.png", "class_models.png"]
    labels.write_text("cat\ndog\n")
    code, _, err = run(["explain", root / "model.keras", image, "--method", "saliency", "--labels", labels,
                        "--out", tmp_path / "bad", "--quiet"], capsys)
    assert code == 2 and "has 2 names for the model's 3 classes" in err
    code, _, err = run(["explain", root / "model.keras", image, "--method", "saliency", "--target", "fox",
                        "--out", tmp_path / "bad2", "--quiet"], capsys)
    assert code == 2 and "--target 'fox' is not a class number (pass --labels FILE" in err
    code, _, _ = run(["dream", root / "model.keras", image, "--steps", "2", "--out", tmp_path / "d", "--quiet"], capsys)
    assert code == 0 and cv2.imread(str(tmp_path / "d" / "dream.png")).shape == (SIZE, SIZE, 3)
    assert cv2.imread(str(tmp_path / "d" / "dream_sheet.png")).shape[0] > 256  # photo and dream, labelled
    code, _, _ = run(["dream", root / "model.keras", image, "--target", "1", "--steps", "2", "--out", tmp_path / "dt",
                      "--quiet"], capsys)
    assert code == 0 and cv2.imread(str(tmp_path / "dt" / "dream.png")).shape == (SIZE, SIZE, 3)
    code, _, _ = run(["visualize", root / "model.keras", "--classes", "0", "--recipe", "fourier", "--rotate", "180",
                      "--steps", "2", "--out", tmp_path / "vf", "--quiet"], capsys)
    assert code == 0 and "class_0.png" in os.listdir(tmp_path / "vf")
    for bad, message in ((["--recipe", "maco", "--rotate", "30"], "--rotate belongs to --recipe fourier"),
                         (["--recipe", "fourier", "--rotate", "270"], "--rotate must be in [0, 180]")):
        code, _, err = run(["visualize", root / "model.keras", "--classes", "0", *bad, "--out", tmp_path / "vx"], capsys)
        assert code == 2 and message in err
    code, _, err = run(["search", root / "model.keras", root / "images", "--layer", "conv2", "--top-k", "2",
                        "--channels", "1", "4", "--out", tmp_path / "s", "--quiet"], capsys)
    assert code == 1 and "broken.png" in err  # the readable images are searched
    rows = list(csv.DictReader(open(tmp_path / "s" / "search.csv")))
    assert [(r["channel"], r["rank"]) for r in rows] == [("1", "0"), ("1", "1"), ("4", "0"), ("4", "1")]
    assert os.path.exists(tmp_path / "s" / "search.png")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explain", "{root}/model.keras", "{root}/images", "--method", "gradcm"],
         "unknown method 'gradcm'; choose from ablationcam, attention_rollout, blur_ig, cam, deconvnet, eigencam, "
         "expected_gradients, fem, gradcam"),
        (["explain", "{root}/missing.keras", "{root}/images", "--method", "saliency"], "no such model file"),
        (["explain", "{root}/model.keras", "{root}/nothing", "--method", "saliency"], "no such file or folder"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--out", "{root}/images"],
         "output folder .* exists and is not empty; .* --overwrite"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "gradcam", "--layer", "conv9"],
         "No layer or operation named 'conv9'"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--target", "3"],
         r"--target 3 is out of range: the model has 3 classes \(0 to 2\)"),
        (["layers", "{root}/lambda.keras"], "Lambda layer.* safe mode; pass --unsafe"),
        (["layers", "{root}/images/d.bmp"], r"d.bmp' is not a Keras model file \(a .bmp file\): expected a .keras archive"),
        (["layers", "{root}/images"], r"is a folder \(a TensorFlow SavedModel\?\), not a Keras model file"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--preprocess", "keras.applications.nope"],
         "no keras.applications.nope.preprocess_input"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--mean", "0.5", "0.5"],
         r"scaling options do not fit the model's input \(16, 16, 3\)"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--out", "{root}/model.keras"],
         "--out .*model.keras is a file, not a folder"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "saliency", "--layer", "conv1"],
         "--layer is used by gradcam.*none of saliency takes it"),
        (["explain", "{root}/model.keras", "{root}/images", "--method", "deconvnet", "--layer", "conv1", "--channel", "4"],
         r"--channel 4 is out of range: layer 'conv1' has 4 channels \(0 to 3\)"),
        (["explain", "{root}/segmentation.keras", "{root}/images", "--method", "saliency"],
         r"explain needs a classifier with \(batch, classes\) outputs; .* gives \(None, 16, 16, 2\)"),
        (["layers", "{root}/images/broken.png"], r"broken.png' is not a Keras model file \(a .png file\)"),
        (["layers", "{root}/fake.keras"], "is not a .keras archive"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(files, tmp_path, capsys, argv, message):
    root, _ = files
    argv = [a.format(root=root) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")] if argv[0] == "explain" else []
    code, _, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("keras-interp: error: "), err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_unsafe_loads_a_lambda_model(files, capsys):
    root, _ = files
    code, out, _ = run(["layers", root / "lambda.keras", "--unsafe"], capsys)
    assert code == 0 and "lambda" in out


def test_demo_trains_saves_and_explains_with_every_method(tmp_path, capsys):
    out = tmp_path / "demo"
    code, printed, _ = run(["demo", "--epochs", "1", "--train-size", "64", "--out", out], capsys)
    assert code == 0
    assert {"model.keras", "labels.txt", "explanations.png", "logs", "images"} <= set(os.listdir(out))
    assert (out / "labels.txt").read_text().split() == list(ki.datasets.shapes(1).class_names)
    assert f"--labels {out / 'labels.txt'}" in printed
    sheet = cv2.imread(str(out / "explanations.png"))
    # The input and every method that applies to a CNN (not the rollouts of attention).
    shown = [name for name in METHODS if not ki.registry.METHODS[name].attention]
    assert sheet.shape[0] > 6 * 96 and sheet.shape[1] > len(shown) * 96
    assert os.listdir(out / "logs" / "explanations")
    assert len(os.listdir(out / "images")) == 6  # the sheet's rows, one file each
    assert f"tensorboard --logdir {out / 'logs'}" in printed and f"keras-interp explain {out / 'model.keras'}" in printed
    model = ki.load_model(out / "model.keras")
    assert model.output_shape == (None, 4)
    code, _, err = run(["demo", "--out", out], capsys)
    assert code == 2 and "--overwrite" in err


def test_a_folder_of_300_images_streams_in_bounded_batches(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(300):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    reads = []
    original = cli.read_image
    monkeypatch.setattr(cli, "read_image", lambda *a: reads.append(1) or original(*a))
    files = cli.image_files([str(folder)])
    assert len(files) == 300
    stream = cli.read_units(range(30), files, (8, 8, 3), 10, "crop")
    _, indices, images, _, _ = next(stream)
    assert images.shape == (10, 8, 8, 3) and list(indices) == list(range(10))
    assert len(reads) <= 40  # read ahead by the prefetch only, not the whole folder
    total = 10 + sum(len(i) for _, i, _, _, _ in stream)
    assert total == 300 and len(reads) == 300


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_every_explainer_gives_the_same_maps_after_save_and_load(tmp_path, images, suffix):
    model = tiny_cnn()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = ki.load_model(path)
    # The legacy HDF5 file differs in how it loads, not in what the methods do with it: one of each
    # family there (gradient, path, CAM, perturbation, deconvnet); every method on .keras.
    cnn_methods = [name for name in METHODS if not ki.registry.METHODS[name].attention]
    chosen = cnn_methods if suffix == ".keras" else ("saliency", "integrated_gradients", "gradcam", "occlusion", "deconvnet")
    for name in chosen:
        make = METHODS[name]
        np.testing.assert_allclose(make(loaded, 0, baselines=images).explain(images),
                                   make(model, 0, baselines=images).explain(images),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_strategy_mirrored_spreads_batches_over_two_devices_with_equal_maps(files, tmp_path):
    root, _ = files
    script = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from keras_interp import cli
devices = cli.strategy_devices("mirrored")
assert len(devices) == 2
seen = []

class Probe:
    def explain(self, x, target=None):
        seen.append(tf.identity(tf.constant(x)).device)  # where this part ran
        return np.zeros(x.shape[:3], "float32")

assert cli.spread(Probe(), np.zeros((5, 2, 2, 3), "float32"), None, devices).shape == (5, 2, 2)
assert sorted(d[-5:] for d in seen) == ["CPU:0", "CPU:1"], seen
for out, extra in (("one", []), ("two", ["--strategy", "mirrored"])):
    code = cli.main(["explain", {str(root / "model.keras")!r}, {str(root / "images")!r}, "--method", "gradcam",
                     "--method", "smoothgrad", "--batch-size", "3", "--quiet", "--out", {str(tmp_path)!r} + "/" + out]
                    + extra)
    assert code == 1, code
for name in os.listdir({str(tmp_path)!r} + "/one"):
    if name.endswith(".npy"):
        a = np.load({str(tmp_path)!r} + "/one/" + name)
        b = np.load({str(tmp_path)!r} + "/two/" + name)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("equal")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "equal" in done.stdout, done.stderr[-2000:]


def test_output_names_never_collide_and_method_names_match_the_registry(tmp_path, files, capsys):
    root, _ = files
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copy(root / "images" / "d.bmp", tmp_path / folder / "x.png")
    shutil.copy(root / "images" / "d.bmp", tmp_path / "one" / "x.bmp")
    code, _, _ = run(["explain", root / "model.keras", tmp_path / "one", tmp_path / "two", "--method", "saliency",
                      "--out", tmp_path / "out", "--quiet"], capsys)
    rows = list(csv.DictReader(open(tmp_path / "out" / "explanations.csv")))
    assert code == 0 and [r["output"] for r in rows] == ["one__x_bmp", "one__x_png", "two__x_png"]
    assert cli.unique_names(["a/x.png", "a__x.png"]) == ["a__x_png", "a__x_png_2"]
    assert cli._METHOD_NAMES == tuple(METHODS)


def test_deconvnet_channel_mode_and_notes(files, tmp_path, capsys):
    root, model = files
    image = root / "images" / "d.bmp"
    code, _, err = run(["explain", root / "model.keras", image, "--method", "deconvnet", "--layer", "conv2",
                        "--channel", "5", "--out", tmp_path / "c", "--quiet"], capsys)
    assert code == 0 and err == ""
    x = cli.read_image(str(image), (SIZE, SIZE), 3)[None]
    np.testing.assert_allclose(np.load(tmp_path / "c" / "d_bmp.deconvnet.npy"),
                               ki.Deconvnet(model, layer="conv2").explain(x, target=5)[0], rtol=1e-5, atol=1e-7)
    assert list(csv.DictReader(open(tmp_path / "c" / "explanations.csv")))[0]["explained_channel"] == "5"
    # A model without a GAP head: "cam" falls back to Grad-CAM and says so in one note line.
    flat = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(2)])
    flat.save(tmp_path / "flat.keras")
    code, _, err = run(["explain", tmp_path / "flat.keras", image, "--method", "cam", "--out", tmp_path / "f",
                        "--quiet"], capsys)
    assert code == 0 and err.startswith("keras-interp: note: ") and err.count("\n") == 1 and "Grad-CAM" in err


def test_progress_bars_write_one_plain_line_when_stdout_is_not_a_terminal(capsys):
    from keras_interp.compat import progress_bar

    bar = progress_bar(3, unit_name="image", stateful_metrics=["images/s"])
    for done in (1, 2, 3):
        bar.update(done, values=[("images/s", 10.0)])
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\r" not in printed and "\b" not in printed
    assert printed.count("\n") == 1 and printed.startswith("3/3")


def test_help_says_each_default_once_and_offers_seed_only_where_something_is_random(capsys):
    for command in ("demo", "explain", "layers", "visualize", "dream", "search"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "(default: None)" not in text and "(default: False)" not in text, command
        options = text.split(" --")[1:]
        assert all(option.count("default") <= 1 for option in options), [o for o in options if o.count("default") > 1]
        assert ("--seed" in text) == (command in ("demo", "explain", "visualize", "dream")), command
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED seed of the random methods' draws (smoothgrad" in text and "(default: 0)" in text
    assert "--out OUT output folder (default: explained)" in text


def test_class_names_saved_with_a_model_name_the_classes_unless_labels_are_given(tmp_path):
    import types

    model = tiny_cnn()  # 3 classes
    plain = types.SimpleNamespace(labels=None)
    assert cli.labels_for(plain, model, 3) is None  # Keras keeps none
    model.class_names = ["cat", "dog", "fox"]
    assert cli.labels_for(plain, model, 3) == ["cat", "dog", "fox"]
    assert cli.model_class_names(model, 4) is None  # not as many as the classes: not names of them
    model.class_names = "cat dog fox"
    assert cli.model_class_names(model, 3) is None
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n")
    model.class_names = ["cat", "dog", "fox"]
    assert cli.labels_for(types.SimpleNamespace(labels=str(path)), model, 3) == ["a", "b", "c"]  # the file wins
