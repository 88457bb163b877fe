"""Receptive fields and dataset search: which images, and which patch of them, drive a channel.

`receptive_field(model, layer)` walks the graph from `layer` back to the model's input and
composes each layer's window analytically (Conv, pooling, padding, cropping; element-wise layers
and merges of branches leave it unchanged). `DatasetSearch(model, layer)` streams a data set once
through the model truncated at `layer` and keeps, per channel, the top-k images by their spatial
maximum, with the receptive-field crop under that maximum (Zeiler and Fergus, 2014, Figure 2).
"""

from keras_interp.search.dataset import DatasetSearch, SearchResult, merge_results
from keras_interp.search.fields import ReceptiveField, receptive_field

__all__ = ["DatasetSearch", "ReceptiveField", "SearchResult", "merge_results", "receptive_field"]
