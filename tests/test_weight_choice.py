"""Tests for mrfbook.recon.weights: the restoration weight chosen by k-space hold-out, and warm starts."""

from __future__ import annotations

import numpy as np
import pytest

from mrfbook.physics.compression import svd_basis
from mrfbook.physics.dictionary import build_dictionary, paper_grid
from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, variable_density_masks
from mrfbook.recon.lowrank import data_scale, lowrank_restore
from mrfbook.recon.solvers import LowRankProx, SampleMisfit, proximal_gradient, sampled_rms
from mrfbook.recon.weights import DEFAULT_CANDIDATES, WeightChoice, choose_weight, holdout_split, restore

SIZE, FRAMES, RATIO, NOISE = 32, 60, 0.25, 0.05


def _noisy(y, op, level, seed=3):
    rng = np.random.default_rng(seed)
    sigma = level * np.sqrt(np.mean(np.abs(y[op.masks]) ** 2))
    noise = (sigma / np.sqrt(2)) * (rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape))
    return (y + op.masks * noise).astype(np.complex64)


@pytest.fixture(scope="module")
def problem():
    """A nearly low-rank stack (brain phantom, a few tissues), 25 % line masks, 5 % noise."""
    x = image_stack(brain_phantom(SIZE), paper_sequence(FRAMES))
    op = UndersampledFourier(variable_density_masks((SIZE, SIZE), FRAMES, RATIO, seed=0))
    return x, op, _noisy(op.forward(x), op, NOISE)


@pytest.fixture(scope="module")
def clean(problem):
    """The same acquisition without noise."""
    x, op, _ = problem
    return x, op, op.forward(x)


@pytest.fixture(scope="module")
def auto(problem):
    _, op, y = problem
    return restore(y, op)


def _nrmse(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------- warm starts


def test_warm_start_from_the_solution_converges_at_once(clean):
    _, op, y = clean
    solved = lowrank_restore(y, op, lam=2.0, fista=True, max_iter=500, tol=1e-6)
    assert solved.converged
    for x0 in (solved, solved.images):  # its factors, or the stack (factored from scratch)
        again = lowrank_restore(y, op, lam=2.0, fista=True, max_iter=50, tol=1e-4, x0=x0)
        assert again.converged and again.n_iter <= 2, again.relative_change
        assert np.isfinite(again.relative_change[0])  # measured against x0, not inf
        assert _nrmse(again.images, solved.images) < 1e-4
    dense = lowrank_restore(y, op, lam=2.0, fista=True, max_iter=50, tol=1e-4, x0=solved.images, engine="dense")
    assert dense.converged and dense.n_iter <= 2


def test_warm_start_is_validated(problem):
    _, op, y = problem
    with pytest.raises(ValueError, match="x0"):
        lowrank_restore(y, op, x0=np.zeros((SIZE, SIZE, FRAMES + 1), np.complex64))
    bad = np.zeros(op.image_shape, np.complex64)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x0"):
        lowrank_restore(y, op, x0=bad)
    with pytest.raises(ValueError, match="x0"):
        lowrank_restore(y, op, x0="previous")


def test_als_blocks_reach_the_fista_solution_in_far_fewer_iterations(clean):
    _, op, y = clean
    s = data_scale(y, op)
    slow = proximal_gradient(y, op, LowRankProx(), lam=0.5, fista=True, max_iter=2000, tol=1e-7, scale=s)
    fast = proximal_gradient(y, op, LowRankProx(), lam=0.5, fista=True, max_iter=300, tol=1e-4, scale=s,
                             continuation=0.5, patience=3, als=True)
    assert fast.converged and fast.extra["als_sweeps"], fast.extra
    assert fast.n_iter < 0.25 * slow.n_iter, (fast.n_iter, slow.n_iter)
    assert _nrmse(fast.images, slow.images) < 2e-3
    assert abs(fast.objective[-1] - slow.objective[-1]) <= 1e-4 * slow.objective[-1]


# ---------------------------------------------------------------- the hold-out split


@pytest.mark.parametrize("pattern", ["lines", "points"])
def test_holdout_split_rule(pattern):
    op = UndersampledFourier(variable_density_masks((SIZE, SIZE), FRAMES, RATIO, seed=0, pattern=pattern))
    kept, held = holdout_split(op, 0.1, seed=5)
    assert not (kept.masks & held.masks).any()
    assert np.array_equal(kept.masks | held.masks, op.masks)
    assert not held.masks[:, SIZE // 2, SIZE // 2].any(), "the k-space centre is never held out"
    if pattern == "lines":
        assert held.line_masks and kept.line_masks
        units, held_units = op.masks[:, :, 0], held.masks[:, :, 0]
    else:
        units, held_units = op.masks.reshape(FRAMES, -1), held.masks.reshape(FRAMES, -1)
    assert abs(held_units.sum() - 0.1 * units.sum()) <= 1
    per_frame = held_units.sum(axis=1) / units.sum(axis=1)
    assert np.all(np.abs(per_frame - 0.1) <= 1.0 / units.sum(axis=1) + 1e-9)  # every frame gives up its share
    again, _ = holdout_split(op, 0.1, seed=5)
    other, _ = holdout_split(op, 0.1, seed=6)
    assert np.array_equal(again.masks, kept.masks) and not np.array_equal(other.masks, kept.masks)


# ---------------------------------------------------------------- the choice


def test_choice_is_at_the_holdout_optimum_of_an_interior_minimum(problem, auto):
    _, op, y = problem
    choice = auto.extra["weight_choice"]
    err, lams = choice.holdout_error, choice.candidates
    best = int(np.argmin(err))
    assert lams.min() < lams[best] < lams.max(), "the hold-out error has an interior minimum"
    # the hold-out optimum of independent, cold-started restorations on the same split
    kept, held = holdout_split(op, 0.1, seed=0)
    s = data_scale(y, op)
    misfit = SampleMisfit(y, held)
    grid = np.asarray(sorted(DEFAULT_CANDIDATES, reverse=True))
    near = grid[np.abs(np.log(grid / choice.lam)) < 2.5 * np.log(grid[0] / grid[1])]
    cold = [misfit(lowrank_restore(y * kept.masks, kept, lam=lam, scale=s, fista=True, max_iter=500, tol=1e-5,
                                   continuation=0.5)) for lam in near]
    optimum = near[int(np.argmin(cold))]
    step = np.log(grid[0] / grid[1])
    assert abs(np.log(choice.lam / optimum)) <= step * 1.01, (choice.lam, optimum, near, cold)


def test_restore_auto_records_the_choice(problem, auto):
    x, op, y = problem
    choice = auto.extra["weight_choice"]
    assert isinstance(choice, WeightChoice) and choice.method == "k-space hold-out"
    k = choice.candidates.size
    assert choice.holdout_error.shape == choice.iterations.shape == choice.holdout_se.shape == (k,)
    assert choice.lam in choice.candidates and auto.lam == choice.lam
    assert choice.candidates[0] == max(DEFAULT_CANDIDATES), "the search starts from the largest weight"
    assert choice.holdout_fraction == 0.1 and choice.seed == 0 and choice.seconds > 0
    assert choice.n_holdout == int(holdout_split(op, 0.1, 0)[1].masks.sum())
    assert auto.n_iter >= 1 and auto.converged and auto.elapsed_s >= choice.seconds
    assert auto.extra["error_level"] == choice.error_level > 0
    assert auto.images.shape == x.shape and auto.images.dtype == np.complex64
    assert _nrmse(auto.images, x) < 0.1


def test_error_level_is_of_the_order_of_the_true_error(problem, auto):
    x, _, _ = problem
    true_rms = float(np.sqrt(np.mean(np.abs(auto.images - x) ** 2)))  # per complex sample = per pixel and frame
    level = auto.extra["error_level"]
    assert true_rms / 3 < level < 3 * true_rms, (level, true_rms)


def test_the_seed_makes_it_deterministic(problem, auto):
    _, op, y = problem
    again = restore(y, op)
    assert again.lam == auto.lam
    np.testing.assert_array_equal(again.extra["weight_choice"].holdout_error, auto.extra["weight_choice"].holdout_error)
    np.testing.assert_array_equal(again.images, auto.images)
    other, _ = choose_weight(y, op, seed=1, candidates=[8.0, 4.0, 2.0])
    assert other.seed == 1 and other.candidates.tolist()[:1] == [8.0]


def test_fixed_weight_and_the_error_estimate(problem):
    _, op, y = problem
    plain = restore(y, op, lam=4.0)
    assert plain.lam == 4.0 and plain.converged and plain.extra["weight_choice"] is None
    assert plain.extra["error_level"] is None
    checked = restore(y, op, lam=4.0, estimate_error=True)
    np.testing.assert_array_equal(checked.images, plain.images)
    assert checked.extra["error_level"] > 0
    kept, held = holdout_split(op, 0.1, 0)
    assert checked.extra["error_level"] >= 0.5 * sampled_rms(plain, y, held)


def test_flor_weight_search(problem):
    x, op, y = problem
    t1, t2 = paper_grid(step_ms=40.0)
    dictionary = build_dictionary(paper_sequence(FRAMES), t1, t2)
    res = restore(y, op, method="flor", dictionary=dictionary)
    choice = res.extra["weight_choice"]
    assert choice.restoration == "flor" and res.method == "flor-fista" and res.lam == choice.lam
    basis = res.extra["basis"]
    sig = res.images.reshape(-1, FRAMES)
    assert np.linalg.norm(sig - (sig @ basis) @ basis.T) <= 1e-5 * np.linalg.norm(sig)
    assert _nrmse(res.images, x) < 0.15
    fixed = restore(y, op, method="flor", dictionary=svd_basis(dictionary.normalised(), rank=6), lam=5.0)
    assert fixed.extra["basis"].shape == (FRAMES, 6) and fixed.converged


@pytest.mark.parametrize("kwargs, name", [
    ({"lam": "best"}, "lam"),
    ({"lam": -1.0}, "lam"),
    ({"lam": np.nan}, "lam"),
    ({"holdout_fraction": 0.0}, "holdout_fraction"),
    ({"holdout_fraction": 0.6}, "holdout_fraction"),
    ({"holdout_fraction": "some"}, "holdout_fraction"),
    ({"method": "svd"}, "method"),
    ({"method": "flor"}, "dictionary"),
    ({"seed": -1}, "seed"),
    ({"max_iter": 0}, "max_iter"),
    ({"tol": 0.0}, "tol"),
])
def test_bad_arguments_name_the_parameter(problem, kwargs, name):
    _, op, y = problem
    with pytest.raises(ValueError, match=name):
        restore(y, op, **kwargs)


def test_bad_data_and_candidates(problem):
    _, op, y = problem
    with pytest.raises(ValueError, match="kspace must have shape"):
        restore(y[:, :-1], op)
    with pytest.raises(ValueError, match="op"):
        restore(y, "not an operator")
    for bad in ([], [-1.0, 2.0], [np.inf]):
        with pytest.raises(ValueError, match="candidates"):
            choose_weight(y, op, candidates=bad)
