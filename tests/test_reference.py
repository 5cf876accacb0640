"""Tests for mrfbook.physics.reference (apparent single-compartment parameters of a signal)."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.phantom import BRAIN_TISSUES_3T, Compartments, TissueMaps, brain_phantom
from mrfbook.physics.reference import (
    DEFAULT_T1_BOUNDS_MS,
    DEFAULT_T2_BOUNDS_MS,
    ApparentParameters,
    apparent_parameters,
    apparent_reference,
)
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import image_stack

SEQ = paper_sequence()
GM, WM, CSF = (BRAIN_TISSUES_3T[n] for n in ("grey matter", "white matter", "CSF"))


def fingerprints(t1, t2) -> np.ndarray:
    """(n, L) float64 fingerprints (PD = 1) of the paper sequence."""
    return simulate_fisp(SEQ, np.atleast_1d(np.asarray(t1, float)), np.atleast_1d(np.asarray(t2, float)),
                         dtype=np.float64)


def best_correlation(x: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """(N,) correlation of each row of x with its best atom among (t1, t2)."""
    atoms = fingerprints(t1, t2)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.abs(u @ atoms.T).max(axis=1)


def correlation(x: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """(N,) correlation of each row of x with the fingerprint of its own (t1, t2)."""
    s = fingerprints(t1, t2)
    return np.abs(np.sum(x * s, axis=1)) / (np.linalg.norm(x, axis=1) * np.linalg.norm(s, axis=1))


def mixture(fractions: dict[str, float]) -> np.ndarray:
    """(L,) signal of a slow-exchange mix of brain tissues, spin weights fraction x PD."""
    tis = [BRAIN_TISSUES_3T[n] for n in fractions]
    s = fingerprints([t["t1_ms"] for t in tis], [t["t2_ms"] for t in tis])
    w = np.array([f * t["pd"] for f, t in zip(fractions.values(), tis)])
    return w @ s


def test_a_single_fingerprint_gives_back_its_own_parameters():
    t1 = np.array([GM["t1_ms"], WM["t1_ms"], CSF["t1_ms"], 382.0, 1234.5, 300.0, 2000.0])
    t2 = np.array([GM["t2_ms"], WM["t2_ms"], CSF["t2_ms"], 68.0, 45.6, 20.0, 1500.0])
    pd = np.linspace(0.3, 1.2, t1.size)
    x = pd[:, None] * fingerprints(t1, t2)
    fit = apparent_parameters(x, SEQ)
    assert isinstance(fit, ApparentParameters)
    for a in (fit.t1_ms, fit.t2_ms, fit.pd, fit.correlation):
        assert a.shape == (t1.size,) and a.dtype == np.float64
    np.testing.assert_allclose(fit.t1_ms, t1, rtol=5e-3)
    np.testing.assert_allclose(fit.t2_ms, t2, rtol=5e-3)
    np.testing.assert_allclose(fit.pd, pd, rtol=5e-3)
    assert np.all(fit.correlation > 0.99999) and np.all(fit.correlation <= 1.0)
    # converged, not just near: the grid start plus one step is already within 0.5 %
    np.testing.assert_allclose(fit.t1_ms, t1, rtol=1e-6)
    np.testing.assert_allclose(fit.t2_ms, t2, rtol=1e-6)
    assert 1 <= fit.n_iter <= 30
    # complex input with a phase per signature: the same fit (phase-aligned real part)
    phase = np.exp(1j * np.linspace(-2.0, 2.5, t1.size))[:, None]
    fit_c = apparent_parameters((x * phase).astype(np.complex128), SEQ)
    np.testing.assert_allclose(fit_c.t1_ms, t1, rtol=5e-3)
    np.testing.assert_allclose(fit_c.t2_ms, t2, rtol=5e-3)
    np.testing.assert_allclose(fit_c.pd, pd, rtol=5e-3)
    # a simulated stack's complex64 signal (imaginary part 0) is fitted through its real part
    fit_64 = apparent_parameters(x.astype(np.complex64), SEQ)
    np.testing.assert_allclose(fit_64.t1_ms, t1, rtol=5e-3)


def test_a_mixture_is_fitted_better_than_by_any_atom_of_a_grid():
    x = mixture({"grey matter": 0.5, "CSF": 0.5})[None]
    fit = apparent_parameters(x, SEQ)
    assert 0.9 < fit.correlation[0] < 0.9999  # no single fingerprint explains a slow-exchange sum
    np.testing.assert_allclose(fit.correlation, correlation(x, fit.t1_ms, fit.t2_ms), rtol=1e-12)
    # a grid finer than the fit's own starting grid, with the paper grid's T1 range
    g1, g2 = np.meshgrid(np.arange(100.0, 5001.0, 50.0), np.geomspace(1.0, 2000.0, 90), indexing="ij")
    keep = g2 <= g1
    assert fit.correlation[0] >= best_correlation(x, g1[keep], g2[keep])[0] - 1e-12
    # PD is the least-squares scale of the fitted fingerprint
    s = fingerprints(fit.t1_ms, fit.t2_ms)[0]
    np.testing.assert_allclose(fit.pd[0], s @ x[0] / (s @ s), rtol=1e-10)


def test_the_fit_is_never_worse_than_its_grid_start():
    # mixed pixels of a small phantom, signals as the acquisition simulates them
    ph = brain_phantom(16)
    x = image_stack(ph, SEQ)[ph.tissue_mask].real.astype(np.float64)
    # the fit's starting grid: 40 log-spaced T1 x 40 log-spaced T2 over the bounds, T2 <= T1
    g1, g2 = np.meshgrid(np.geomspace(*DEFAULT_T1_BOUNDS_MS, 40), np.geomspace(*DEFAULT_T2_BOUNDS_MS, 40), indexing="ij")
    keep = g2 <= g1
    start = best_correlation(x, g1[keep], g2[keep])
    one = apparent_parameters(x, SEQ, max_iter=1)
    full = apparent_parameters(x, SEQ)
    assert one.n_iter == 1 and full.n_iter >= 1
    assert np.all(one.correlation >= start - 1e-12)
    assert np.all(full.correlation >= one.correlation - 1e-12)
    assert np.mean(full.correlation > start + 1e-9) > 0.5  # it does improve on the grid
    assert np.all(full.t2_ms <= full.t1_ms)
    assert np.all((full.t1_ms >= DEFAULT_T1_BOUNDS_MS[0]) & (full.t1_ms <= DEFAULT_T1_BOUNDS_MS[1]))
    assert np.all((full.t2_ms >= DEFAULT_T2_BOUNDS_MS[0]) & (full.t2_ms <= DEFAULT_T2_BOUNDS_MS[1]))


def test_signatures_without_signal_get_zero():
    s = fingerprints([GM["t1_ms"], WM["t1_ms"]], [GM["t2_ms"], WM["t2_ms"]])
    x = np.stack([s[0], np.zeros_like(s[0]), 1e-9 * s[1], s[1]])
    fit = apparent_parameters(x, SEQ)
    for a in (fit.t1_ms, fit.t2_ms, fit.pd, fit.correlation):
        assert a[1] == 0.0 and a[2] == 0.0
    np.testing.assert_allclose(fit.t1_ms[[0, 3]], [GM["t1_ms"], WM["t1_ms"]], rtol=5e-3)
    everything_zero = apparent_parameters(np.zeros((3, SEQ.n_timepoints)), SEQ)
    assert everything_zero.n_iter == 0 and not np.any(everything_zero.t1_ms)
    empty = apparent_parameters(np.zeros((0, SEQ.n_timepoints)), SEQ)
    assert empty.t1_ms.shape == (0,)


def test_the_bounds_hold_and_an_out_of_range_tissue_sits_on_them():
    x = fingerprints([CSF["t1_ms"]], [CSF["t2_ms"]])
    fit = apparent_parameters(x, SEQ, t1_bounds_ms=(100.0, 3000.0), t2_bounds_ms=(1.0, 1000.0))
    assert fit.t1_ms[0] <= 3000.0 * (1 + 1e-12) and fit.t2_ms[0] <= 1000.0 * (1 + 1e-12)
    assert fit.correlation[0] < 0.99999


def _two_by_three_phantom() -> TissueMaps:
    """Hand-built 2 x 3 phantom: pure GM, pure WM, 50/50 GM/CSF, 70/30 WM/GM, no tissue, pure CSF."""
    names = ("CSF", "grey matter", "white matter")
    frac = np.zeros((3, 2, 3))
    frac[1, 0, 0] = 1.0
    frac[2, 0, 1] = 1.0
    frac[[0, 1], 0, 2] = 0.5
    frac[[2, 1], 1, 0] = 0.7, 0.3
    frac[0, 1, 2] = 1.0
    tis = [BRAIN_TISSUES_3T[n] for n in names]
    weight = frac * np.array([t["pd"] for t in tis])[:, None, None]
    on = weight > 0
    t1 = np.where(on, np.array([t["t1_ms"] for t in tis])[:, None, None], 0.0)
    t2 = np.where(on, np.array([t["t2_ms"] for t in tis])[:, None, None], 0.0)
    comp = Compartments(names, weight, t1, t2)
    r1, r2, pd = comp.reference_maps()
    mask = pd > 0
    labels = np.where(mask, 1 + np.argmax(frac, axis=0), 0).astype(np.int16)
    return TissueMaps(r1, r2, pd, mask, labels, ("background",) + names, comp)


def test_apparent_reference_replaces_the_maps_inside_the_mask_only():
    ph = _two_by_three_phantom()
    before = [a.copy() for a in (ph.t1_ms, ph.t2_ms, ph.pd)]
    ap = apparent_reference(ph, SEQ)
    assert ap is not ph
    for a, b in zip((ph.t1_ms, ph.t2_ms, ph.pd), before):  # the rate-mix maps stay in the phantom
        np.testing.assert_array_equal(a, b)
    assert ap.compartments is ph.compartments and ap.labels is ph.labels and ap.label_names == ph.label_names
    np.testing.assert_array_equal(ap.tissue_mask, ph.tissue_mask)
    for a in (ap.t1_ms, ap.t2_ms, ap.pd):
        assert a.shape == (2, 3) and a.dtype == np.float64 and a[1, 1] == 0.0
    # pure pixels: their own values (= the rate mix)
    for r, c in ((0, 0), (0, 1), (1, 2)):
        np.testing.assert_allclose([ap.t1_ms[r, c], ap.t2_ms[r, c], ap.pd[r, c]],
                                   [ph.t1_ms[r, c], ph.t2_ms[r, c], ph.pd[r, c]], rtol=5e-3)
    # the GM/CSF pixel: far from the rate mix, as the slow-exchange sum says
    assert abs(ap.t1_ms[0, 2] - ph.t1_ms[0, 2]) > 500.0
    # the fit of the image stack's signal, what a method is given
    m = ph.tissue_mask
    fit = apparent_parameters(image_stack(ph, SEQ)[m], SEQ)
    np.testing.assert_allclose(ap.t1_ms[m], fit.t1_ms, rtol=1e-4)
    np.testing.assert_allclose(ap.t2_ms[m], fit.t2_ms, rtol=1e-4)
    np.testing.assert_allclose(ap.pd[m], fit.pd, rtol=1e-4)
    # keyword arguments reach the fit
    capped = apparent_reference(ph, SEQ, t1_bounds_ms=(100.0, 2000.0))
    assert capped.t1_ms.max() <= 2000.0 * (1 + 1e-12)


def test_apparent_reference_of_a_small_brain_phantom():
    ph = brain_phantom(16)
    ap = apparent_reference(ph, SEQ)
    m = ph.tissue_mask
    assert np.all(ap.t1_ms[~m] == 0) and np.all(ap.t2_ms[~m] == 0) and np.all(ap.pd[~m] == 0)
    assert np.all(ap.t1_ms[m] > 0) and np.all(ap.t2_ms[m] <= ap.t1_ms[m])
    fit = apparent_parameters(image_stack(ph, SEQ)[m], SEQ)
    np.testing.assert_allclose(ap.t1_ms[m], fit.t1_ms, rtol=1e-3)
    assert np.all(fit.correlation > 0.99)  # brain tissue mixes are nearly single fingerprints ...
    assert np.abs(ap.t1_ms[m] - ph.t1_ms[m]).max() > 1000.0  # ... yet far from the rate mix where CSF is


def test_a_phantom_without_compartments_keeps_its_maps():
    ph = brain_phantom(16, partial_volume="rates")
    ap = apparent_reference(ph, SEQ)
    assert ap is not ph and ap.compartments is None
    for name in ("t1_ms", "t2_ms", "pd", "tissue_mask", "labels"):
        np.testing.assert_array_equal(getattr(ap, name), getattr(ph, name))
    assert ap.t1_ms is not ph.t1_ms  # copies: editing one leaves the other alone
    # and those maps are indeed the apparent parameters of its (single-fingerprint) signal
    m = ph.tissue_mask
    fit = apparent_parameters(image_stack(ph, SEQ)[m], SEQ)
    np.testing.assert_allclose(fit.t1_ms, ph.t1_ms[m], rtol=5e-3)
    np.testing.assert_allclose(fit.t2_ms, ph.t2_ms[m], rtol=5e-3)


@pytest.mark.parametrize("kwargs, name", [
    ({"signatures": np.zeros((4, 199))}, "signatures"),
    ({"signatures": np.zeros(200)}, "signatures"),
    ({"signatures": np.full((2, 200), np.nan)}, "signatures"),
    ({"signatures": np.array([["a"] * 200])}, "signatures"),
    ({"sequence": "paper"}, "sequence"),
    ({"t1_bounds_ms": (100.0, 10.0)}, "t1_bounds_ms"),
    ({"t1_bounds_ms": (0.0, 10.0)}, "t1_bounds_ms"),
    ({"t1_bounds_ms": (100.0,)}, "t1_bounds_ms"),
    ({"t2_bounds_ms": (-1.0, 10.0)}, "t2_bounds_ms"),
    ({"t2_bounds_ms": (5.0, np.inf)}, "t2_bounds_ms"),
    ({"t2_bounds_ms": (20.0, 40.0), "t1_bounds_ms": (5.0, 10.0)}, "t2_bounds_ms"),
    ({"max_iter": 0}, "max_iter"),
    ({"max_iter": 2.5}, "max_iter"),
    ({"tol": 0.0}, "tol"),
])
def test_bad_inputs_raise_naming_the_parameter(kwargs, name):
    args = {"signatures": fingerprints([1000.0], [80.0]), "sequence": SEQ} | kwargs
    signatures, sequence = args.pop("signatures"), args.pop("sequence")
    with pytest.raises(ValueError, match=name):
        apparent_parameters(signatures, sequence, **args)


def test_apparent_reference_bad_inputs():
    with pytest.raises(ValueError, match="phantom"):
        apparent_reference("brain", SEQ)
    with pytest.raises(ValueError, match="sequence"):
        apparent_reference(_two_by_three_phantom(), None)
    with pytest.raises(ValueError, match="max_iter"):
        apparent_reference(_two_by_three_phantom(), SEQ, max_iter=0)
