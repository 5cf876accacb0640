"""Tests for mrfbook.recon.lowrank: singular-value thresholding and the low-rank restoration (eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks, zero_filled
from mrfbook.recon.lowrank import REFERENCE_SCALE, data_scale, lowrank_restore, svt
from mrfbook.recon.solvers import sampled_rms

SIZE, FRAMES = 32, 60


@pytest.fixture(scope="module")
def problem():
    maps = brain_phantom(SIZE)
    x = image_stack(maps, paper_sequence(FRAMES))
    op = UndersampledFourier(variable_density_masks((SIZE, SIZE), FRAMES, 0.25, seed=0))
    return x, op, op.forward(x)


def _nrmse(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------- SVT


def _low_rank_plus_noise(seed=0, shape=(40, 300)):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((shape[0], 5)) + 1j * rng.standard_normal((shape[0], 5))
    b = rng.standard_normal((5, shape[1])) + 1j * rng.standard_normal((5, shape[1]))
    noise = 0.1 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return (a @ b + noise).astype(np.complex64)


def test_svt_shrinks_singular_values_exactly():
    z = _low_rank_plus_noise()
    s = np.linalg.svd(z.astype(np.complex128), compute_uv=False)
    t = 0.5 * (s[4] + s[5])
    out, nuc, rank = svt(z, t)
    s_out = np.linalg.svd(out.astype(np.complex128), compute_uv=False)
    expected = np.clip(s - t, 0, None)
    np.testing.assert_allclose(s_out[:8], expected[:8], rtol=1e-4, atol=1e-3 * s[0])
    assert rank == 5 and np.isclose(nuc, expected.sum(), rtol=1e-4)


def test_svt_gram_matches_full_svd_and_handles_extremes():
    z = _low_rank_plus_noise(1)
    s0 = np.linalg.svd(z, compute_uv=False)[0]
    a, nuc_a, r_a = svt(z, 0.05 * s0, method="gram")
    b, nuc_b, r_b = svt(z, 0.05 * s0, method="svd")
    assert r_a == r_b and np.isclose(nuc_a, nuc_b, rtol=1e-4)
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
    zero, nuc, rank = svt(z, 2 * s0)
    assert rank == 0 and nuc == 0 and not zero.any()
    same, _, _ = svt(z, 0.0)
    assert np.linalg.norm(same - z) <= 1e-4 * np.linalg.norm(z)
    with pytest.raises(ValueError, match="method"):
        svt(z, 1.0, method="qr")


# ---------------------------------------------------------------- restoration


def test_restoration_beats_zero_filling_and_ista_is_monotone(problem):
    x, op, y = problem
    zf = zero_filled(y, op)
    res = lowrank_restore(y, op, lam=5.0, max_iter=300, tol=1e-5)
    assert res.images.shape == x.shape and res.images.dtype == np.complex64
    err_zf, err_lr = _nrmse(zf, x), _nrmse(res.images, x)
    # measured at this size: zero-filled 0.40, low-rank 0.04
    assert err_lr < 0.25 * err_zf, (err_lr, err_zf)
    obj = res.objective
    assert obj.shape == (res.n_iter,) and res.rank.shape == (res.n_iter,)
    assert np.all(np.diff(obj) <= 1e-6 * obj[0]), "ISTA objective must not increase"
    assert res.rank[-1] <= 6, "the restored stack is low rank"


def test_fista_reaches_the_same_objective_in_fewer_iterations(problem):
    _, op, y = problem
    ista = lowrank_restore(y, op, lam=5.0, max_iter=400, tol=None)
    fista = lowrank_restore(y, op, lam=5.0, max_iter=400, tol=None, fista=True)
    best = min(ista.objective.min(), fista.objective.min())
    target = best * (1 + 1e-4)

    def first(obj):
        hit = np.flatnonzero(obj <= target)
        return int(hit[0]) + 1 if hit.size else np.inf

    n_ista, n_fista = first(ista.objective), first(fista.objective)
    assert np.isfinite(n_fista) and n_fista < 0.6 * n_ista, (n_ista, n_fista)
    assert abs(ista.objective.min() - fista.objective.min()) <= 1e-3 * best


def test_convergence_flag_and_callback(problem):
    _, op, y = problem
    seen = []
    res = lowrank_restore(y, op, max_iter=500, tol=1e-3, fista=True,
                          callback=lambda it, frames, obj: seen.append((it, frames.shape, obj)))
    assert res.converged and res.relative_change[-1] < 1e-3 and res.n_iter < 500
    assert len(seen) == res.n_iter and seen[0][1] == op.kspace_shape
    short = lowrank_restore(y, op, max_iter=3, tol=1e-12)
    assert not short.converged and short.n_iter == 3


def test_lam_scale_is_invariant_to_data_intensity(problem):
    _, op, y = problem
    assert np.isclose(data_scale(10.0 * y, op), 10.0 * data_scale(y, op), rtol=1e-5)
    zf = zero_filled(y, op).reshape(-1, FRAMES)
    s1 = np.linalg.svd(zf, compute_uv=False)[0]
    assert np.isclose(data_scale(y, op), s1 / REFERENCE_SCALE, rtol=1e-4)
    a = lowrank_restore(y, op, max_iter=20, tol=None)
    b = lowrank_restore(10.0 * y, op, max_iter=20, tol=None)
    np.testing.assert_allclose(b.images, 10.0 * a.images, rtol=1e-3, atol=1e-4 * np.abs(b.images).max())
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-3)
    # absolute units: scale=1 with lam scaled accordingly gives the same answer
    c = lowrank_restore(y, op, lam=5.0 * a.scale, scale=1.0, max_iter=20, tol=None)
    np.testing.assert_allclose(c.images, a.images, rtol=1e-3, atol=1e-4 * np.abs(a.images).max())


def test_full_sampling_without_regularisation_is_exact(problem):
    x, _, _ = problem
    op = UndersampledFourier(np.ones((FRAMES, SIZE, SIZE), dtype=bool))
    res = lowrank_restore(op.forward(x), op, lam=0.0, max_iter=5, tol=1e-3)
    assert _nrmse(res.images, x) < 1e-4 and res.converged  # float32 Gram round-off


@pytest.mark.parametrize("kwargs, name", [
    ({"lam": -1.0}, "lam"),
    ({"lam": np.nan}, "lam"),
    ({"mu": 0.0}, "mu"),
    ({"mu": 2.5}, "mu"),
    ({"max_iter": 0}, "max_iter"),
    ({"tol": -1e-3}, "tol"),
    ({"scale": -2.0}, "scale"),
    ({"scale": "peak"}, "scale"),
    ({"svt_method": "qr"}, "svt_method"),
])
def test_bad_arguments_name_the_parameter(problem, kwargs, name):
    _, op, y = problem
    with pytest.raises(ValueError, match=name):
        lowrank_restore(y, op, **kwargs)


def test_bad_data_is_rejected(problem):
    _, op, y = problem
    with pytest.raises(ValueError, match="kspace must have shape"):
        lowrank_restore(y[:, :-1], op)
    bad = y.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        lowrank_restore(bad, op)
    with pytest.raises(ValueError, match="op"):
        lowrank_restore(y, "not an operator")


# ---------------------------------------------------------------- the two engines


@pytest.mark.parametrize("pattern", ["lines", "points"])
@pytest.mark.parametrize("fista", [False, True])
def test_factored_engine_runs_the_same_iterates_as_the_dense_one(pattern, fista):
    x = image_stack(brain_phantom(SIZE), paper_sequence(FRAMES))
    op = UndersampledFourier(variable_density_masks((SIZE, SIZE), FRAMES, 0.25, seed=0, pattern=pattern))
    y = op.forward(x)
    # lam = 1 keeps early iterates above half rank: the factored engine's dense high-rank steps run too
    kw = dict(lam=1.0, max_iter=40, tol=None, fista=fista)
    dense = lowrank_restore(y, op, engine="dense", **kw)
    factored = lowrank_restore(y, op, **kw)
    assert factored.rank.max() > FRAMES // 2
    assert _nrmse(factored.images, dense.images) < 1e-4
    np.testing.assert_array_equal(factored.rank, dense.rank)
    np.testing.assert_allclose(factored.objective, dense.objective, rtol=1e-4)
    a, b = factored.extra["factors"]
    assert a.shape == (FRAMES, factored.rank[-1]) and b.shape == (factored.rank[-1], SIZE, SIZE)


def test_continuation_reaches_the_same_solution_faster(problem):
    x, op, y = problem
    plain = lowrank_restore(y, op, lam=0.5, fista=True, max_iter=1000, tol=1e-6)
    cont = lowrank_restore(y, op, lam=0.5, fista=True, max_iter=1000, tol=1e-6, continuation=0.5)
    assert cont.converged and plain.converged
    assert _nrmse(cont.images, plain.images) < 1e-3
    assert cont.rank[:20].max() < plain.rank[:20].max()  # the early iterates stay low rank


def test_engine_arguments_are_checked(problem):
    _, op, y = problem
    with pytest.raises(ValueError, match="engine"):
        lowrank_restore(y, op, engine="gpu")
    with pytest.raises(ValueError, match="engine='dense'"):
        lowrank_restore(y, op, svt_method="svd")
    with pytest.raises(ValueError, match="continuation"):
        lowrank_restore(y, op, continuation=1.5)
    with pytest.raises(ValueError, match="continuation"):
        lowrank_restore(y, op, continuation=0.5, engine="dense")


def test_sampled_rms_is_the_data_misfit(problem):
    x, op, y = problem
    assert sampled_rms(x, y, op) < 1e-6  # the truth fits its own data
    res = lowrank_restore(y, op, lam=5.0, max_iter=20, tol=None)
    resid = (op.forward(res.images) - y)[op.masks]
    expected = float(np.sqrt(np.mean(np.abs(resid) ** 2)))
    assert np.isclose(sampled_rms(res, y, op), expected, rtol=1e-3)  # from its factors
    assert np.isclose(sampled_rms(res.images, y, op), expected, rtol=1e-3)
