"""Dataset search: the top-k images of each channel and the receptive-field crop of each.

A data set is streamed once through the model truncated at the layer (keras_interp.graph.run
with stop_after_taps), keeping a running top-k per channel with the winners' windows, in one
compiled merge per batch; with a tf.distribute strategy each replica keeps its own top-k, and
the replicas' are merged on the host with the same tie-break, so the answer is the single
device's.
"""

import dataclasses
import functools
import math
import time

import keras
import numpy as np
import tensorflow as tf

from keras_interp import graph
from keras_interp.compat import progress_bar
from keras_interp.search.fields import ReceptiveField, receptive_field

__all__ = ["DatasetSearch", "SearchResult", "merge_results"]


def _signed_picture(projection):
    """A signed projection as a picture: zero is grey, the largest |value| is black or white."""
    scale = np.abs(projection).max()
    return 0.5 + projection / (2 * scale) if scale > 0 else np.full_like(projection, 0.5)


def _crop(image, box):
    """image[top:bottom, left:right] with zeros where the box leaves the image."""
    top, left, bottom, right = (int(v) for v in box)
    out = np.zeros((bottom - top, right - left) + image.shape[2:], image.dtype)
    r0, r1 = max(top, 0), min(bottom, image.shape[0])
    c0, c1 = max(left, 0), min(right, image.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
    return out


@dataclasses.dataclass
class SearchResult:
    """The top-k images of each searched channel, strongest first (ties: lower data index first).

    Attributes:
        values: (channels, k) float32, each image's spatial maximum of the channel, descending.
        indices: (channels, k) int64, positions of the images in the data's order.
        positions: (channels, k, 2) int64, (row, col) of the maximum in the layer's feature map.
        boxes: (channels, k, 4) int64, (top, left, bottom, right) receptive field of that unit in
            input pixels, bottom/right exclusive; may extend past the image.
        crops: (channels, k, rf_rows, rf_cols, C) float32, the input under each box, zero where
            the box leaves the image (made on first access from `windows`: deep layers' fields
            can be far larger than the image).
        windows: (channels, k, min(rf_rows, H), min(rf_cols, W), C) float32, the part of the
            image that holds each box's pixels (what the search keeps).
        labels: (channels, k, ...) labels of the images when the data has them, else None.
        channels: (channels,) int64, the channel ids searched.
        layer: the layer's path.
        receptive_field: the layer's `ReceptiveField`.
        images: (channels, k, H, W, C) the whole images with `search(keep_images=True)`, else None.
    """

    values: np.ndarray
    indices: np.ndarray
    positions: np.ndarray
    boxes: np.ndarray
    windows: np.ndarray
    labels: object
    channels: np.ndarray
    layer: str
    receptive_field: ReceptiveField
    images: object = None
    model: object = dataclasses.field(default=None, repr=False, compare=False)
    input_size: tuple = (0, 0)

    @functools.cached_property
    def crops(self):
        count, k = self.values.shape
        (rows, cols), channels = self.receptive_field.size, self.windows.shape[-1]
        height, width = self.input_size
        win_r, win_c = self.windows.shape[2:4]
        crops = np.zeros((count, k, rows, cols, channels), self.windows.dtype)
        for c in range(count):
            for r in range(k):
                top, left, bottom, right = (int(v) for v in self.boxes[c, r])
                start_r, start_c = min(max(top, 0), height - win_r), min(max(left, 0), width - win_c)
                r0, r1, c0, c1 = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
                if r1 > r0 and c1 > c0:
                    crops[c, r, r0 - top:r1 - top, c0 - left:c1 - left] = \
                        self.windows[c, r, r0 - start_r:r1 - start_r, c0 - start_c:c1 - start_c]
        return crops

    def projections(self):
        """(channels, k, rf_rows, rf_cols, C) deconvnet projections of each result's unit.

        Zeiler and Fergus's Figure 2: in the result's image, the channel's single strongest
        activation (the unit found by the search) is kept, everything else zeroed, and projected
        to the input by `ki.Deconvnet(model, layer)`; the projection is cropped to the unit's box.
        Needs the whole images: run the search with `keep_images=True`.
        """
        if self.images is None:
            raise ValueError("Projections need the result images; run DatasetSearch.search(..., keep_images=True) "
                             "(it keeps top_k x channels whole images) and call sheet(project=True) again.")
        from keras_interp.explainers.deconv import Deconvnet

        count, k = self.values.shape
        flat = self.images.reshape((count * k,) + self.images.shape[2:])
        targets = np.repeat(self.channels, k).astype(np.int64)
        projected = Deconvnet(self.model, layer=self.layer).attribute(flat, target=targets)
        boxes = self.boxes.reshape(-1, 4)
        crops = np.stack([_crop(p, b) for p, b in zip(projected, boxes)])
        return crops.reshape(self.values.shape + crops.shape[1:])

    def sheet(self, project=False, cell_size=None):
        """One row per channel with its top-k receptive-field crops, as an RGB uint8 image.

        Args:
            project: also show, right of each crop, the deconvnet projection of its unit (see
                `projections`; needs `search(..., keep_images=True)`), grey where zero.
            cell_size: (height, width) of each cell; default: the crop scaled up by an integer
                factor to at least 64 pixels (nearest neighbour, so pixels stay crisp).

        Returns:
            (H, W, 3) uint8 sheet made by `keras_interp.images.grid`, rows labelled by channel.
        """
        from keras_interp import images

        if cell_size is None:
            rows, cols = self.receptive_field.size
            scale = max(1, math.ceil(64 / max(rows, cols)))
            cell_size = (rows * scale, cols * scale)
        projected = self.projections() if project else None
        crops = self.crops
        if crops.min() < 0.0 or crops.max() > 1.0:  # one scale for the whole sheet, not one per cell
            low, high = float(crops.min()), float(crops.max())
            crops = (crops - low) / (high - low) if high > low else np.zeros_like(crops)
        rows, k = [], self.values.shape[1]
        for c in range(len(self.channels)):
            row = []
            for r in range(k):
                row.append(crops[c, r])
                if project:
                    row.append(_signed_picture(projected[c, r]))
            rows.append(row)
        labels = [f"{kind} {r + 1}" for r in range(k) for kind in (("crop", "deconv") if project else ("top",))]
        return images.grid(rows, col_labels=labels, row_labels=[f"ch {int(c)}" for c in self.channels],
                           cell_size=cell_size)


def merge_results(results, top_k):
    """One SearchResult from searches of disjoint parts of a data set, exactly the one searching
    the whole would give: each part's `indices` must already be positions in the whole data (a
    part's top-k holds every image of it that can be in the whole's top-k, and equal values
    rank by lower index in both).

    Args:
        results: SearchResults of the same layer and channels (windows, labels and images kept
            in all or none of them: a merge of results without windows has none, and
            `DatasetSearch.windows_of` cuts them from the winning images).
        top_k: results per channel wanted, as the parts were searched with.
    """
    results = list(results)
    if not results:
        raise ValueError("merge_results needs at least one SearchResult.")
    first = results[0]
    for other in results[1:]:
        if other.layer != first.layer or not np.array_equal(other.channels, first.channels):
            raise ValueError(f"Can only merge searches of the same layer and channels; received {first.layer!r} "
                             f"{first.channels.tolist()} and {other.layer!r} {other.channels.tolist()}.")
    fields = ["values", "indices", "positions", "boxes"]
    fields += [f for f in ("windows", "labels", "images") if all(getattr(r, f) is not None for r in results)]
    joined = {f: np.concatenate([getattr(r, f) for r in results], axis=1) for f in fields}
    order = np.stack([np.lexsort((i, -v)) for v, i in zip(joined["values"], joined["indices"])])
    order = order[:, :min(int(top_k), order.shape[1])]
    picked = {f: np.take_along_axis(value, order.reshape(order.shape + (1,) * (value.ndim - 2)), axis=1)
              for f, value in joined.items()}
    for field in ("windows", "labels", "images"):
        picked.setdefault(field, None)
    return dataclasses.replace(first, **picked)


_NON_FINITE = "keras_interp DatasetSearch: non-finite image"


def _rank(values, indices):
    """Per row, the order by value descending, then data index ascending (two stable sorts)."""
    by_index = tf.argsort(indices, axis=1, stable=True)
    by_value = tf.argsort(tf.gather(values, by_index, batch_dims=1), axis=1, direction="DESCENDING", stable=True)
    return tf.gather(by_index, by_value, batch_dims=1)


class DatasetSearch:
    """Top-k images and receptive-field crops per channel of a layer, streamed over a data set.

    For every image and channel the spatial maximum is kept with its position, so a channel's k
    results are k distinct images. A running top-k per channel is merged batch by batch in a
    compiled function traced once (the last partial batch is padded, its padded rows masked), and
    it holds the winners' windows (the part of the image under their receptive field, at most
    the image), so memory is bounded by top_k x channels images whatever the data size and the
    data is read once. Equal values rank by lower data index, which makes the result
    exact and deterministic: with a `tf.distribute` strategy each replica searches its share of
    every global batch and the replicas' top-k are merged into the single-device answer.

    Args:
        model: a functional or Sequential Keras model with one (batch, H, W, C) input of known
            size; it is run in inference mode and never modified.
        layer: a layer name or "nested/path" with a spatial (batch, h, w, channels) output whose
            receptive field is local (see `receptive_field`).
        strategy: None, or a `tf.distribute` strategy (MirroredStrategy,
            MultiWorkerMirroredStrategy) to spread the forward passes over its replicas.

    Example:
        >>> search = ki.DatasetSearch(model, "relu3_2")
        >>> result = search.search(dataset, top_k=9, channels=[0, 5, 7])
        >>> result.values[0], result.indices[0]      # channel 0's nine best images
        >>> ki.images.save("channels.png", result.sheet())
    """

    def __init__(self, model, layer, strategy=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Expected a keras.Model; received {type(model).__name__}.")
        inputs = getattr(model, "inputs", None) or []
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or None in tuple(inputs[0].shape)[1:]:
            raise ValueError(
                f"DatasetSearch needs a model with one image input (batch, height, width, channels) of known "
                f"size; model {model.name!r} has inputs {[tuple(t.shape) for t in inputs]}."
            )
        self.model = model
        self.site = graph.find_site(model, layer) if isinstance(layer, str) else layer
        self.layer = self.site.path
        self.receptive_field = receptive_field(model, self.site)
        self.input_shape = tuple(int(d) for d in inputs[0].shape[1:])
        # The feature map's size at this input size (a backbone built for any size declares None).
        features = graph.run(model, tf.zeros((1,) + self.input_shape, model.inputs[0].dtype), [self.site],
                             stop_after_taps=True)[1][0]
        self.feature_shape = tuple(int(d) for d in features.shape[1:])
        self.strategy = strategy
        self._steps = {}

    # ----------------------------------------------------------------------------- input
    def _check_channels(self, channels):
        count = self.feature_shape[-1]
        if channels is None:
            return np.arange(count, dtype=np.int64)
        chosen = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
        for c in chosen:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c < count:
                raise ValueError(f"channels must be None or ints in [0, {count - 1}] (layer {self.layer!r} has "
                                 f"{count} channels); received {channels!r}.")
        if not chosen:
            raise ValueError("channels is empty; pass None for all channels or a list of channel ids.")
        return np.asarray(chosen, dtype=np.int64)

    def _dataset(self, data, labels):
        """(unbatched dataset of (index, image or (image, label)), image count or None, label spec or None)."""
        if isinstance(data, tf.data.Dataset):
            if labels is not None:
                raise ValueError("labels= is for arrays; a tf.data.Dataset carries its labels as (images, labels) "
                                 "elements.")
            spec = data.element_spec
            if isinstance(spec, (tuple, list)) and len(spec) == 3:  # (x, y, sample_weight) as fit takes
                data = data.map(lambda x, y, _: (x, y))
                spec = data.element_spec
            if isinstance(spec, (tuple, list)) and len(spec) == 2:
                image_spec = spec[0]
            elif isinstance(spec, tf.TensorSpec):
                image_spec = spec
            else:
                raise ValueError(f"Expected a dataset of images or of (images, labels) pairs; its elements are {spec}.")
            rank = image_spec.shape.rank
            if rank not in (3, 4) or tuple(image_spec.shape[-3:]) != self.input_shape:
                raise ValueError(
                    f"Expected dataset images of shape (batch,) + {self.input_shape} or {self.input_shape} as the "
                    f"model takes them; the dataset yields {tuple(image_spec.shape) if rank else 'unknown'}."
                )
            count = None
            if rank == 4:
                data = data.unbatch()  # re-batched below at batch_size, padded to one shape
            elif int(data.cardinality()) >= 0:
                count = int(data.cardinality())
        else:
            from keras_interp.checks import check_images

            images = check_images(data, (None,) + self.input_shape)
            count = len(images)
            if labels is not None:
                labels = np.asarray(labels)
                if len(labels) != count:
                    raise ValueError(f"labels has {len(labels)} entries for {count} images; give one per image.")
            data = tf.data.Dataset.from_tensor_slices(images if labels is None else (images, labels))
        spec = data.element_spec
        label_spec = spec[1] if isinstance(spec, tuple) else None
        if label_spec is not None and not label_spec.shape.is_fully_defined():
            raise ValueError(f"Labels must have a fixed shape per image; the data's labels have shape {label_spec.shape}.")
        return data.enumerate(), count, label_spec

    @staticmethod
    def _batches(data, batch_size):
        """Batches of (images float32, indices[, labels]) of one fixed size: the last one is padded
        with index -1 (masked out), so one trace serves every batch. The work is per batch, not per
        image, to leave the cores to the model."""

        def pad(indices, item):
            images, labels = (item[0], item[1:]) if isinstance(item, tuple) else (item, ())
            extra = batch_size - tf.shape(indices)[0]
            images = tf.debugging.check_numerics(tf.cast(images, tf.float32), _NON_FINITE)
            images = tf.pad(images, [[0, extra], [0, 0], [0, 0], [0, 0]])
            indices = tf.pad(indices, [[0, extra]], constant_values=-1)
            labels = [tf.pad(x, [[0, extra]] + [[0, 0]] * (x.shape.rank - 1)) for x in labels]
            return tuple(tf.ensure_shape(t, [batch_size] + t.shape[1:]) for t in (images, indices, *labels))

        return data.batch(batch_size).map(pad, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # ----------------------------------------------------------------------------- compiled
    def _initial(self, count, k, keep_images, label_spec):
        rows, cols = self.receptive_field.size
        height, width, channels = self.input_shape
        state = {
            "values": tf.fill([count, k], -np.inf),
            "indices": tf.fill([count, k], tf.constant(-1, tf.int64)),
            "positions": tf.zeros([count, k], tf.int32),
            "windows": tf.zeros([count, k, min(rows, height), min(cols, width), channels]),
        }
        if keep_images:
            state["images"] = tf.zeros((count, k) + self.input_shape)
        if label_spec is not None:
            state["labels"] = tf.zeros([count, k] + label_spec.shape.as_list(), label_spec.dtype)
        return state

    def _windows(self, images, rows, positions):
        """The image windows (..., min(rf_rows, H), min(rf_cols, W), C) holding the receptive
        fields of units `positions` (flat) of images `rows`: the box moved inside the image."""
        rf, (height, width, _) = self.receptive_field, self.input_shape
        (size_r, size_c), (jump_r, jump_c) = rf.size, rf.jump
        win_r, win_c = min(size_r, height), min(size_c, width)
        top, left = rf.box(0, 0)[:2]
        w = self.feature_shape[1]
        r0 = tf.clip_by_value(top + (positions // w) * jump_r, 0, height - win_r)
        c0 = tf.clip_by_value(left + (positions % w) * jump_c, 0, width - win_c)
        shape = tf.concat([tf.shape(positions), [win_r, win_c]], 0)
        grid_r = tf.broadcast_to(r0[..., None, None] + tf.range(win_r)[:, None], shape)
        grid_c = tf.broadcast_to(c0[..., None, None] + tf.range(win_c)[None, :], shape)
        grid_b = tf.broadcast_to(rows[..., None, None], shape)
        return tf.gather_nd(images, tf.stack([grid_b, grid_r, grid_c], -1))

    def _merge(self, state, channels, images, indices, *labels):
        """One batch into the running top-k: per image and channel the spatial max, then a merge."""
        k = state["values"].shape[1]
        _, (features,) = graph.run(self.model, images, [self.site], stop_after_taps=True)
        features = tf.cast(features, tf.float32)
        batch = tf.shape(features)[0]
        flat = tf.reshape(features, [batch, -1, features.shape[-1]])
        # Spatial max and argmax of every channel, then the chosen channels of those small (B, C)
        # results: gathering channels of the whole feature map first costs a tenth of a forward.
        best = tf.gather(tf.reduce_max(flat, axis=1), channels, axis=1)
        best = tf.where(indices[:, None] >= 0, best, -np.inf)  # padded rows: -inf
        where = tf.transpose(tf.gather(tf.argmax(flat, axis=1, output_type=tf.int32), channels, axis=1))
        # The batch's own top-k first (stable: lower row, i.e. lower index, first among ties).
        values, rows = tf.math.top_k(tf.transpose(best), tf.minimum(k, batch))
        positions = tf.gather(where, rows, batch_dims=1)
        candidates = {"values": values, "indices": tf.gather(indices, rows), "positions": positions}
        if labels:
            candidates["labels"] = tf.gather(labels[0], rows)
        merged = {key: tf.concat([state[key], candidates[key]], axis=1) for key in candidates}
        order = _rank(merged["values"], merged["indices"])[:, :k]
        new = {key: tf.gather(value, order, batch_dims=1) for key, value in merged.items()}
        # Crops (and images) are cut only for the winners that come from this batch: after the
        # first batches there are few, and their number, not the batch's, sets the cost.
        kept = tf.minimum(order, k - 1)  # slots from this batch are overwritten below
        arrived = tf.where(order >= k)  # (n, 2): [channel, slot]
        slot = tf.gather_nd(order, arrived) - k
        which = tf.stack([arrived[:, 0], tf.cast(slot, tf.int64)], axis=1)
        rows, positions = tf.gather_nd(rows, which), tf.gather_nd(positions, which)
        fresh = {"windows": lambda: self._windows(images, rows, positions), "images": lambda: tf.gather(images, rows)}
        for key in ("windows", "images"):
            if key in state:
                old = tf.gather(state[key], kept, batch_dims=1)
                new[key] = tf.tensor_scatter_nd_update(old, arrived, fresh[key]())
        return new

    def _functions(self, count, k, keep_images, label_spec):
        key = (count, k, keep_images, None if label_spec is None else (label_spec.shape, label_spec.dtype))
        if key not in self._steps:
            strategy = self.strategy
            if strategy is None:
                init = lambda: self._initial(count, k, keep_images, label_spec)
                step, gather = tf.function(self._merge), None
            else:
                init = tf.function(lambda: strategy.run(self._initial, args=(count, k, keep_images, label_spec)))
                step = tf.function(lambda state, channels, batch: strategy.run(self._merge, args=(state, channels, *batch)))
                # Every replica's top-k side by side, (channels, replicas * k, ...), leaf by leaf:
                # strategy.gather on a whole dict ignores `axis`.
                gather = tf.function(lambda state: {name: strategy.gather(value, axis=1) for name, value in state.items()})
            self._steps[key] = (init, step, gather)
        return self._steps[key]

    # ----------------------------------------------------------------------------- search
    def search(self, data, top_k=9, channels=None, batch_size=128, labels=None, keep_images=False, verbose=False):
        """Stream `data` once and return each channel's top-k images, units and crops.

        Args:
            data: a `tf.data.Dataset` of images or (images, labels) pairs, batched or not
                (told apart by the images' rank), or an array of images (N, H, W, C). Images
                are what the model takes (already preprocessed).
            top_k: results per channel, a positive int. With fewer images than top_k, every
                channel returns all of them: k = min(top_k, number of images).
            channels: None for every channel of the layer, or a list of channel ids.
            batch_size: images per forward pass (the data is re-batched to it). With a strategy
                this is the global batch, a multiple of the number of replicas.
            labels: for an array `data`, optional labels (N, ...) returned with the results.
            keep_images: also keep the whole result images (top_k x channels of them), as
                `sheet(project=True)` needs.
            verbose: show a progress bar with the images per second.

        Returns:
            A `SearchResult`.
        """
        if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive int; received {top_k!r}.")
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
        replicas = 1 if self.strategy is None else self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch_size must be a multiple of the strategy's {replicas} replicas; received {batch_size}.")
        chosen = self._check_channels(channels)
        self._check_state_size(len(chosen), int(top_k), keep_images)
        data, count, label_spec = self._dataset(data, labels)
        batches = self._batches(data, int(batch_size))
        init, step, gather = self._functions(len(chosen), int(top_k), bool(keep_images), label_spec)
        ids = tf.constant(chosen, tf.int32)
        if self.strategy is not None:
            batches = self.strategy.experimental_distribute_dataset(batches)
        bar = progress_bar(count, unit_name="image", stateful_metrics=["images/s"]) if verbose else None
        state, seen, start = init(), 0, time.perf_counter()
        try:
            for batch in batches:
                state = step(state, ids, *batch) if self.strategy is None else step(state, ids, tuple(batch))
                seen = self._progress(bar, batch, seen, start)
        except tf.errors.InvalidArgumentError as exc:
            if _NON_FINITE not in str(exc):
                raise
            raise ValueError(
                "The data contains NaN or infinite values; dataset search needs finite images (check the "
                "images' loading and preprocessing)."
            ) from None
        if bar is not None and count is None:
            # The total is known once the data ran out: the last line says it (Keras's plain,
            # non-terminal line prints nothing for an unknown total).
            bar.target = seen
            bar.update(seen, values=[("images/s", seen / max(time.perf_counter() - start, 1e-9))], finalize=True)
        if self.strategy is not None:
            state = gather(state)
        return self._result({key: np.asarray(value) for key, value in state.items()}, chosen, top_k, keep_images)

    def _check_state_size(self, count, k, keep_images, limit=4 * 2**30):
        """Refuse, before reading any data, a running state that cannot fit: the winners' windows
        (and images) are count x k of them, and merging holds about three copies."""
        height, width, channels = self.input_shape
        rows, cols = (min(f, n) for f, n in zip(self.receptive_field.size, (height, width)))
        per_result = rows * cols * channels + (height * width * channels if keep_images else 0)
        need = 3 * 4 * count * k * per_result
        if need > limit:
            raise ValueError(
                f"Searching {count} channels for the top {k} would keep {need / 2**30:.1f} GiB of image windows "
                f"(limit {limit / 2**30:.0f} GiB); pass channels=[...] with fewer channels or a smaller top_k."
            )

    def _progress(self, bar, batch, seen, start):
        """Images seen so far, shown on the progress bar with the rate (only when verbose)."""
        if bar is None:
            return seen
        index = batch[1] if self.strategy is None else self.strategy.experimental_local_results(batch[1])
        seen += sum(int(np.count_nonzero(np.asarray(t) >= 0)) for t in tf.nest.flatten(index))
        bar.update(seen, values=[("images/s", seen / max(time.perf_counter() - start, 1e-9))])
        return seen

    def _result(self, state, chosen, top_k, keep_images):
        order = np.stack([np.lexsort((i, -v)) for v, i in zip(state["values"], state["indices"])])
        state = {key: np.take_along_axis(value, order.reshape(order.shape + (1,) * (value.ndim - 2)), axis=1)
                 for key, value in state.items()}
        k = min(int(top_k), int(np.count_nonzero(state["indices"][0] >= 0)))
        if k == 0:
            raise ValueError("The data holds no images; pass at least one.")
        state = {key: value[:, :k] for key, value in state.items()}
        w = self.feature_shape[1]
        positions = np.stack([state["positions"] // w, state["positions"] % w], axis=-1).astype(np.int64)
        boxes = np.array([[self.receptive_field.box(*p) for p in row] for row in positions], np.int64)
        return SearchResult(
            values=state["values"].astype(np.float32), indices=state["indices"].astype(np.int64), positions=positions,
            boxes=boxes.reshape(positions.shape[:2] + (4,)), windows=state["windows"], labels=state.get("labels"),
            channels=chosen, layer=self.layer, receptive_field=self.receptive_field, images=state.get("images"),
            model=self.model, input_size=self.input_shape[:2],
        )

    def windows_of(self, result, images):
        """`result` with its windows cut from `images` ({data index: image as the model takes
        it}, holding every index of result.indices): for results merged without their windows,
        so partial searches need not keep them."""
        order = np.unique(result.indices)
        rows = np.searchsorted(order, result.indices)
        flat = result.positions[..., 0] * self.feature_shape[1] + result.positions[..., 1]
        stack = tf.constant(np.stack([np.asarray(images[int(i)], np.float32) for i in order]))
        windows = self._windows(stack, tf.constant(rows, tf.int32), tf.constant(flat, tf.int32))
        return dataclasses.replace(result, windows=np.asarray(windows))

    def __repr__(self):
        return f"DatasetSearch(model={self.model.name!r}, layer={self.layer!r})"
