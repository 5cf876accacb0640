"""Tests for mrfbook.nn.data: off-grid tissues and their network inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.nn.data import fresh_training_set, sample_tissues
from mrfbook.nn.inputs import prepare_training_data
from mrfbook.physics.dictionary import build_dictionary
from mrfbook.physics.sequence import paper_sequence

RANGES = {"t1_range_ms": (1.0, 4991.0), "t2_range_ms": (1.0, 1991.0)}


def test_tissues_lie_in_the_region_and_are_seeded():
    t1, t2 = sample_tissues(50_000, seed=[0, 2, 7], **RANGES)
    assert t1.shape == t2.shape == (50_000,) and t1.dtype == np.float64
    assert np.all(t1 >= t2)
    assert t1.min() >= 1.0 and t1.max() <= 4991.0 and t2.min() >= 1.0 and t2.max() <= 1991.0
    a1, a2 = sample_tissues(50_000, seed=[0, 2, 7], **RANGES)
    np.testing.assert_array_equal(t1, a1)
    np.testing.assert_array_equal(t2, a2)
    b1, _ = sample_tissues(50_000, seed=[0, 2, 8], **RANGES)
    assert not np.array_equal(t1, b1)
    # off the grid: no tissue on the 10 ms rows of the paper grid (1, 11, 21, ... ms)
    assert np.mean(np.isclose((t2 - 1.0) % 10.0, 0.0, atol=1e-6)) < 1e-3


def test_tissues_are_uniform_over_the_triangle():
    """Uniform density: the share in a sub-region equals its share of the area (within 4 sigma)."""
    n = 200_000
    t1, t2 = sample_tissues(n, seed=1, **RANGES)
    # area of {T1 in [1, 4991], T2 in [1, 1991], T1 >= T2}: rectangle minus the triangle T2 > T1
    area = 4990.0 * 1990.0 - 0.5 * 1990.0 ** 2
    short = (t2 < 21.0)  # strip T2 in [1, 21): all of it has T1 >= T2 except a sliver
    area_short = 20.0 * 4990.0 - 0.5 * 20.0 ** 2
    p = area_short / area
    assert abs(np.mean(short) - p) < 4 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("kwargs, name", [
    ({"n": 0}, "n must"),
    ({"t1_range_ms": (10.0, 5.0)}, "t1_range_ms"),
    ({"t2_range_ms": (0.0, 5.0)}, "t2_range_ms"),
    ({"t2_range_ms": "1-5"}, "t2_range_ms"),
    ({"t1_range_ms": (1.0, 5.0), "t2_range_ms": (10.0, 20.0)}, "T1 >= T2"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    args = {"n": 10, **RANGES, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        sample_tissues(**args)


def test_fresh_inputs_are_the_atoms_of_the_same_tissues():
    sequence = paper_sequence()
    x, y = fresh_training_set(sequence, 300, seed=3, **RANGES)
    t1, t2 = sample_tissues(300, seed=3, **RANGES)
    np.testing.assert_array_equal(y, np.stack([t1, t2], axis=1))
    x_ref, y_ref = prepare_training_data(build_dictionary(sequence, t1, t2))
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y, y_ref)
    assert x.dtype == np.float32 and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="sequence"):
        fresh_training_set("paper", 10, seed=0, **RANGES)
