"""Keras for the whole of :mod:`mrfbook.nn`, imported once and without TensorFlow's load-time notice.

Every module of :mod:`mrfbook.nn` that needs Keras takes it from here (``from mrfbook.nn.backend
import keras``), so the backend is loaded in one place.

Under the TensorFlow backend, loading TensorFlow's C++ libraries writes two lines per process straight
to file descriptor 2, before TensorFlow's own logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot
hide them (tensorflow/tensorflow#100442)::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

The notice is information, not a warning: the numerics are those of the oneDNN kernels, which the
shipped networks were trained and evaluated with (``TF_ENABLE_ONEDNN_OPTS=0`` would silence it but move
their predictions by up to 0.002 ms). :func:`import_keras` therefore sends descriptor 2 to a
temporary file while TensorFlow loads and writes back every line except exactly those two, so any
other message of the load (an error, a CUDA warning) still reaches the user. Under JAX or PyTorch,
or when TensorFlow is already loaded, Keras is imported as is. Unless the user has set it,
``TF_CPP_MIN_LOG_LEVEL`` is set to 1 before TensorFlow loads: its C++ INFO lines (such as
``cpu_feature_guard``'s note on CPU instructions) are dropped, its warnings and errors are kept.

Explained in book/scaling.md.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from types import ModuleType

__all__ = ["keras", "import_keras", "is_load_notice"]

_LOAD_NOTICES = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
)


def is_load_notice(line: str) -> bool:
    """Whether ``line`` is one of the two lines TensorFlow writes while its libraries load.

    Parameters
    ----------
    line : str
        One line of standard error, without its newline.

    Returns
    -------
    bool
        True only for the ``absl::InitializeLog`` preamble and the oneDNN notice of ``port.cc``.
    """
    return any(pattern.match(line) for pattern in _LOAD_NOTICES)


def _import_filtering_fd2(name: str) -> ModuleType:
    """Import module ``name`` with descriptor 2 captured; replay what it wrote, less the load notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            module = importlib.import_module(name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_load_notice(line.rstrip("\n")))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
    return module


def import_keras() -> ModuleType:
    """Import Keras; under the TensorFlow backend load TensorFlow first without its load-time notice.

    Returns
    -------
    module
        The ``keras`` module.
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow" and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO lines off (cpu_feature_guard); warnings stay
        try:
            _import_filtering_fd2("tensorflow")
        except ImportError:
            pass  # Keras raises its own, clearer error below
    return importlib.import_module("keras")


keras = import_keras()
