#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment and install everything the book and the
# tests need.  Idempotent: re-running it is cheap when pyproject.toml has not changed.
#   MRFBOOK_VENV  where the environment lives (default: .venv in the repository)
#   PYTHON        interpreter to build it from (default: python3.11, else python3 >= 3.11)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MRFBOOK_VENV:-$root/.venv}"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup_env: $python is $("$python" --version 2>&1); mrfbook needs Python >= 3.11 (set PYTHON=...)" >&2
  exit 2
fi

stamp="$( (cat "$root/pyproject.toml"; "$python" --version) | sha256sum | cut -c1-16)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.mrfbook-stamp" 2>/dev/null)" = "$stamp" ] \
   && "$venv/bin/python" -c 'import mrfbook' >/dev/null 2>&1; then
  echo "setup_env: environment up to date at $venv"
  exit 0
fi

echo "setup_env: creating the environment at $venv with $("$python" --version 2>&1) (a few minutes the first time)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# On Linux x86-64 pyproject.toml asks for the CPU-only TensorFlow wheel (tensorflow-cpu): the plain
# `tensorflow` wheel there is the CUDA build, which probes for CUDA at every start and prints CUDA error
# lines on machines without a GPU.  Both wheels install the same `tensorflow` package, so a `tensorflow`
# distribution left from an older environment goes first (installing one over the other mixes their files).
# GPU TensorFlow instead (the book's GPU path is JAX: scripts/gpu_check.sh): after this script,
#   .venv/bin/pip uninstall -y tensorflow-cpu && .venv/bin/pip install "tensorflow[and-cuda]==<same version>"
# (re-running this script after a change of pyproject.toml puts tensorflow-cpu back).
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
   && "$venv/bin/python" -m pip show --quiet tensorflow >/dev/null 2>&1; then
  echo "setup_env: replacing the CUDA build of TensorFlow (tensorflow) by the CPU-only wheel (tensorflow-cpu)"
  "$venv/bin/python" -m pip uninstall --quiet --yes tensorflow tensorflow-cpu
fi
"$venv/bin/python" -m pip install --quiet --editable "$root[book,test]"
echo "$stamp" > "$venv/.mrfbook-stamp"
echo "setup_env: done"
