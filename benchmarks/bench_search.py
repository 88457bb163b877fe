"""Dataset search: throughput against the truncated forward pass, and memory against data size.

    python benchmarks/bench_search.py [--batch 128] [--repeats 3] [--images 2048] [--layer relu3_2]
                                      [--memory-sizes 1000 20000]

Reference CNN (keras_interp.reference_cnn, 64x64x3), searching all channels of `--layer` for the
top 9 images. Images come from a lazy tf.data pipeline (Dataset.range(n).map(stateless random
image)), so no data set is ever held in memory.

- Throughput: images/s of DatasetSearch.search against the physical limit, a compiled forward
  pass of the same graph stopped at the layer (keras_interp.graph.run with stop_after_taps) over
  the same batches of the same pipeline. Target: ratio >= 0.8.
- Memory: the peak resident-memory growth of one search over `--memory-sizes` images, each in a
  fresh subprocess after a warm-up search (so tracing and allocator pools are already paid for).
  The running state is top_k x channels, so the growth must not depend on the data size.
"""

import argparse
import subprocess
import sys
import time

from common import batch_parser, paired, peak_rss_growth, timed

import keras_interp as ki  # noqa: E402

SIZE = 64


def lazy_images(n):
    """n random images generated on the fly, deterministic per index."""
    import tensorflow as tf

    def image(i):
        return tf.random.stateless_uniform((SIZE, SIZE, 3), seed=tf.stack([i, tf.constant(7, tf.int64)]))

    return tf.data.Dataset.range(n).map(image, num_parallel_calls=tf.data.AUTOTUNE)


def throughput(args):
    import tensorflow as tf

    from keras_interp import graph

    model = ki.reference_cnn((SIZE, SIZE, 3))
    site = graph.find_site(model, args.layer)
    data = lazy_images(args.images)
    forward = tf.function(lambda x: tf.reduce_max(graph.run(model, x, [site], stop_after_taps=True)[1][0]))

    def limit():
        for batch in data.batch(args.batch).prefetch(tf.data.AUTOTUNE):
            forward(batch)

    search = ki.DatasetSearch(model, args.layer)
    limit()  # traces the forward
    # Rounds alternate the search and the limit, so a busy spell of the machine hits both.
    ours, best_limit = paired(lambda: search.search(data, top_k=9, batch_size=args.batch),
                              lambda: timed(limit, repeats=1, warmup=0), rounds=args.repeats)
    channels = site.shape[-1]
    print(f"layer {args.layer} ({channels} channels), {args.images} images of {SIZE}x{SIZE}, batch {args.batch}, top 9")
    print(f"truncated forward (limit): {args.images / best_limit:8.0f} images/s")
    print(f"DatasetSearch.search:      {args.images / ours:8.0f} images/s   ratio to limit {best_limit / ours:.2f}x "
          "(target >= 0.8x)")


def memory_child(n, layer, batch):
    """Run in a fresh process: warm up, then print the peak RSS growth of one search over n images."""
    model = ki.reference_cnn((SIZE, SIZE, 3))
    search = ki.DatasetSearch(model, layer)
    search.search(lazy_images(2 * batch + 5), top_k=9, batch_size=batch)  # traces, pools, pipeline threads
    start = time.perf_counter()
    result, grown = peak_rss_growth(lambda: search.search(lazy_images(n), top_k=9, batch_size=batch))
    assert result.values.shape == (model.get_layer(layer).output.shape[-1], 9)
    print(f"MEMORY {n} {grown} {time.perf_counter() - start:.1f}")


def memory(args):
    growth = {}
    for n in args.memory_sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), "--layer", args.layer, "--batch", str(args.batch)],
            capture_output=True, text=True, check=True,
        )
        line = next(x for x in done.stdout.splitlines() if x.startswith("MEMORY"))
        _, _, grown, seconds = line.split()
        growth[n] = int(grown)
        print(f"peak RSS growth searching {n:6d} images: {growth[n] / 2**20:6.1f} MiB ({seconds} s, fresh process)")
    small, large = min(growth), max(growth)
    print(f"difference {large} vs {small} images: {(growth[large] - growth[small]) / 2**20:+.1f} MiB "
          "(target: flat within a few MiB)")


def main():
    parser = batch_parser(__doc__)
    parser.set_defaults(batch=128)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--layer", default="relu3_2")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.layer, args.batch)
        return
    throughput(args)
    memory(args)


if __name__ == "__main__":
    main()
