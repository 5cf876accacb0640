"""Tests of mrfbook.physics.compression: temporal SVD basis, energy and rank selection, compression."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.physics.compression import SvdBasis, compress, energy_curve, rank_for_energy, reconstruct, svd_basis
from mrfbook.physics.dictionary import build_dictionary, paper_grid
from mrfbook.physics.sequence import paper_sequence


@pytest.fixture(scope="module")
def atoms():
    """Normalised atoms of the paper sequence on a coarse (step 100 ms) grid: 810 x 200."""
    return build_dictionary(paper_sequence(), *paper_grid(step_ms=100.0)).normalised()


def _low_rank(rng, k, n, s):
    u, _ = np.linalg.qr(rng.standard_normal((k, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (u * s) @ v.T


def test_singular_values_match_lapack_svd():
    rng = np.random.default_rng(0)
    s = np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.1])
    a = _low_rank(rng, 300, 40, s)
    b = svd_basis(a, rank=3)
    assert b.singular_values.shape == (40,)
    np.testing.assert_allclose(b.singular_values[:6], s, rtol=1e-6)
    assert np.all(b.singular_values[6:] < 1e-6)
    ref = np.linalg.svd(a, full_matrices=False)[2][:3].T
    # same subspace (signs aside)
    np.testing.assert_allclose(np.abs(np.sum(ref * b.basis, axis=0)), 1.0, atol=1e-5)


def test_energy_is_monotone_and_ends_at_one(atoms):
    b = svd_basis(atoms, energy=0.999)
    assert np.all(np.diff(b.energy) >= -1e-15) and b.energy[-1] == pytest.approx(1.0)
    assert np.all(np.diff(b.singular_values) <= 1e-9)
    # atoms are unit-norm, so the total energy is the number of atoms
    assert np.sum(b.singular_values**2) == pytest.approx(atoms.shape[0], rel=1e-4)
    assert b.kept_energy >= 0.999 and b.energy[b.rank - 2] < 0.999
    assert b.rank < 15  # MRF atoms are strongly compressible (5 measured)


def test_rank_for_energy_small_cases():
    s = np.array([3.0, 2.0, 1.0])  # energies 9/14, 13/14, 14/14
    assert rank_for_energy(s, 0.5) == 1
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.9) == 2
    assert rank_for_energy(s, 13 / 14) == 2
    assert rank_for_energy(s, 0.95) == 3
    assert rank_for_energy(s, 1.0) == 3
    assert rank_for_energy([1.0, 0.0, 0.0], 1.0) == 1
    np.testing.assert_allclose(energy_curve(s), [9 / 14, 13 / 14, 1.0])


def test_rank_for_energy_grows_with_fraction(atoms):
    sv = svd_basis(atoms, rank=1).singular_values
    ranks = [rank_for_energy(sv, f) for f in (0.9, 0.99, 0.999, 0.9999)]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]


def test_basis_is_orthonormal_float32_with_deterministic_signs(atoms):
    b = svd_basis(atoms, rank=10)
    assert isinstance(b, SvdBasis) and b.basis.shape == (atoms.shape[1], 10) and b.rank == 10
    assert b.basis.dtype == np.float32
    np.testing.assert_allclose(b.basis.T @ b.basis, np.eye(10), atol=1e-5)
    idx = np.argmax(np.abs(b.basis), axis=0)
    assert np.all(b.basis[idx, np.arange(10)] > 0)
    again = svd_basis(atoms[::-1].copy(), rank=10)  # row order must not matter
    np.testing.assert_allclose(again.basis, b.basis, atol=1e-4)


def test_compressed_inner_products_approximate_full_ones(atoms):
    rng = np.random.default_rng(1)
    b = svd_basis(atoms, energy=0.9999)
    # query signals: atoms of a shifted grid with noise (not in the dictionary)
    queries = build_dictionary(paper_sequence(), *paper_grid(step_ms=100.0, t1_start_ms=37.0,
                                                             t2_start_ms=23.0)).normalised()
    queries = queries + 0.01 * rng.standard_normal(queries.shape).astype(np.float32)
    full = queries @ atoms.T
    small = compress(queries, b) @ compress(atoms, b).T
    assert small.dtype == np.float32
    assert np.max(np.abs(small - full)) < 0.02
    # the best match (what dictionary matching keeps) is the same or a near-tie of it
    pick = np.argmax(small, axis=1)
    lost = full.max(axis=1) - full[np.arange(len(full)), pick]
    assert np.mean(pick == np.argmax(full, axis=1)) > 0.8
    assert np.max(lost) < 2e-3


def test_reconstruction_error_falls_with_rank(atoms):
    errors = []
    for rank in (2, 5, 10, 20):
        b = svd_basis(atoms, rank=rank)
        rec = reconstruct(compress(atoms, b), b)
        errors.append(np.mean(np.sum((rec - atoms) ** 2, axis=1)))
        # mean squared residual equals the discarded energy per atom
        assert errors[-1] == pytest.approx(
            (1 - b.energy[rank - 1]) * np.sum(b.singular_values**2) / atoms.shape[0], rel=1e-2,
            abs=1e-6)
    assert errors == sorted(errors, reverse=True)
    full = svd_basis(atoms, rank=atoms.shape[1])
    np.testing.assert_allclose(reconstruct(compress(atoms, full), full), atoms, atol=1e-5)


def test_complex_atoms_keep_inner_products():
    rng = np.random.default_rng(2)
    a = _low_rank(rng, 200, 30, np.array([4.0, 2.0, 1.0])) * np.exp(1j * 0.3)
    a = a + 1j * _low_rank(rng, 200, 30, np.array([1.0]))
    b = svd_basis(a.astype(np.complex64), rank=4)
    assert b.basis.dtype == np.complex64
    np.testing.assert_allclose(b.basis.conj().T @ b.basis, np.eye(4), atol=1e-5)
    x = a[:5]
    np.testing.assert_allclose(compress(x, b) @ compress(a, b).conj().T, x @ a.conj().T, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one"),
        ({"rank": 2, "energy": 0.9}, "exactly one"),
        ({"rank": 0}, "rank"),
        ({"rank": 41}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"energy": 0.0}, "fraction"),
        ({"energy": 1.5}, "fraction"),
    ],
)
def test_svd_basis_rejects_bad_arguments(kwargs, match):
    a = np.random.default_rng(0).standard_normal((50, 40))
    with pytest.raises(ValueError, match=match):
        svd_basis(a, **kwargs)


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="atoms"):
        svd_basis(np.ones(10), rank=1)
    with pytest.raises(ValueError, match="atoms"):
        svd_basis(np.array([[1.0, np.nan]]), rank=1)
    with pytest.raises(ValueError, match="atoms"):
        svd_basis(np.zeros((3, 4)), rank=1)
    b = svd_basis(np.random.default_rng(0).standard_normal((20, 8)), rank=3)
    with pytest.raises(ValueError, match="x must have L = 8"):
        compress(np.ones((2, 7)), b)
    with pytest.raises(ValueError, match="z must have k = 3"):
        reconstruct(np.ones((2, 4)), b)
    with pytest.raises(ValueError, match="decreasing"):
        rank_for_energy([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="singular_values"):
        rank_for_energy([-1.0], 0.5)
    with pytest.raises(ValueError, match="all zero"):
        rank_for_energy([0.0, 0.0], 0.5)
