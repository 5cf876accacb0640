"""Tests for mrfbook.recon.flor: subspace-constrained low-rank restoration (Mazor et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.physics.compression import svd_basis
from mrfbook.physics.dictionary import build_dictionary, paper_grid
from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks, zero_filled
from mrfbook.recon.flor import FLOR_MIN_CORRELATION, flor_maps, flor_restore, subspace_basis

SIZE, FRAMES = 32, 60


@pytest.fixture(scope="module")
def setup():
    seq = paper_sequence(FRAMES)
    maps = brain_phantom(SIZE)
    x = image_stack(maps, seq)
    t1, t2 = paper_grid(step_ms=40.0)
    dictionary = build_dictionary(seq, t1, t2)
    op = UndersampledFourier(variable_density_masks((SIZE, SIZE), FRAMES, 0.25, seed=1))
    return maps, x, dictionary, op, op.forward(x)


def _nrmse(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_flor_signatures_lie_in_the_dictionary_subspace(setup):
    _, x, dictionary, op, y = setup
    res = flor_restore(y, op, dictionary, subspace_rank=6)
    basis = res.extra["basis"]
    assert basis.shape == (FRAMES, 6)
    sig = res.images.reshape(-1, FRAMES)
    outside = sig - (sig @ basis) @ basis.T
    assert np.linalg.norm(outside) <= 1e-5 * np.linalg.norm(sig)
    # and the basis is the dictionary's leading temporal subspace
    ref = svd_basis(dictionary.normalised(), rank=6).basis
    np.testing.assert_allclose(np.abs(basis.T @ ref), np.eye(6), atol=1e-4)


def test_flor_beats_zero_filling_and_matches_the_paper_recipe(setup):
    _, x, dictionary, op, y = setup
    res = flor_restore(y, op, dictionary)
    assert res.n_iter == 30 and res.images.shape == x.shape and res.images.dtype == np.complex64
    err_zf, err_flor = _nrmse(zero_filled(y, op), x), _nrmse(res.images, x)
    # measured at this size: zero-filled 0.43, FLOR 0.058
    assert err_flor < 0.25 * err_zf, (err_flor, err_zf)


def test_flor_ista_objective_is_monotone(setup):
    _, _, dictionary, op, y = setup
    res = flor_restore(y, op, dictionary, fista=False, n_iter=40)
    assert np.all(np.diff(res.objective) <= 1e-6 * res.objective[0])


def test_basis_sources_agree(setup):
    _, _, dictionary, op, y = setup
    sb = svd_basis(dictionary.normalised(), rank=5)
    a = subspace_basis(dictionary, subspace_rank=5)
    b = subspace_basis(sb)
    c = subspace_basis(sb.basis)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(b, c)
    assert subspace_basis(sb, subspace_rank=3).shape == (FRAMES, 3)
    r1 = flor_restore(y, op, sb, n_iter=5)
    r2 = flor_restore(y, op, dictionary, subspace_rank=5, n_iter=5)
    np.testing.assert_allclose(r1.images, r2.images, atol=1e-4 * np.abs(r2.images).max())
    energy = subspace_basis(dictionary, energy=0.999)
    assert 1 <= energy.shape[1] < FRAMES


def test_flor_maps_reject_poor_correlation(setup):
    maps, x, dictionary, _, _ = setup
    rng = np.random.default_rng(0)
    stack = x.copy()
    noisy = np.zeros(maps.tissue_mask.shape, bool)
    noisy[: SIZE // 2] = maps.tissue_mask[: SIZE // 2]
    stack[noisy] = (rng.standard_normal((noisy.sum(), FRAMES))).astype(np.complex64)
    pm = flor_maps(stack, dictionary, mask=maps.tissue_mask)
    assert FLOR_MIN_CORRELATION == 0.9
    assert not pm.valid[noisy].any(), "random signatures correlate < 0.9 with every atom"
    assert pm.valid[maps.tissue_mask & ~noisy].all()
    assert np.all(pm.t1_ms[noisy] == 0)


def test_bad_arguments(setup):
    _, _, dictionary, op, y = setup
    with pytest.raises(ValueError, match="subspace_rank"):
        flor_restore(y, op, dictionary, subspace_rank=0)
    with pytest.raises(ValueError, match="subspace_rank"):
        flor_restore(y, op, dictionary, subspace_rank=FRAMES + 1)
    with pytest.raises(ValueError, match="energy"):
        flor_restore(y, op, dictionary, energy=1.5)
    with pytest.raises(ValueError, match="dictionary"):
        flor_restore(y, op, "atoms")
    with pytest.raises(ValueError, match="orthonormal"):
        flor_restore(y, op, np.ones((FRAMES, 2), np.float32))
    short = subspace_basis(dictionary, subspace_rank=4)[:-1]
    q, _ = np.linalg.qr(short)
    with pytest.raises(ValueError, match="time points"):
        flor_restore(y, op, q.astype(np.float32))
    with pytest.raises(ValueError, match="lam"):
        flor_restore(y, op, dictionary, lam=-1)
    with pytest.raises(ValueError, match="n_iter"):
        flor_restore(y, op, dictionary, n_iter=0)


def test_flor_engines_agree_and_warm_start(setup):
    _, _, dictionary, op, y = setup
    dense = flor_restore(y, op, dictionary, subspace_rank=6, engine="dense")
    factored = flor_restore(y, op, dictionary, subspace_rank=6)
    assert _nrmse(factored.images, dense.images) < 1e-4
    np.testing.assert_allclose(factored.objective, dense.objective, rtol=1e-4)
    solved = flor_restore(y, op, dictionary, subspace_rank=6, n_iter=400, tol=1e-6)
    again = flor_restore(y, op, dictionary, subspace_rank=6, n_iter=30, tol=1e-4, x0=solved)
    assert again.converged and again.n_iter <= 2
    with pytest.raises(ValueError, match="engine"):
        flor_restore(y, op, dictionary, engine="fast")
