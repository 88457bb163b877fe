"""The logger's "inside" pictures: what chosen channels of a layer respond to, every logged
epoch, so a user watches units form during training.

- "features": each channel's image by gradient ascent (`FeatureVisualization`, the same seed
  every epoch, so what changes is the model);
- "top_patches": each channel's strongest patch among the logged images (`DatasetSearch`: the
  part of the image under the receptive field of the unit that fires most).

The channels are the layer's most active on the logged images when the first pictures are made
(after the first logged epoch), then kept, so the epoch slider compares the same units.
"""

import numpy as np
import tensorflow as tf

from keras_interp import graph
from keras_interp.search.dataset import DatasetSearch
from keras_interp.search.fields import receptive_field
from keras_interp.visualize.class_model import FeatureVisualization
from keras_interp.visualize.engine import resolve_value_range

__all__ = ["Inside", "Features", "TopPatches"]


def _default_site(model, size):
    """The last spatial layer in the input's frame whose receptive field spans at most half of
    `size` (H, W) on each axis, else the last spatial layer."""
    for path in reversed(graph.spatial_layers(model, in_frame=True)):
        try:
            rows, cols = receptive_field(model, path).size
        except ValueError:  # a layer whose field is not local (after global pooling, attention)
            continue
        if rows <= size[0] / 2 and cols <= size[1] / 2:
            return graph.find_site(model, path)
    return graph.last_spatial_site(model)


class Inside:
    """What both kinds share: the layer, the channels, the value range.

    Args:
        model: single-input image model with a functional graph.
        images: the logged images (the channels are chosen on them; the patches come from them).
        layer: a layer name or path; None: the last spatial layer (in the input's frame) whose
            receptive field covers at most half the image's side, so each channel's patch shows
            a part of an image, not all of it (else the last spatial layer).
        channels: channel ids; None: the `count` most active on the images.
        count: how many channels when `channels` is None.
    """

    kind = None
    count = 4

    def __init__(self, model, images, layer=None, channels=None, count=None):
        self.model, self.images = model, np.asarray(images, np.float32)
        site = _default_site(model, self.images.shape[1:3]) if layer is None else graph.find_site(model, layer)
        if len(site.shape) != 4:
            raise ValueError(f"{self.kind!r} pictures need a spatial (batch, h, w, channels) layer; {site.path!r} "
                             f"has output shape {site.shape}.")
        self.site, self.layer = site, site.path
        self.chosen = None if channels is None else [int(c) for c in channels]
        self.count = int(count or self.count)
        # The logged images' range, as the class models take it (constant images: [0, 1]).
        self.value_range = resolve_value_range(self.images if np.ptp(self.images) > 0 else None)

    def channels(self):
        """The channels shown: given, or the most active on the images (chosen once)."""
        if self.chosen is None:
            activity = self._activations().mean(axis=(0, 1, 2))
            self.chosen = [int(c) for c in np.argsort(-activity, kind="stable")[:self.count]]
        return self.chosen

    def _activations(self):
        """The layer's activations on the logged images, float32 NumPy."""
        _, (features,) = graph.run(self.model, tf.constant(self.images), [self.site], stop_after_taps=True)
        return np.asarray(tf.cast(features, tf.float32))

    def _scaled(self, pictures):
        low, high = self.value_range
        return np.clip((np.asarray(pictures, np.float32) - low) / (high - low), 0.0, 1.0)

    def labels(self, channels):
        return [f"{self.layer} #{c}" for c in channels]


class Features(Inside):
    """The "features" pictures: each chosen channel's image by gradient ascent."""

    kind = "features"
    steps = 64

    def __init__(self, model, images, layer=None, channels=None, count=None, generator=None):
        if generator is not None:
            layer = generator.layer
        super().__init__(model, images, layer, channels, count)
        self.generator = generator or FeatureVisualization(model, self.layer, value_range=self.value_range)
        self.value_range = tuple(self.generator.value_range)

    def pictures(self, seed):
        """(indices, pictures (N, H, W, C) in [0, 1], labels)."""
        channels = self.channels()
        images = self.generator.visualize(channels, steps=self.steps, seed=seed)
        return list(range(len(channels))), self._scaled(images), self.labels(channels)


class TopPatches(Inside):
    """The "top_patches" pictures: each chosen channel's strongest patch among the logged images."""

    kind = "top_patches"

    def __init__(self, model, images, layer=None, channels=None, count=None, search=None):
        if search is not None:
            layer = search.layer
        super().__init__(model, images, layer, channels, count)
        self.search = search or DatasetSearch(model, self.layer)

    def pictures(self, seed):
        channels = self.channels()
        result = self.search.search(self.images, top_k=1, channels=channels)
        # The window holding the receptive field (clipped to the image: no zero border).
        pictures = self._scaled(result.windows[:, 0])
        # A diverged model ranks nothing (its non-finite activations rank as 0 in the search):
        # NaN pictures, which the logger skips with its warning.
        if not np.isfinite(self._activations()).all():
            pictures[:] = np.nan
        return list(range(len(channels))), pictures, self.labels(channels)
