"""Tests for mrfbook.recon.matching: exactness against brute force, PD, complex data, validation."""

import numpy as np
import pytest

from mrfbook.physics.dictionary import build_dictionary, cached_dictionary, paper_grid
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.matching import DEFAULT_RANK, brute_force_match, match_maps, match_signatures, search_index


@pytest.fixture(scope="module")
def small_dict():
    """Paper sequence on a coarser grid (T1 1:30:3000, T2 1:15:600 ms): fast to build and search."""
    t1, t2 = paper_grid(step_ms=30.0, t1_max_ms=3000.0, t2_max_ms=600.0)
    keep = t2 <= 600.0
    return build_dictionary(paper_sequence(), t1[keep], t2[keep])


def phantom_signatures(dictionary, size, seed=0):
    ph = brain_phantom(size, seed=seed)
    m = ph.tissue_mask.ravel()
    sig = np.zeros((size * size, dictionary.n_timepoints), np.float32)
    t1, t2, pd = ph.t1_ms.ravel()[m], ph.t2_ms.ravel()[m], ph.pd.ravel()[m]
    sig[m] = simulate_fisp(dictionary.sequence, t1, t2) * pd[:, None]
    return ph, sig


def test_atoms_match_themselves_with_pd(small_dict):
    rng = np.random.default_rng(1)
    k = rng.choice(small_dict.n_atoms, 300, replace=False)
    x = 0.7 * small_dict.atoms[k]
    for rank in (DEFAULT_RANK, 4, None):
        res = match_signatures(x, small_dict, rank=rank)
        np.testing.assert_array_equal(res.index, k)
        np.testing.assert_array_equal(res.t1_ms, small_dict.t1_ms[k])
        np.testing.assert_array_equal(res.t2_ms, small_dict.t2_ms[k])
        np.testing.assert_allclose(res.pd, 0.7, rtol=1e-5)
        np.testing.assert_allclose(res.correlation, 1.0, atol=1e-6)
        assert res.valid.all()


def test_complex_random_phase(small_dict):
    rng = np.random.default_rng(2)
    k = rng.choice(small_dict.n_atoms, 200, replace=False)
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi, k.size))[:, None]
    x = (0.7 * small_dict.atoms[k] * phase).astype(np.complex64)
    res = match_signatures(x, small_dict)
    np.testing.assert_array_equal(res.index, k)
    np.testing.assert_allclose(res.pd, 0.7, rtol=1e-5)  # magnitude of the complex scale


@pytest.mark.parametrize("rank", [2, 8, DEFAULT_RANK, None])
def test_same_atom_as_exhaustive_float64_search_on_phantom(small_dict, rank):
    _, sig = phantom_signatures(small_dict, 48)
    ref = brute_force_match(sig, small_dict, dtype=np.float64)
    res = match_signatures(sig, small_dict, rank=rank, chunk_size=500)
    agree = np.mean(res.index == ref.index)
    assert agree >= 0.999, agree
    np.testing.assert_array_equal(res.valid, ref.valid)
    np.testing.assert_allclose(res.pd, ref.pd)


def test_noisy_complex_same_as_exhaustive(small_dict):
    _, sig = phantom_signatures(small_dict, 32)
    sig = sig[np.abs(sig).sum(axis=1) > 0]
    rng = np.random.default_rng(3)
    sigma = 0.1 * np.sqrt(np.mean(sig**2))
    noisy = sig * np.exp(1j * rng.uniform(0, 2 * np.pi, (len(sig), 1)))
    noisy = noisy + sigma * (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    ref = brute_force_match(noisy, small_dict, dtype=np.float64)
    res = match_signatures(noisy, small_dict, rank=8)
    assert np.mean(res.index == ref.index) >= 0.999
    np.testing.assert_array_equal(res.valid, ref.valid)
    # the phantom's faint partial-volume pixels sink below the noise: not resolvable, the rest are
    assert 0.5 < res.valid.mean() < 1.0
    assert np.all(res.correlation[res.valid] < 1.0) and np.all(res.correlation[res.valid] > 0.5)
    assert np.all(res.correlation[~res.valid] == 0)


@pytest.mark.parametrize("rank", [2, DEFAULT_RANK])
def test_pure_noise_still_exact(small_dict, rank):
    """Flat, low correlations with wide compression intervals: many candidates, still exact."""
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((300, small_dict.n_timepoints)) + 1j * rng.standard_normal((300, small_dict.n_timepoints))
    # pure noise cannot be resolved (resolvability rule): min_snr=0 matches it anyway
    assert not match_signatures(noise, small_dict, rank=rank).valid.any()
    ref = brute_force_match(noise, small_dict, dtype=np.float64, min_snr=0)
    res = match_signatures(noise, small_dict, rank=rank, min_snr=0)
    assert res.valid.all()
    np.testing.assert_array_equal(res.index, ref.index)
    np.testing.assert_allclose(res.correlation, ref.correlation)


def test_quantisation_error_within_grid_neighbourhood(small_dict):
    ph, sig = phantom_signatures(small_dict, 32)
    res = match_signatures(sig, small_dict)
    # noise-free continuous tissue inside the grid (the phantom's partial-volume edges have T2 of a
    # few ms, below the grid's second value, 16 ms): matched values lie within a few grid steps (30/15 ms)
    m = ph.tissue_mask.ravel() & (ph.t2_ms.ravel() >= 16.0)
    assert np.median(np.abs(res.t1_ms[m] - ph.t1_ms.ravel()[m])) <= 30
    assert np.median(np.abs(res.t2_ms[m] - ph.t2_ms.ravel()[m])) <= 15
    np.testing.assert_allclose(res.pd[m], ph.pd.ravel()[m], rtol=0.1)


def test_zero_signal_flagged(small_dict):
    x = np.array(small_dict.atoms[[10, 20, 30, 40]], dtype=np.float64)
    x[1] = 0.0
    x[3] *= 1e-9  # far below the largest norm: no signal
    res = match_signatures(x, small_dict)
    np.testing.assert_array_equal(res.valid, [True, False, True, False])
    np.testing.assert_array_equal(res.index[[1, 3]], -1)
    for a in (res.t1_ms, res.t2_ms, res.pd, res.correlation):
        assert np.all(a[[1, 3]] == 0)
    assert res.index[0] == 10 and res.index[2] == 30
    # a block of zeros only
    empty = match_signatures(np.zeros((5, small_dict.n_timepoints)), small_dict)
    assert not empty.valid.any() and np.all(empty.index == -1)


def test_min_correlation(small_dict):
    rng = np.random.default_rng(4)
    x = np.vstack([small_dict.atoms[5], rng.standard_normal(small_dict.n_timepoints)])
    # two signatures only: the noise level cannot be measured on them; the rule is off (min_snr=0)
    res = match_signatures(x, small_dict, min_correlation=0.9, min_snr=0)
    assert res.valid.tolist() == [True, False]
    assert res.index[1] == -1 and res.t1_ms[1] == 0 and 0 < res.correlation[1] < 0.9


def test_chunk_size_does_not_change_result(small_dict):
    _, sig = phantom_signatures(small_dict, 24)
    a = match_signatures(sig, small_dict, chunk_size=7)
    b = match_signatures(sig, small_dict, chunk_size=100_000)
    np.testing.assert_array_equal(a.index, b.index)


def test_search_index_cached(small_dict):
    assert search_index(small_dict, 8) is search_index(small_dict, 8)
    idx = search_index(small_dict, 8)
    assert idx.rank == 8 and idx.atoms.shape == (small_dict.n_atoms, 8)
    assert sorted(idx.order.tolist()) == list(range(small_dict.n_atoms))
    assert idx.fine_start[-1] == small_dict.n_atoms and idx.coarse_start[-1] == idx.fine_radii.size


def test_match_maps(small_dict):
    ph, sig = phantom_signatures(small_dict, 24)
    stack = sig.reshape(24, 24, -1)
    maps = match_maps(stack, small_dict)
    t1, t2, pd, valid = maps
    assert t1.shape == (24, 24) and valid.dtype == bool
    np.testing.assert_array_equal(valid, ph.tissue_mask)
    half = ph.tissue_mask.copy()
    half[:12] = False
    masked = match_maps(stack, small_dict, mask=half)
    np.testing.assert_array_equal(masked.valid, half)
    np.testing.assert_array_equal(masked.t1_ms[half], t1[half])


def test_bad_inputs(small_dict):
    x = small_dict.atoms[:3]
    with pytest.raises(ValueError, match="signatures.*L = 200"):
        match_signatures(x[:, :150], small_dict)
    with pytest.raises(ValueError, match="signatures"):
        match_signatures(x[0], small_dict)
    bad = np.array(x, dtype=np.float64)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        match_signatures(bad, small_dict)
    for rank in (0, 201, 2.5, True):
        with pytest.raises(ValueError, match="rank"):
            match_signatures(x, small_dict, rank=rank)
    with pytest.raises(ValueError, match="chunk_size"):
        match_signatures(x, small_dict, chunk_size=0)
    with pytest.raises(ValueError, match="min_correlation"):
        match_signatures(x, small_dict, min_correlation=1.5)
    with pytest.raises(ValueError, match="dictionary"):
        match_signatures(x, np.zeros((3, 200)))
    with pytest.raises(ValueError, match="stack"):
        match_maps(x, small_dict)
    with pytest.raises(ValueError, match="mask"):
        match_maps(x.reshape(1, 3, 200), small_dict, mask=np.ones((3, 1), bool))


def test_paper_dictionary_agrees_with_exhaustive_search():
    """The real 80,100-atom dictionary on a 48x48 brain phantom (about 800 tissue pixels)."""
    d = cached_dictionary()
    assert d.n_atoms == 80_100
    ph, sig = phantom_signatures(d, 48)
    m = ph.tissue_mask.ravel()
    ref = brute_force_match(sig[m], d, dtype=np.float64)
    res = match_signatures(sig[m], d)
    assert np.mean(res.index == ref.index) >= 0.999
    # quantisation: the grid step is 10 ms
    assert np.median(np.abs(res.t2_ms - ph.t2_ms.ravel()[m])) <= 10
    # the search scores a small part of the dictionary
    assert res.n_scored.mean() < d.n_atoms / 10
