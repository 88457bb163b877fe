"""Throughput of `keras-interp explain` over a large folder, against the model's own limit.

    python benchmarks/bench_jobs.py [--images 10000] [--size 64] [--batch-size 64] [--formats memmap npy] [--rounds 2]

Writes a folder of small PNG images (the built-in shapes; kept in --cache between runs) and the
reference CNN (random weights: the arithmetic is what counts), then for each --format runs
`keras-interp explain MODEL FOLDER --method saliency` in a fresh process and prints:

- images/s of the whole command (reading and decoding the files, the predictions for the CSV,
  the maps, writing them and the CSV);
- the limit: a compiled forward+backward of the same model on the same batches, from memory;
- their ratio (the command's throughput / the limit's; the target is >= 0.8), for the whole
  command (start-up, model loading and tracing included) and after its first batch;
- the command's peak resident memory on a fifth of the images and on all (flat: no growth with N).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import forward_backward_step  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_interp as ki  # noqa: E402
from keras_interp.jobs import STATE  # noqa: E402


def image_folder(cache, count, size):
    """`count` PNG files of the built-in shapes, size x size, written once into `cache`."""
    folder = os.path.join(cache, f"shapes_{count}_{size}")
    if os.path.isdir(folder) and len(os.listdir(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for start in range(0, count, 1000):
        data = ki.datasets.shapes(min(1000, count - start), image_size=size, seed=start)
        for i, image in enumerate(data.images):
            cv2.imwrite(os.path.join(folder, f"{start + i:06d}.png"), cv2.cvtColor((image * 255).astype(np.uint8),
                                                                               cv2.COLOR_RGB2BGR))
    return folder


def limit_seconds(model, folder, batch_size):
    """Seconds of a compiled forward+backward over every image of the folder, batch by batch,
    from memory (the best of two passes)."""
    files = sorted(os.listdir(folder))
    images = np.stack([cv2.cvtColor(cv2.imread(os.path.join(folder, f)), cv2.COLOR_BGR2RGB) for f in files])
    images = images.astype(np.float32) / 255.0
    step = forward_backward_step(model)
    batches = [tf.constant(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    step(batches[0]).numpy()
    step(batches[-1]).numpy()  # the last, shorter batch traced too
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        for batch in batches:
            step(batch).numpy()
        best = min(best, time.perf_counter() - start)
    return best


CHILD = """
import json, os, sys, threading, time
from keras_interp import cli
argv, records = json.loads(sys.argv[1]), sys.argv[2]
first = []

def watch():  # when the first unit is recorded: tracing and start-up are behind
    while not first:
        if os.path.exists(records) and open(records).read().count("\\n"):
            first.append(time.perf_counter())
        time.sleep(0.005)

threading.Thread(target=watch, daemon=True).start()
start = time.perf_counter()
code = cli.main(argv)
end = time.perf_counter()
# VmHWM: this process's own peak (ru_maxrss would carry the parent's, which holds every image, over exec).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "seconds": end - start, "steady": end - (first or [start])[0], "peak_rss": peak * 1024}))
"""


def explain_run(model_path, folder, out, batch_size, format):
    """The command in a fresh process: {seconds, steady (after the first unit), peak_rss}."""
    shutil.rmtree(out, ignore_errors=True)
    argv = ["explain", model_path, folder, "--method", "saliency", "--format", format, "--batch-size",
            str(batch_size), "--quiet", "--out", out]
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv), os.path.join(out, STATE, "records-0.jsonl")],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == 0, done.stderr[-2000:]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--formats", nargs="+", default=["memmap", "npy"], choices=["memmap", "npy"])
    parser.add_argument("--cache", default="/tmp/bench_jobs")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    folder = image_folder(args.cache, args.images, args.size)
    model = ki.models.reference_cnn((args.size, args.size, 3))
    model_path = os.path.join(args.cache, "model.keras")
    model.save(model_path)
    model = ki.models.load_model(model_path)
    # Rounds alternate the limit and the command, and each side keeps its best round: a busy spell
    # of this shared machine then slows both sides alike instead of one.
    limit, best = np.inf, {}
    for _ in range(args.rounds):
        limit = min(limit, limit_seconds(model, folder, args.batch_size))
        for format in args.formats:
            found = explain_run(model_path, folder, os.path.join(args.cache, f"out_{format}"), args.batch_size, format)
            if format not in best or found["seconds"] < best[format]["seconds"]:
                best[format] = found
    # Memory: the same command on a fifth of the images, for the peak resident memory at two sizes.
    small = image_folder(args.cache, args.images // 5, args.size)
    fifth = {format: explain_run(model_path, small, os.path.join(args.cache, f"out_small_{format}"), args.batch_size,
                                 format) for format in args.formats}
    steady = args.images - args.batch_size  # after the first unit
    print(f"{args.images} images of {args.size}x{args.size}, batches of {args.batch_size}, reference CNN; "
          f"limit (compiled forward+backward from memory): {args.images / limit:.0f} images/s; best of {args.rounds} "
          "rounds each")
    print(f"{'format':8s} {'images/s':>9s} {'/ limit':>8s} {'after the 1st batch':>20s} "
          f"{'peak RSS, ' + str(args.images // 5):>17s} {'peak RSS, ' + str(args.images):>17s}")
    for format, found in best.items():
        seconds = found["seconds"]
        print(f"{format:8s} {args.images / seconds:9.0f} {limit / seconds:8.3f} "
              f"{(steady / found['steady']) / (args.images / limit):20.3f} {fifth[format]['peak_rss'] / 2**20:13.0f} MiB "
              f"{found['peak_rss'] / 2**20:13.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
