"""Tests for mrfbook.utils.checks: the shared argument checks and their messages."""

import numpy as np
import pytest

from mrfbook.utils.checks import check_int, check_nonnegative


def test_check_int_accepts_python_and_numpy_integers():
    assert check_int("n", 3, 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    assert check_int("n", 5, 1, 5) == 5
    assert check_int("n", None, 1, allow_none=True) is None


@pytest.mark.parametrize("value, kwargs, message", [
    (0, {}, "n must be an integer >= 1, got 0"),
    (True, {}, "n must be an integer >= 1, got True"),
    (2.0, {}, "n must be an integer >= 1, got 2.0"),
    (None, {}, "n must be an integer >= 1, got None"),
    (6, {"maximum": 5}, r"n must be an integer in \[1, 5\], got 6"),
    (0, {"maximum": 5}, r"n must be an integer in \[1, 5\], got 0"),
    (0, {"allow_none": True}, "n must be None or an integer >= 1, got 0"),
])
def test_check_int_names_the_parameter_and_range(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_int("n", value, 1, **kwargs)


def test_check_nonnegative():
    assert check_nonnegative("lam", 0) == 0.0
    for bad in (-1e-9, np.nan, np.inf, "x", None):
        with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
            check_nonnegative("lam", bad)
