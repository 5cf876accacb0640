#!/usr/bin/env bash
# Train and benchmark the network on the GPU machine under Keras' JAX backend (scripts/gpu_check.py).
#
#   bash scripts/gpu_check.sh fetch            # HERE, once: the wheels the GPU machine lacks, into .whl/
#   bash scripts/gpu_check.sh run [ARGS...]    # THERE (the device tool's nvidia-h200 machine):
#                                              # install the wheels, run scripts/gpu_check.py ARGS
#
# The GPU machine (see /work/.library/device/README.md and KINDS.md) has Python 3.12 and JAX with
# its CUDA plugin but no Keras, no TensorFlow and no network. Keras 3.15.1 (the version the tests
# here run) and its two needs missing there, namex and optree, travel as wheels in .whl/ (git
# ignores it: /.whl/ in .gitignore); every other need of Keras and mrfbook is in that image.
# The device call (files of the run folder come back from $OUT/run):
#   run(command="bash scripts/gpu_check.sh run --run-dir $OUT/run", carry=[".whl"], timeout_s=540)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)

case "${1:-}" in
  fetch)
    python="${PYTHON:-$root/.venv/bin/python}"
    rm -rf .whl && mkdir -p .whl
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    ls -l .whl
    du -sh .whl
    ;;
  run)
    shift
    ls .whl/*.whl >/dev/null || { echo "gpu_check.sh: no wheels in .whl/ (run 'scripts/gpu_check.sh fetch' here and carry .whl)" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 scripts/gpu_check.py "$@"
    ;;
  *)
    echo "usage: bash scripts/gpu_check.sh fetch | run [gpu_check.py options]" >&2
    exit 2
    ;;
esac
