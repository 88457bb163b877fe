"""TensorBoard plugin showing keras_interp explanations (imports only tensorboard and werkzeug)."""
