"""Small argument checks shared by the library's modules.

Each raises ``ValueError`` naming the parameter and the allowed range, as the project's
bad-input rule asks; nothing is clipped. Use them instead of writing the
``isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < m`` test inline.

Explained in chapter 2, book/02_simulation.md (the first chapter whose functions use them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "check_nonnegative", "check_positive"]


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None, *,
              allow_none: bool = False) -> Any:
    """Return ``value`` as ``int`` if it is an integer (not bool) in range, else raise ``ValueError``.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
        What was passed; Python and NumPy integers count, ``bool`` and floats do not.
    minimum : int
        Smallest allowed value.
    maximum : int, optional
        Largest allowed value (inclusive); None for no upper bound.
    allow_none : bool
        Let ``None`` through (returned as ``None``).

    Returns
    -------
    int or None
        ``int(value)``, or ``None`` when ``value`` is None and ``allow_none``.

    Raises
    ------
    ValueError
        ``"{name} must be [None or ]an integer >= {minimum}, got {value!r}"``, or
        ``"... an integer in [{minimum}, {maximum}], ..."`` when ``maximum`` is given.
    """
    if value is None and allow_none:
        return None
    too_big = maximum is not None and not isinstance(value, bool) and isinstance(value, (int, np.integer)) \
        and value > maximum
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum or too_big:
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an integer {allowed}, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, ok, allowed: str) -> float:
    """``value`` as a finite ``float`` for which ``ok(value)`` holds, else ValueError naming ``name`` and ``allowed``."""
    if isinstance(value, (bool, np.bool_)):  # True is not a number of anything
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from exc
    if not np.isfinite(number) or not ok(number):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_nonnegative(name: str, value: Any, *, allowed: str = "a finite number >= 0") -> float:
    """Return ``value`` as ``float`` if it is a finite number >= 0, else raise ValueError naming ``name``.

    ``allowed`` words the allowed values in the message (e.g. "None or a finite number >= 0").
    """
    return _check_real(name, value, lambda v: v >= 0, allowed)


def check_positive(name: str, value: Any, *, allowed: str = "a positive finite number") -> float:
    """Return ``value`` as ``float`` if it is a finite number > 0, else raise ValueError naming ``name``.

    ``allowed`` words the allowed values in the message (e.g. "'auto' or a positive finite number"
    where a string is accepted too).
    """
    return _check_real(name, value, lambda v: v > 0, allowed)
