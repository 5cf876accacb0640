"""Tests for the report helpers: mrfbook.paper, mrfbook.report.tables, mrfbook.report.figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrfbook.paper import PAPER, paper_value  # noqa: E402
from mrfbook.report.figures import MapScales, map_comparison  # noqa: E402
from mrfbook.report.tables import markdown_table  # noqa: E402


# -- paper_figures ---------------------------------------------------------------------------------
def test_paper_is_read_only_at_every_level():
    with pytest.raises(TypeError):
        PAPER["synthetic"] = {}
    with pytest.raises(TypeError):
        PAPER["synthetic"]["t1_rmse_ms"] = 0.1
    with pytest.raises(TypeError):
        PAPER["undersampled"]["flor"]["seconds"] = 1.0
    assert PAPER["synthetic"]["t1_rmse_ms"] == 0.659


@pytest.mark.parametrize("keys, value", [
    (("synthetic", "t1_rmse_ms"), 0.659),
    (("synthetic", "t2_rmse_ms"), 0.491),
    (("synthetic", "t1_r2"), 0.99999986),
    (("synthetic", "t2_r2"), 0.99999963),
    (("full_sampling", "t2_rmse_network_ms"), 2.498),
    (("full_sampling", "t2_rmse_matching_ms"), 6.252),
    (("full_sampling", "t2_snr_gain_db"), 7.9),
    (("undersampled", "sampling_ratio"), 0.15),
    (("undersampled", "ma_matching", "t1_snr_db"), 13.50),
    (("undersampled", "ma_matching", "t2_snr_db"), 8.61),
    (("undersampled", "ma_matching", "seconds"), 106.0),
    (("undersampled", "flor", "t1_snr_db"), 30.51),
    (("undersampled", "flor", "t2_snr_db"), 21.89),
    (("undersampled", "flor", "seconds"), 121.7),
    (("undersampled", "proposed", "t1_snr_db"), 30.76),
    (("undersampled", "proposed", "t2_snr_db"), 19.78),
    (("undersampled", "proposed", "seconds"), 1.67),
    (("speed", "network_80k_s"), 8.2),
    (("speed", "matching_80k_s"), 464.1),
    (("speed", "speedup_80k"), 53.0),
    (("speed", "network_slice_s"), 1.6),
    (("speed", "speedup_slice"), 56.0),
    (("speed", "speedup_vs_flor"), 73.0),
    (("storage", "network_mb"), 20.3),
    (("storage", "dictionary_mb_more_than"), 100.0),
    (("training", "seconds_per_epoch"), 30.0),
    (("training", "epochs"), 50),
    (("training", "device"), "NVIDIA GeForce GTX 1080 Ti"),
])
def test_paper_value_returns_the_published_figures(keys, value):
    assert paper_value(*keys) == value


def test_paper_value_returns_sub_mappings():
    assert paper_value("undersampled", "flor")["t1_snr_db"] == 30.51
    assert paper_value() is PAPER


@pytest.mark.parametrize("keys, named", [
    (("nope",), "nope"),
    (("synthetic", "t3_rmse_ms"), "synthetic/t3_rmse_ms"),
    (("synthetic", "t1_rmse_ms", "deeper"), "synthetic/t1_rmse_ms/deeper"),  # past a leaf
])
def test_paper_value_key_error_names_the_missing_path(keys, named):
    with pytest.raises(KeyError, match=named):
        paper_value(*keys)


# -- tables ----------------------------------------------------------------------------------------
def test_markdown_table_exact_output():
    rows = [{"a": 1, "b": "x", "c": "ignored"}, {"a": 2.5, "b": None}]
    assert markdown_table(rows, ["a", "b"]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |"
    assert markdown_table(rows, ["b"], headers=["B (ms)"]) == "| B (ms) |\n|---|\n| x |\n| None |"


def test_markdown_table_without_rows_is_header_only():
    assert markdown_table([], ["a", "b"], headers=["A", "B"]) == "| A | B |\n|---|---|"


def test_markdown_table_escapes_pipes_and_newlines():
    out = markdown_table([{"k": "a|b\nc"}], ["k"], headers=["x|y"])
    assert out == "| x\\|y |\n|---|\n| a\\|b c |"
    # every line still has exactly the column separators of one column
    for line in out.splitlines():
        assert line.replace("\\|", "").count("|") == 2


def test_markdown_table_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"row 1 lacks the column\(s\) \['b'\]"):
        markdown_table([{"a": 1, "b": 2}, {"a": 3}], ["a", "b"])
    with pytest.raises(ValueError, match="headers has 1 entries but columns has 2"):
        markdown_table([{"a": 1, "b": 2}], ["a", "b"], headers=["A"])
    with pytest.raises(ValueError, match="columns"):
        markdown_table([{"a": 1}], [])


# -- map_figures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["t1_max", "t2_max", "t1_err_max", "t2_err_max"])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_map_scales_rejects_non_positive_or_non_finite(name, bad):
    with pytest.raises(ValueError, match=name):
        MapScales(**{name: bad})


def test_map_scales_keeps_values_as_floats():
    s = MapScales(1000, 200, 50, 20)
    assert (s.t1_max, s.t2_max, s.t1_err_max, s.t2_err_max) == (1000.0, 200.0, 50.0, 20.0)
    assert isinstance(s.t1_max, float)


@pytest.fixture
def maps():
    h, w = 6, 5
    mask = np.zeros((h, w), bool)
    mask[1:5, 1:4] = True
    t1 = np.where(mask, 800.0, 0.0)
    t2 = np.where(mask, 80.0, 0.0)
    est = {
        "method A": (t1 + 30.0 * mask, t2 - 4.0 * mask),  # constant error of 30 / 4 ms in tissue
        "method B": (t1 + 999.0 * ~mask, t2.copy()),  # exact in tissue, garbage outside
    }
    return (t1, t2), est, mask


def _grid(fig, n_rows):
    return np.array(fig.axes[: 4 * n_rows], dtype=object).reshape(n_rows, 4)


def test_map_comparison_layout_and_shared_colour_limits(maps):
    truth, est, mask = maps
    scales = MapScales(t1_max=1000.0, t2_max=100.0, t1_err_max=40.0, t2_err_max=5.0)
    fig = map_comparison(truth, est, mask, scales=scales, title="demo")
    try:
        n_rows = 1 + len(est)
        grid = _grid(fig, n_rows)
        # the subplots grid comes first, then one colour bar per drawn panel
        n_panels = 2 + 4 * len(est)
        assert len(fig.axes) == 4 * n_rows + n_panels
        assert fig._suptitle.get_text() == "demo"
        limits = [(0.0, 1000.0), (0.0, 40.0), (0.0, 100.0), (0.0, 5.0)]
        for i in range(n_rows):
            for j in range(4):
                ax = grid[i, j]
                if i == 0 and j in (1, 3):  # no error maps for the ground truth
                    assert len(ax.images) == 0 and not ax.axison
                    continue
                assert len(ax.images) == 1
                assert ax.images[0].get_clim() == limits[j]
        # each row is labelled with its method (on the left), each error panel's title is its RMSE over the mask
        assert "method A" in grid[1, 0].get_ylabel()
        assert "RMSE 30.0 ms" in grid[1, 1].get_title()
        assert "RMSE 4.0 ms" in grid[1, 3].get_title()
        assert "RMSE 0.0 ms" in grid[2, 1].get_title()  # background garbage does not count
        # the error panel shows |error| with the background masked out
        err = grid[1, 1].images[0].get_array()
        assert np.ma.is_masked(err)
        np.testing.assert_array_equal(np.ma.getmaskarray(err), ~mask)
        np.testing.assert_allclose(err.compressed(), 30.0)
    finally:
        plt.close(fig)


def test_map_comparison_with_no_methods_shows_truth_only(maps):
    truth, _, mask = maps
    fig = map_comparison(truth, {}, mask)
    try:
        grid = _grid(fig, 1)
        assert grid[0, 0].images[0].get_clim() == (0.0, MapScales().t1_max)
        assert grid[0, 2].images[0].get_clim() == (0.0, MapScales().t2_max)
    finally:
        plt.close(fig)


def test_map_comparison_rejects_bad_inputs(maps):
    truth, est, mask = maps
    n_before = len(plt.get_fignums())
    with pytest.raises(ValueError, match="mask must be a 2-D bool array"):
        map_comparison(truth, est, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="mask must be a 2-D bool array"):
        map_comparison(truth, est, mask[None])
    with pytest.raises(ValueError, match="'method C'"):
        map_comparison(truth, {**est, "method C": (truth[0][:-1], truth[1])}, mask)
    with pytest.raises(ValueError, match="'truth'"):
        map_comparison((truth[0], truth[1].T), est, mask)
    assert len(plt.get_fignums()) == n_before  # nothing half-drawn is left open
