#!/usr/bin/env bash
# Wheels for gpu_check.sh's offline install on a GPU machine that reaches no package index:
# probe's dependencies that the machine's CUDA image does not hold (its Python has torch with
# CUDA, numpy, scipy, scikit-learn, psutil, click, Jinja2, pillow, PyYAML, contourpy), built
# for that machine's Python (3.12 on x86-64 Linux unless GPU_PYTHON_VERSION says otherwise).
#
#   bash benchmarks/gpu_check_wheels.sh          # into .whl/ in the repository (git-ignored)
#   bash benchmarks/gpu_check_wheels.sh DIR
#
# Then carry that folder to the GPU machine with the working tree, and gpu_check.sh installs
# from it (GPU_CHECK_WHEELS, default .whl). About 10 MB.

set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$REPO/.whl}
PYV=${GPU_PYTHON_VERSION:-3.12}
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$DEST" \
    --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 \
    bokeh tornado xyzservices narwhals hmmlearn 'setuptools>=77'
ls -la "$DEST"
du -sh "$DEST"
