"""The base of the perturbation methods: occlusion, Score-CAM, the deletion and insertion curves.

They feed the model perturbed copies of the examples, a chunk at a time (keras_interp.explainers.
chunks); what they share beyond Explainer is how big a forward pass to make (measured once per
model and input shape) and how to run the model with one input perturbed and the others kept.
"""

import time

import tensorflow as tf

from keras_interp.explainers import jit as _jit
from keras_interp.explainers.base import Explainer, _shapes
from keras_interp.explainers.chunks import batch_of

__all__ = ["PerturbationExplainer"]


class PerturbationExplainer(Explainer):
    """An explainer that streams perturbed copies of its examples through the model (see
    Explainer for the arguments)."""

    # Candidate forward-pass sizes for the forward-only methods' chunks (powers of two).
    _CHUNK_CANDIDATES = (32, 64, 128, 256, 512, 1024, 2048)
    # A call measures the chunk size only when it feeds the model at least this many batch_size
    # passes: the measurement runs about 3 x 2 x batch_size images (three runs of each size).
    _MEASURE_FROM_PASSES = 16

    def _chunk_images(self, x, perturbations):
        """Images per forward pass for `perturbations` perturbed copies of the examples `x`.

        Forward-only methods (occlusion, Score-CAM) spend their time in the model's forward
        pass, whose speed per image depends on the pass's size: small passes leave the cores or
        the accelerator idle, large ones fall out of cache or memory. On the first call for a
        model and input shape that is large enough to pay for it, the forward pass is timed at
        each power of two from 32 up to `batch_size` (best of two runs after a warm-up), and the
        largest size within 5% of the fastest per image is kept for every later call (shared
        by all explainers of the model, see `chunk_choices`). `batch_size` stays the upper
        bound; smaller calls use it as it is.
        """
        batch = batch_of(x)
        if perturbations * batch < self._MEASURE_FROM_PASSES * self.batch_size:
            return self.batch_size
        example = tuple(a[:1] for a in x) if isinstance(x, tuple) else x[:1]
        key = (self.scorer.signature(), _shapes(example), self.batch_size)
        choices = self._shared().setdefault("chunks", {})
        if key not in choices:
            choices[key] = self._measure_chunk(example)
        self.chunk_choices[key[1]] = choices[key]
        return choices[key]["images"]

    def _measure_chunk(self, example):
        sizes = [n for n in self._CHUNK_CANDIDATES if n <= self.batch_size] or [self.batch_size]
        if sizes[-1] != self.batch_size and self.batch_size < 2 * sizes[-1]:
            sizes.append(self.batch_size)
        scorer, jit = self.scorer, self.jit_compile is True
        forward = tf.function(lambda t: scorer(list(t) if isinstance(t, tuple) else t), jit_compile=jit,
                              reduce_retracing=True)
        per_image = {}
        for n in sizes:
            x = tf.nest.map_structure(lambda a: tf.repeat(tf.convert_to_tensor(a), n, axis=0), example)
            _jit.block(forward(x))  # trace and warm up
            seconds = []
            for _ in range(2):
                start = time.perf_counter()
                _jit.block(forward(x))
                seconds.append(time.perf_counter() - start)
            per_image[n] = min(seconds) / n
            if per_image[n] > 1.5 * min(per_image.values()):
                break  # past the best size: larger passes only get slower
        best = min(per_image.values())
        images = max(n for n, t in per_image.items() if t <= 1.05 * best)
        return {"images": images, "seconds_per_image": per_image}

    @property
    def chunk_choices(self):
        """{input shapes: {"images": kept, "seconds_per_image": {size: t}}} of the forward-pass
        sizes this explainer used, measured by it or by another explainer of the model (see
        _chunk_images)."""
        return self.__dict__.setdefault("_chunk_choices", {})

    def _logits_with(self, xi, others):
        """Logits when the perturbed input is `xi`, a batch of k * B copies (k-major, see
        merge_leading), and the model's other inputs are `others` (B examples each; a tuple in
        model order, None at the perturbed input's place), repeated k times to match."""
        if not others:
            return self.scorer(xi)
        reps = tf.shape(xi)[0] // tf.shape(next(o for o in others if o is not None))[0]
        full = [xi if o is None else tf.tile(o, [reps] + [1] * (len(o.shape) - 1)) for o in others]
        return self.scorer(full)
