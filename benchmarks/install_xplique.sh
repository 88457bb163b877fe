#!/usr/bin/env bash
# Xplique 2.0.2 as a benchmark peer, in its own environment: it pins tensorflow<=2.20 (this
# project runs 2.21) and would pull CUDA wheels. The benchmarks find it at $XPLIQUE_PYTHON,
# default /opt/xplique-env/bin/python.
set -euo pipefail
ENV="${1:-/opt/xplique-env}"
python -m venv "$ENV"
"$ENV/bin/pip" install -q "tensorflow==2.20.0" "tensorflow-probability[tf]==0.25.0" "keras>=3.10" deprecated einops \
    matplotlib "scikit-image<=0.25.2" "scikit-learn<=1.7.2" "scipy<=1.15.3" opencv-python-headless
"$ENV/bin/pip" install -q --no-deps xplique==2.0.2   # its own requirements ask for tensorflow[and-cuda]
"$ENV/bin/python" -c "import xplique; print('xplique', xplique.__version__, 'in', '$ENV')"
