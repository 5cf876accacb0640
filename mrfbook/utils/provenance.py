"""Small, dependency-free helpers for records that must survive a crash: UTC time, atomic JSON, SHA-256.

Used by the training run folders (chapter 7, book/07_training.md) and the evaluation summary
(chapter 8, book/08_evaluation.md).

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["utc_now", "atomic_write_json", "file_sha256"]


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-11-28T10:40:22+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename, so a crash leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (model files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
