"""Watch where the model looks while it trains: ExplanationLogger on the built-in shapes.

    python examples/tensorboard_logging.py [--epochs 8] [--logdir logs/shapes]

Trains the reference CNN with keras.callbacks.TensorBoard and ExplanationLogger sharing one log
folder, then prints the command that opens TensorBoard with every epoch kept.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_interp as ki  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--logdir", default=os.path.join("logs", "shapes"))
    args = parser.parse_args()

    watched = ki.datasets.shapes(8, seed=777)
    logger = ki.ExplanationLogger(
        watched.images,
        args.logdir,
        methods=("saliency", "cam", "smoothgrad", "class_model"),
        labels=watched.labels,
        masks=watched.masks,
        class_names=watched.class_names,
        freq=1,  # every epoch (by default the logger keeps within 10% of training time)
    )
    board = keras.callbacks.TensorBoard(log_dir=args.logdir)
    ki.models.train_on_shapes(epochs=args.epochs, callbacks=[logger, board])
    print("\nOpen the explanations (every epoch kept) with:")
    print(f"  tensorboard --logdir {args.logdir} --samples_per_plugin=images=1000,{ki.summary.PLUGIN_NAME}=1000")


if __name__ == "__main__":
    main()
