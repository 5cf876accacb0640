"""Small argument checks shared by the library's modules.

Each raises ``ValueError`` naming the parameter and the allowed range, as the project's
bad-input rule asks; nothing is clipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "check_nonnegative"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as ``int`` if it is an integer (not bool) >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as ``float`` if it is a finite number >= 0, else raise."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from exc
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number
