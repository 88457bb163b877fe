"""`python -m keras_interp ...` runs the keras-interp command."""

from keras_interp.cli import run

if __name__ == "__main__":
    run()
