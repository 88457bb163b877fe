"""ExplanationLogger's parts (keras_interp.callbacks holds the callback itself: its arguments,
schedule and the per-epoch producer): the methods and pictures it logs (methods) and the guarded
writer (writer)."""
