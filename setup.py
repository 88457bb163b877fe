from setuptools import find_packages, setup

setup(
    name="keras-interp",
    version="0.1.0",
    description="Make Keras 3 / TensorFlow image models explain themselves: saliency, "
    "SmoothGrad, Integrated Gradients, occlusion and more, compiled and tested.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["keras_interp", "keras_interp.*", "tb_plugin", "tb_plugin.*"]),
    package_data={"tb_plugin": ["static/*.js"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "numpy",
        # The headless build is the same OpenCV without the GUI bits that need libGL,
        # so it installs on servers and CI machines with no display libraries.
        "opencv-python-headless",
        "tensorboard",
    ],
    entry_points={
        "tensorboard_plugins": ["keras_interp = tb_plugin.plugin:ExplanationsPlugin"],
        "console_scripts": ["keras-interp = keras_interp.cli:run"],
    },
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "scikit-image", "selenium>=4.10", "keras-hub>=0.32"],
        "bench": ["tf-explain==0.3.1", "tf-keras-vis==0.8.7", "saliency==0.2.1", "scipy", "deprecated", "imageio", "pillow"],
        "photos": ["scikit-image"],
    },
)
