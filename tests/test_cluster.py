"""Large jobs: the TF_CONFIG cluster, the job's records, two workers against one process, a killed
run resumed, and one memory-mapped array per method."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import tiny_cnn
from keras_interp import cli
from keras_interp.jobs import STATE, Cluster, Job, JobError

SIZE = 16


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    """A saved tiny CNN and 21 images (one of them unreadable) in a folder."""
    root = tmp_path_factory.mktemp("jobs")
    tiny_cnn(input_shape=(SIZE, SIZE, 3)).save(root / "model.keras")
    rng = np.random.default_rng(1)
    folder = root / "images"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 256, (SIZE, SIZE + 4 * (i % 2), 3), dtype=np.uint8))
    (folder / "07_broken.png").write_text("not an image")
    return root


def test_the_cluster_is_read_from_tf_config_as_tensorflow_reads_it():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"], "ps": ["d:1"]}
    ranks = [Cluster.from_tf_config(json.dumps({"cluster": cluster, "task": {"type": t, "index": i}}))
             for t, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    assert [(c.rank, c.count, c.chief) for c in ranks] == [(0, 3, True), (1, 3, False), (2, 3, False)]
    without_chief = {"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}}
    assert Cluster.from_tf_config(json.dumps(without_chief)).chief  # worker 0 is the chief, as in TensorFlow
    with pytest.raises(JobError, match="TF_CONFIG environment variable, which is not set"):
        Cluster.from_tf_config("")
    with pytest.raises(JobError, match="must be JSON"):
        Cluster.from_tf_config("{cluster")
    with pytest.raises(JobError, match="ps 0 is not one of the cluster's chief and worker tasks"):
        Cluster.from_tf_config(json.dumps({"cluster": cluster, "task": {"type": "ps", "index": 0}}))
    with pytest.raises(JobError, match="worker 2 is not one"):
        Cluster.from_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}))


def test_records_survive_a_cut_line_and_count_only_for_their_job(tmp_path):
    out = str(tmp_path / "out")
    job = Job(out, {"a": 1}, units=5).start()
    assert job.todo() == [0, 1, 2, 3, 4]
    job.record(0, {"rows": [1]})
    job.record(3, {"rows": [4]})
    with open(job.records_path, "a") as handle:  # a kill in the middle of writing unit 1's line
        handle.write('{"launch": "' + job.launch + '", "unit": 1, "pay')
    job.close()  # the process stops
    # Not resumed: the chief needs an empty folder or --overwrite, which starts afresh.
    with pytest.raises(JobError, match="exists and is not empty; choose another --out, pass --overwrite, or --resume"):
        Job(out, {"a": 1}, units=5).start()
    resumed = Job(out, {"a": 1}, units=5, resume=True).start()
    assert resumed.todo() == [1, 2, 4] and open(resumed.records_path).read().endswith("}\n")  # the cut line is gone
    resumed.record(1, {"rows": [2]})
    with pytest.raises(JobError, match="holds another job \\(it differs in a\\)"):
        Job(out, {"a": 2}, units=5, resume=True).start()
    with pytest.raises(JobError, match="no job to resume"):
        Job(str(tmp_path / "empty"), {"a": 1}, units=5, resume=True).start()
    with pytest.raises(JobError, match="another process is already worker 0"):
        Job(out, {"a": 1}, units=5, resume=True).start()
    resumed.close()
    # Two workers: each takes every other unit; the chief gathers them in order.
    chief = Job(out, {"a": 1}, units=5, cluster=Cluster(0, 2), resume=True).start()
    with pytest.raises(JobError, match="TF_CONFIG names 3 workers but the chief's names 2"):
        Job(out, {"a": 1}, units=5, cluster=Cluster(1, 3), wait=5).start()
    other = Job(out, {"a": 1}, units=5, cluster=Cluster(1, 2), wait=5).start()
    assert other.launch == chief.launch and other.todo() == [] and chief.todo() == [2, 4]
    chief.close()
    fresh = Job(out, {"a": 1}, units=5, overwrite=True).start()
    assert fresh.todo() == [0, 1, 2, 3, 4] and not other.still_current()
    for unit in range(5):
        fresh.record(unit, unit * 10)
    assert fresh.gather(quiet=True) == [0, 10, 20, 30, 40]
    fresh.merged()
    # A worker started after the merge joins no finished launch: it waits for the chief's next one.
    with pytest.raises(JobError, match="holds only a finished run of this job"):
        Job(out, {"a": 1}, units=5, cluster=Cluster(1, 2), wait=0).start()
    with pytest.raises(JobError, match="worker 1: after 0 s .* holds another job"):
        Job(out, {"a": 3}, units=5, cluster=Cluster(1, 2), wait=0).start()
    with pytest.raises(JobError, match="--wait must be a number of seconds >= 0"):
        Job(out, {"a": 1}, units=5, wait=float("nan"))
    with pytest.raises(JobError, match="'cluster' mapping each task type to a list"):
        Cluster.from_tf_config(json.dumps({"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}))


def _outputs(folder):
    """{name: bytes} of every output file (the job's own records left out)."""
    found = {}
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != STATE]
        for name in names:
            path = os.path.join(base, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


COMMANDS = [  # every command; a seeded method (draws per row) and one with reference examples (the first batch)
    ("explain", ["--method", "saliency", "--method", "smoothgrad", "--batch-size", "7"]),
    ("memmap", ["--method", "saliency", "--method", "expected_gradients", "--batch-size", "3", "--format", "memmap"]),
    ("evaluate", ["--method", "expected_gradients", "--measure", "deletion", "--measure", "mu_fidelity", "--steps",
                  "4", "--batch-size", "7"]),
    ("search", ["--layer", "conv2", "--top-k", "3", "--batch-size", "1"]),
]


def _argv(root, name, extra, out):
    command = "explain" if name == "memmap" else name
    return [command, str(root / "model.keras"), str(root / "images"), "--quiet", "--out", str(out)] + extra


def test_two_workers_write_what_one_process_writes(job_files, tmp_path):
    root = job_files
    script = (f"import sys\nfrom keras_interp import cli\nfor argv in {json.dumps([_argv(root, n, e, tmp_path / 'two' / n) for n, e in COMMANDS])}:\n"
              "    code = cli.main(argv + ['--strategy', 'multiworker', '--wait', '120'])\n"
              "    print(code)\n")
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
               for i in range(2)]
    for name, extra in COMMANDS:  # meanwhile, the same commands in this process
        assert cli.main(_argv(root, name, extra, tmp_path / "one" / name)) == 1
    said, codes = "", []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        said, codes = said + err, codes + [out.split()]
    # The chief says 1 (an input could not be read); a worker says 1 where its share held it.
    assert codes[0] == ["1"] * len(COMMANDS) and all(code in ("0", "1") for code in codes[1]), codes
    # The unreadable input is said once per command, by the worker whose share holds it.
    assert said.count("skipped") == len(COMMANDS) and said.count("07_broken.png") == len(COMMANDS), said
    for name, _ in COMMANDS:
        one, two = _outputs(tmp_path / "one" / name), _outputs(tmp_path / "two" / name)
        assert sorted(one) == sorted(two), name
        for file in one:
            if file.startswith("evaluation.") and not file.endswith(".png"):
                # The same table; only the seconds column (the explainers' time) differs.
                drop = (lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]) if file.endswith(".csv") \
                    else (lambda text: [line.rsplit("|", 2)[0] for line in text.splitlines()])
                assert drop(one[file].decode()) == drop(two[file].decode()), file
            else:
                assert one[file] == two[file], f"{name}: {file} differs"
    # Both workers worked: each recorded its own units.
    records = [open(tmp_path / "two" / "explain" / STATE / f"records-{r}.jsonl").read().count("\n") for r in (0, 1)]
    assert records == [2, 1]  # 3 units of 7 inputs
    maps = np.load(tmp_path / "two" / "memmap" / "saliency.npy", mmap_mode="r")
    broken = sorted(os.listdir(root / "images")).index("07_broken.png")
    assert maps.shape == (21, SIZE, SIZE) and np.isnan(maps[broken]).all()
    assert np.isfinite(np.delete(maps, broken, 0)).all()


def test_a_killed_run_resumes_without_losing_or_repeating_anything(job_files, tmp_path):
    root = job_files
    argv = ["explain", str(root / "model.keras"), str(root / "images"), "--method", "occlusion", "--method",
            "smoothgrad", "--batch-size", "1", "--quiet", "--out", str(tmp_path / "killed")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, "-m", "keras_interp"] + argv, env=env, stderr=subprocess.DEVNULL)
    records = tmp_path / "killed" / STATE / "records-0.jsonl"
    deadline = time.monotonic() + 120
    while (not records.exists() or records.read_text().count("\n") < 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = records.read_text().count("\n")
    assert 4 <= done < 21, f"the run was not stopped part way ({done} of 21 units recorded)"
    assert not (tmp_path / "killed" / "explanations.csv").exists()
    # What a kill in the middle of writing leaves: a record cut short and a half-written map.
    with open(records, "a") as handle:
        handle.write('{"launch": "')
    (tmp_path / "killed" / "19_png.occlusion.npy").write_bytes(b"\x93NUMPY half")
    assert cli.main(argv[:-2] + ["--out", str(tmp_path / "killed")]) == 2  # not without --resume
    assert cli.main(argv + ["--resume"]) == 1
    assert cli.main(argv[:-1] + [str(tmp_path / "whole")]) == 1
    assert _outputs(tmp_path / "killed") == _outputs(tmp_path / "whole")
    units = [json.loads(line)["unit"] for line in records.read_text().splitlines()]
    assert sorted(units) == list(range(21))  # each unit once: the ones done before the kill were skipped


def test_merging_the_searches_of_parts_gives_the_search_of_the_whole(cnn):
    import keras_interp as ki
    from keras_interp.search import merge_results

    rng = np.random.default_rng(3)
    x = rng.uniform(size=(30, 12, 12, 3)).astype("float32")
    x[17] = x[4]  # a tie across the parts: the lower index ranks first in both
    search = ki.DatasetSearch(cnn, "conv2")
    whole = search.search(x, top_k=5, batch_size=8)
    parts = []
    for part in (np.arange(0, 11), np.arange(11, 30)):
        found = search.search(x[part], top_k=5, batch_size=8)
        parts.append(dataclasses.replace(found, indices=part[found.indices]))
    merged = merge_results(parts[::-1], 5)
    for field in ("values", "indices", "positions", "boxes", "windows", "channels"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field), err_msg=field)
    # Merged without their windows (what `keras-interp search` keeps per segment), then cut at the end.
    bare = merge_results([dataclasses.replace(p, windows=None) for p in parts], 5)
    assert bare.windows is None
    np.testing.assert_array_equal(search.windows_of(bare, dict(enumerate(x))).windows, whole.windows)
    with pytest.raises(ValueError, match="same layer and channels"):
        merge_results([parts[0], search.search(x, top_k=5, channels=[0, 1])], 5)


def test_explain_with_logits_gives_explain_maps_and_the_scorer_logits_from_one_pass(cnn, images):
    import keras_interp as ki
    from keras_interp.targets import Scorer

    logits = np.asarray(Scorer(cnn)(images))
    for explainer in (ki.Saliency(cnn), ki.GradCAM(cnn)):  # its own pass, and the fallback forward
        maps, found = explainer.explain_with_logits(images)
        np.testing.assert_allclose(maps, explainer.explain(images), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(found, logits, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # logits, not the softmax the model ends with


def test_memmap_rows_of_unreadable_inputs_are_nan_even_before_any_array_exists(tmp_path):
    root = tmp_path
    tiny_cnn(input_shape=(SIZE, SIZE, 3)).save(root / "model.keras")
    folder = root / "images"
    folder.mkdir()
    for name in ("a_broken.png", "b_broken.png"):  # the whole first unit: nothing to make the arrays from
        (folder / name).write_text("not an image")
    rng = np.random.default_rng(2)
    for i in range(3):
        cv2.imwrite(str(folder / f"c{i}.png"), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    assert cli.main(["explain", str(root / "model.keras"), str(folder), "--method", "saliency", "--format", "memmap",
                     "--batch-size", "2", "--quiet", "--out", str(root / "out")]) == 1
    maps = np.load(root / "out" / "saliency.npy")
    assert np.isnan(maps[:2]).all() and np.isfinite(maps[2:]).all() and np.abs(maps[2:]).sum() > 0
    # No temporary is left beside the outputs.
    assert sorted(name for name in os.listdir(root / "out") if name != STATE) == ["explanations.csv", "saliency.npy"]


def test_a_diverged_model_is_said_not_left_in_nan_maps(tmp_path, capsys):
    model = tiny_cnn(input_shape=(SIZE, SIZE, 3))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    model.save(tmp_path / "nan.keras")
    cv2.imwrite(str(tmp_path / "a.png"), np.full((SIZE, SIZE, 3), 128, np.uint8))
    code = cli.main(["explain", str(tmp_path / "nan.keras"), str(tmp_path / "a.png"), "--method", "saliency",
                     "--format", "memmap", "--quiet", "--out", str(tmp_path / "out")])
    assert code == 0 and np.isnan(np.load(tmp_path / "out" / "saliency.npy")).all()
    assert "outputs are not finite for 1 of 1 images" in capsys.readouterr().err
