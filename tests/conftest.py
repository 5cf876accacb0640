"""Settings every test process shares, also when pytest is started without ``source scripts/env.sh``.

TensorFlow's C++ log level as scripts/env.sh sets it (2: no INFO or WARNING lines), set before any test
module imports TensorFlow; subprocesses started by the tests inherit it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
