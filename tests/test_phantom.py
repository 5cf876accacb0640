"""Tests for mrfbook.physics.phantom (brain and Shepp-Logan phantoms)."""

import socket

import numpy as np
import pytest

from mrfbook.physics.phantom import (
    BRAIN_TISSUES_3T,
    SHEPP_LOGAN_TISSUES_3T,
    brain_phantom,
    mni152_data_dir,
    shepp_logan_phantom,
)


@pytest.fixture(scope="module")
def brain():
    return brain_phantom(128)


def test_brain_shapes_dtypes(brain):
    for a in (brain.t1_ms, brain.t2_ms, brain.pd):
        assert a.shape == (128, 128) and a.dtype == np.float64
    assert brain.tissue_mask.dtype == bool and brain.labels.shape == (128, 128)
    assert brain.label_names == ("background", "CSF", "grey matter", "white matter")


def test_brain_deterministic_and_seeded(brain):
    again = brain_phantom(128)
    np.testing.assert_array_equal(again.t1_ms, brain.t1_ms)
    np.testing.assert_array_equal(again.pd, brain.pd)
    other = brain_phantom(128, seed=1)
    np.testing.assert_array_equal(other.tissue_mask, brain.tissue_mask)
    assert not np.allclose(other.t1_ms, brain.t1_ms)


def test_brain_values_in_dictionary_range(brain):
    m = brain.tissue_mask
    t1, t2, pd = brain.t1_ms[m], brain.t2_ms[m], brain.pd[m]
    assert np.all(t1 >= t2)
    assert t1.max() <= 5000 and t2.max() <= 2000
    wm, csf = BRAIN_TISSUES_3T["white matter"], BRAIN_TISSUES_3T["CSF"]
    assert t1.min() >= 0.9 * wm["t1_ms"] and t1.max() <= 1.1 * csf["t1_ms"]
    assert t2.min() >= 0.9 * wm["t2_ms"] and t2.max() <= 1.1 * csf["t2_ms"]
    assert 0 < pd.min() and pd.max() <= 1.1


def test_brain_background_zero(brain):
    bg = ~brain.tissue_mask
    for a in (brain.t1_ms, brain.t2_ms, brain.pd):
        assert np.all(a[bg] == 0)
    # corners are background, centre is tissue
    assert not brain.tissue_mask[0, 0] and brain.tissue_mask[64, 64]
    assert np.all(brain.labels[bg] == 0) and np.all(brain.labels[~bg] > 0)


def test_brain_tissue_fractions_plausible(brain):
    counts = np.bincount(brain.labels[brain.tissue_mask], minlength=4)[1:]
    frac = counts / counts.sum()  # CSF, GM, WM
    assert 0.02 < frac[0] < 0.25
    assert 0.3 < frac[1] < 0.65 and 0.3 < frac[2] < 0.65
    # the brain fills a plausible part of the 233-mm field of view
    assert 0.25 < brain.tissue_mask.mean() < 0.6
    # values vary continuously: many distinct values, not just three tissues
    assert np.unique(brain.t2_ms[brain.tissue_mask]).size > 1000


def test_brain_pure_tissue_values_near_literature():
    p = brain_phantom(64, variation=0.0)
    wm = p.labels == 3
    # the most white pixels are pure WM: T1 equals the tabulated value
    assert np.isclose(np.min(p.t1_ms[wm]), BRAIN_TISSUES_3T["white matter"]["t1_ms"], rtol=0.02)


@pytest.mark.parametrize("size", [16, 100, 257])
def test_brain_other_sizes(size):
    p = brain_phantom(size)
    assert p.t1_ms.shape == (size, size)
    assert 0.25 < p.tissue_mask.mean() < 0.6


@pytest.mark.parametrize("bad", [15, 1025, 12.0, "128", True])
def test_size_validation(bad):
    with pytest.raises(ValueError, match="size"):
        brain_phantom(bad)
    with pytest.raises(ValueError, match="size"):
        shepp_logan_phantom(bad)


def test_other_parameter_validation():
    with pytest.raises(ValueError, match="slice_mm"):
        brain_phantom(32, slice_mm=90.0)
    with pytest.raises(ValueError, match="variation"):
        brain_phantom(32, variation=0.5)
    with pytest.raises(ValueError, match="mask_threshold"):
        brain_phantom(32, mask_threshold=0.0)


def test_templates_ship_with_nilearn_and_no_network(monkeypatch):
    folder = mni152_data_dir()
    for kind in ("gm", "wm", "t1"):
        assert (folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from mrfbook.physics import phantom

    phantom._mni_slice.cache_clear()
    p = brain_phantom(32, slice_mm=10.0)
    assert p.tissue_mask.any()


def test_shepp_logan_values():
    p = shepp_logan_phantom(128)
    names = p.label_names
    assert names[0] == "background"
    for i, name in enumerate(names[1:], start=1):
        sel = p.labels == i
        assert sel.any(), name
        t = SHEPP_LOGAN_TISSUES_3T[name]
        assert np.all(p.t1_ms[sel] == t["t1_ms"]) and np.all(p.t2_ms[sel] == t["t2_ms"])
        assert np.all(p.pd[sel] == t["pd"])
    # Gach et al. 2008 at 3 T (rounded, ms)
    lab = {n: i for i, n in enumerate(names)}
    assert round(p.t1_ms[p.labels == lab["white matter"]][0]) == 887
    assert round(p.t1_ms[p.labels == lab["grey matter"]][0]) == 1295
    assert round(p.t1_ms[p.labels == lab["scalp"]][0]) == 377
    assert p.t2_ms[p.labels == lab["CSF"]][0] == 1990
    assert np.all(p.t1_ms >= p.t2_ms)
    assert np.all(p.t1_ms[~p.tissue_mask] == 0)
    # ventricles: the centre row through y = 0 meets CSF left and right of centre
    row = p.labels[64]
    assert row[50] == lab["CSF"] and row[78] == lab["CSF"] and row[64] == lab["grey matter"]
    # white-matter ellipse above the centre, grey matter above it
    assert p.labels[20, 64] == lab["grey matter"] and p.labels[37, 64] == lab["white matter"]
