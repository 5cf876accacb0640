"""Tests for mrfbook.analysis.errors: region RMSEs add up, the grid layout puts errors where they belong."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.analysis.errors import default_regions, error_grid, errors_by_region, geometric_edges


def _grid():
    t1, t2 = np.meshgrid(np.arange(6.0, 5000.0, 500.0), np.arange(6.0, 2000.0, 10.0), indexing="ij")
    keep = t1 >= t2
    return t1[keep], t2[keep]


def test_regions_partition_and_squared_errors_add_up():
    t1, t2 = _grid()
    rng = np.random.default_rng(0)
    pred = np.stack([t1 + rng.normal(0, 2, t1.size), t2 + rng.normal(0, 1, t2.size)], axis=1)
    pred[t2 < 20, 0] += 30.0  # a large error confined to the short-T2 region
    rows = errors_by_region(pred, t1, t2)
    by_name = {r.name: r for r in rows}
    parts = [r for r in rows if r.name != "all"]
    assert sum(r.n for r in parts) == t1.size == by_name["all"].n
    assert sum(r.t1_mse_share for r in parts) == pytest.approx(1.0)
    assert sum(r.t2_mse_share for r in parts) == pytest.approx(1.0)
    # the whole-grid RMSE is the share-weighted mean of the regions' MSEs
    assert by_name["all"].t1_rmse_ms == pytest.approx(np.sqrt(sum(r.share * r.t1_rmse_ms ** 2 for r in parts)))
    short = by_name["T2 < 20 ms"]
    assert short.t1_rmse_ms == pytest.approx(np.sqrt(np.mean((pred[t2 < 20, 0] - t1[t2 < 20]) ** 2)))
    assert short.t1_rmse_ms > 25 and by_name["the rest"].t1_rmse_ms < 3


def test_error_grid_places_each_error_and_marks_missing_pairs():
    t1 = np.array([10.0, 20.0, 20.0])
    t2 = np.array([5.0, 5.0, 15.0])
    pred = np.array([[11.0, 5.0], [17.0, 6.0], [20.0, 13.0]])
    a, b, e1, e2 = error_grid(pred, t1, t2)
    assert a.tolist() == [10.0, 20.0] and b.tolist() == [5.0, 15.0]
    np.testing.assert_array_equal(e1, [[1.0, 3.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(e2, [[0.0, 1.0], [np.nan, 2.0]])


@pytest.mark.parametrize("kwargs, name", [({"short_t2_ms": 0.0}, "short_t2_ms"), ({"long_t1_ms": np.nan}, "long_t1_ms")])
def test_bad_thresholds_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        default_regions(np.ones(3), np.ones(3), **kwargs)


def test_bad_shapes_and_repeats_are_refused():
    t1, t2 = np.array([10.0, 20.0]), np.array([5.0, 5.0])
    with pytest.raises(ValueError, match="pred_ms"):
        errors_by_region(np.zeros((2, 3)), t1, t2)
    with pytest.raises(ValueError, match="regions"):
        errors_by_region(np.zeros((2, 2)), t1, t2, {"x": np.array([1, 0])})
    with pytest.raises(ValueError, match="repeat"):
        error_grid(np.zeros((2, 2)), np.array([10.0, 10.0]), t2)
    with pytest.raises(ValueError, match="finite"):
        errors_by_region(np.full((2, 2), np.nan), t1, t2)


def test_geometric_edges_put_each_value_inside_its_cell():
    v = np.array([6.0, 16.0, 26.0, 1996.0])
    e = geometric_edges(v)
    assert e.shape == (5,)
    assert np.all((e[:-1] < v) & (v < e[1:]))  # every value inside its own cell
    np.testing.assert_allclose(e[1:-1], np.sqrt(v[1:] * v[:-1]))  # inner edges: geometric midpoints
    np.testing.assert_allclose([e[1] / v[0], e[-2] / v[-1]], [v[0] / e[0], v[-1] / e[-1]])  # end cells symmetric in log
    with pytest.raises(ValueError, match="values"):
        geometric_edges(np.array([1.0, 0.5]))
