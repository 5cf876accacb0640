# Shared settings for the project's scripts (sourced, not run).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MRFBOOK_VENV:-$root/.venv}"
export PATH="$venv/bin:$PATH"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
# TensorFlow's C++ log level for every process started from here (CLI, tests, the book's kernels, which
# inherit this environment): 2 drops INFO and WARNING lines (e.g. cpu_feature_guard's "This TensorFlow binary
# is optimized to use available CPU instructions").  It does not reach the lines TensorFlow logs while its
# libraries load, before absl::InitializeLog() (tensorflow/tensorflow#100442): with the CPU-only wheel
# (pyproject.toml) the only such line is port.cc's "oneDNN custom operations are on", twice per process.
# TF_ENABLE_ONEDNN_OPTS=0 would silence it but changes the numerics (shipped models' predictions move by up
# to 0.002 ms), so it is left on.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONHASHSEED=0
