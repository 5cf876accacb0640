"""The one resolvability rule (mrfbook.physics.noise.resolvable) and its use by matching.

The noise level is measured outside the signals' temporal subspace: exact on white noise, robust
to a minority of odd signatures, blind to FFT round-off. The rule leaves out what noise alone could
give, keeps tissue, and is the same whatever the form of the data (image stack or k-space).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mrfbook.physics.dictionary import build_dictionary, paper_grid
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.noise import (
    DEFAULT_MIN_SNR,
    ZERO_TOL,
    add_noise,
    dictionary_subspace,
    noise_level,
    noise_level_from_energy,
    noise_subspace,
    outside_energy,
    resolvable,
    sequence_subspace,
)
from mrfbook.physics.phantom import brain_phantom
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, image_stack, zero_filled
from mrfbook.recon.matching import ParameterMaps, brute_force_match, match_maps, match_signatures

L = 100


@pytest.fixture(scope="module")
def sequence():
    return paper_sequence(L)


@pytest.fixture(scope="module")
def dictionary(sequence):
    return build_dictionary(sequence, *paper_grid(step_ms=40.0, t2_max_ms=800.0))


@pytest.fixture(scope="module")
def basis(dictionary):
    return dictionary_subspace(dictionary)


@pytest.fixture(scope="module")
def phantom_stack(sequence):
    ph = brain_phantom(48)
    return ph, image_stack(ph, sequence)


def test_subspaces(dictionary, sequence, basis):
    assert basis is dictionary_subspace(dictionary)  # cached per dictionary
    assert not basis.flags.writeable and basis.dtype == np.float64
    k = basis.shape[1]
    assert 1 <= k <= L // 2
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-12)
    unit = np.asarray(dictionary.normalised(), dtype=np.float64)
    assert np.median(np.sqrt(outside_energy(unit, basis))) < 1e-5  # atoms: inside to ~float32 precision
    seq_basis = sequence_subspace(sequence)
    assert seq_basis is sequence_subspace(paper_sequence(L))  # cached per sequence digest
    assert seq_basis.shape[1] <= L // 2
    assert np.median(np.sqrt(outside_energy(unit, seq_basis))) < 1e-5  # holds the dictionary's atoms too
    with pytest.raises(ValueError, match="sequence"):
        sequence_subspace("paper")
    with pytest.raises(ValueError, match="atoms are all zero"):
        noise_subspace(np.zeros((3, L)))


@pytest.mark.parametrize("complex_data", [False, True])
def test_noise_level_of_white_noise(basis, complex_data):
    """Exact on white Gaussian noise (variance per sample, complex: per complex sample)."""
    rng = np.random.default_rng(0)
    sigma = 0.3
    if complex_data:
        x = sigma / np.sqrt(2) * (rng.standard_normal((4000, L)) + 1j * rng.standard_normal((4000, L)))
    else:
        x = sigma * rng.standard_normal((4000, L))
    assert noise_level(x, basis) == pytest.approx(sigma, rel=0.01)


def test_noise_level_ignores_the_signal_and_a_minority_of_outliers(dictionary, basis):
    rng = np.random.default_rng(1)
    atoms = np.asarray(dictionary.atoms[rng.choice(dictionary.n_atoms, 3000)], dtype=np.float64)
    sigma = 0.01
    noisy = 5.0 * atoms + sigma * rng.standard_normal(atoms.shape)
    assert noise_level(noisy, basis) == pytest.approx(sigma, rel=0.03)  # the signal does not count
    noisy[:600] += 0.5 * rng.standard_normal((600, L))  # 20 % odd signatures (artefacts)
    assert noise_level(noisy, basis) == pytest.approx(sigma, rel=0.25)
    # pooling energies measured in pieces gives the same number
    energy = outside_energy(noisy, basis)
    assert noise_level_from_energy(energy, L, basis.shape[1], complex_data=False) == noise_level(noisy, basis)


def test_the_rule(dictionary, basis):
    rng = np.random.default_rng(2)
    sigma = 0.05
    atoms = np.asarray(dictionary.atoms[rng.choice(dictionary.n_atoms, 400)], dtype=np.float64)
    scale = np.geomspace(1e-3, 3.0, 400)[:, None]  # from far below the noise to far above
    x = scale * atoms + sigma * rng.standard_normal(atoms.shape)
    x = np.vstack([x, sigma * rng.standard_normal((200, L)), np.zeros((3, L))])  # + pure noise, zeros
    rule = resolvable(x, basis)
    assert rule.min_snr == DEFAULT_MIN_SNR == 3.0
    assert rule.noise_level == pytest.approx(sigma, rel=0.1)
    assert rule.floor == pytest.approx(3.0 * rule.noise_level * np.sqrt(L))
    np.testing.assert_array_equal(rule.mask, (rule.norms > rule.floor) & (rule.norms > 0))
    assert not rule.mask[400:].any()  # pure noise and zeros: never
    clean = scale[:, 0] * np.linalg.norm(atoms, axis=1)
    assert rule.mask[:400][clean > 1.5 * rule.floor].all()  # clearly above the floor: yes
    assert not rule.mask[:400][clean < 0.5 * rule.floor].any()  # clearly below: no
    assert 50 < rule.mask[:400].sum() < 350
    assert rule.n_resolvable + rule.n_not_resolvable == x.shape[0]
    assert "resolvable: norm >" in rule.rule and f"sqrt({L})" in rule.rule
    summary = rule.summary()
    assert summary["min_snr"] == 3.0 and summary["noise_level_measured_on"] == 603 - 3
    # the external error level counts when larger; a given noise level replaces the measurement
    strict = resolvable(x, basis, error_level=10 * sigma)
    assert strict.level == 10 * sigma and strict.n_resolvable < rule.n_resolvable
    assert resolvable(x, basis, error_level=sigma / 10).floor == rule.floor
    given = resolvable(x, None, noise_level=sigma)
    assert given.noise_level == sigma and given.noise_given and given.subspace_rank is None
    # min_snr = 0: only the round-off guard (norm > 0 and > 1e-6 x the largest)
    loose = resolvable(x, basis, min_snr=0)
    assert loose.floor == 0 and loose.mask[:600].all() and not loose.mask[600:].any()
    tiny = np.vstack([x[:1], x[:1] * 0.5 * ZERO_TOL, x[:1] * 2 * ZERO_TOL])
    np.testing.assert_array_equal(resolvable(tiny, basis, min_snr=0).mask, [True, False, True])


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf, "three", None, True])
def test_bad_min_snr(basis, bad):
    x = np.ones((4, L))
    with pytest.raises(ValueError, match="min_snr must be a finite number >= 0"):
        resolvable(x, basis, min_snr=bad)


def test_bad_input(basis, dictionary):
    x = np.ones((4, L))
    for name in ("error_level", "noise_level"):
        for bad in (-0.1, np.nan, "x"):
            with pytest.raises(ValueError, match=name):
                resolvable(x, basis, **{name: bad})
    with pytest.raises(ValueError, match="basis"):
        resolvable(x, np.eye(L))  # no dimension left to measure the noise
    with pytest.raises(ValueError, match="basis"):
        resolvable(x, basis[:50])
    with pytest.raises(ValueError, match="signatures"):
        resolvable(x[0], basis)
    with pytest.raises(ValueError, match="min_snr"):
        match_signatures(x, dictionary, min_snr=-2)
    with pytest.raises(ValueError, match="error_level"):
        match_maps(x.reshape(2, 2, L), dictionary, error_level=-1)


def test_matching_applies_the_rule(dictionary, basis, phantom_stack):
    ph, stack = phantom_stack
    noisy = add_noise(stack, 20.0, seed=4)  # noise on the tissue only
    rng = np.random.default_rng(4)
    noisy[~ph.tissue_mask] += (0.02 * rng.standard_normal((int((~ph.tissue_mask).sum()), L))).astype(np.complex64)
    flat = noisy.reshape(-1, L)
    rule = resolvable(flat, basis)
    fast = match_signatures(flat, dictionary)
    slow = brute_force_match(flat, dictionary)
    for res in (fast, slow):
        np.testing.assert_array_equal(res.resolvable, rule.mask)
        np.testing.assert_array_equal(res.valid, rule.mask)
        assert res.resolvability.floor == rule.floor
        out = ~rule.mask
        assert np.all(res.index[out] == -1)
        for a in (res.t1_ms, res.t2_ms, res.pd, res.correlation):
            assert np.all(a[out] == 0)
    empty = np.abs(stack).sum(-1) == 0
    assert not rule.mask.reshape(48, 48)[empty].any()  # background noise: not tissue
    maps = match_maps(noisy, dictionary)
    t1, t2, pd, valid = maps  # unpacks as four maps, as before
    np.testing.assert_array_equal(maps.resolvable.ravel(), rule.mask)
    assert isinstance(maps, ParameterMaps) and len(maps) == 4
    again = pickle.loads(pickle.dumps(maps))
    np.testing.assert_array_equal(again.resolvable, maps.resolvable)
    assert again.resolvability.floor == rule.floor
    masked = match_maps(noisy, dictionary, mask=ph.tissue_mask, min_snr=0)
    np.testing.assert_array_equal(masked.resolvable, ph.tissue_mask)


def test_round_off_of_the_fft_is_not_tissue(dictionary, basis, phantom_stack):
    """Full k-space -> inverse FFT: float32 round-off in the background is not mapped, tissue is."""
    ph, stack = phantom_stack
    op = UndersampledFourier(np.ones((L, 48, 48), bool))
    from_kspace = np.asarray(zero_filled(op.forward(stack), op))
    empty = np.abs(stack).sum(-1) == 0  # background of the image stack
    assert empty.sum() > 1000 and np.abs(from_kspace[empty]).max() > 0  # the round-off is there
    a = match_maps(stack, dictionary)
    b = match_maps(from_kspace, dictionary)
    assert not a.resolvable[empty].any() and a.resolvable[ph.tissue_mask].all()
    # the partial-volume tails of the phantom below ~1e-5 of its strongest signal fall under the floor
    norms = np.linalg.norm(stack, axis=-1)
    np.testing.assert_array_equal(a.resolvable, norms > a.resolvability.floor)
    assert a.resolvability.floor < 1e-5 * norms.max()
    np.testing.assert_array_equal(b.resolvable, a.resolvable)
    # the same atoms, except where two atoms tie to float32 round-off (partial volume between grid points)
    ra = match_signatures(stack.reshape(-1, L), dictionary)
    rb = match_signatures(from_kspace.reshape(-1, L), dictionary)
    differ = ra.index != rb.index
    assert differ.mean() < 0.01
    x = stack.reshape(-1, L)[differ].astype(np.complex128)
    relative = np.linalg.norm(from_kspace.reshape(-1, L)[differ] - x, axis=1) / np.linalg.norm(x, axis=1)
    atoms = np.asarray(dictionary.normalised(), dtype=np.float64)[rb.index[differ]]
    other = np.abs(np.einsum("nl,nl->n", atoms, x)) / np.linalg.norm(x, axis=1)
    assert np.all(other >= ra.correlation[differ] - 2 * relative - 1e-7)  # a tie within the round-off
    same = ~differ.reshape(48, 48)
    np.testing.assert_allclose(b.pd[same], a.pd[same], rtol=1e-5, atol=1e-6 * a.pd.max())  # float32 round-off


def test_faint_partial_volume_is_resolved_without_noise_and_left_out_with_it(dictionary, basis, sequence):
    """Sums of fingerprints with little PD: resolvable when clean, not once their signal is below the noise."""
    rng = np.random.default_rng(5)
    t1 = rng.uniform(300, 2000, 600)
    t2 = rng.uniform(20, 150, 600)
    atoms = simulate_fisp(sequence, t1, t2, dtype=np.float64)
    pd = np.where(np.arange(600) < 500, 1.0, 1e-3)  # 100 faint partial-volume pixels
    x = pd[:, None] * (0.6 * atoms + 0.4 * atoms[::-1])  # sums of two fingerprints
    clean = resolvable(x, basis)
    assert clean.mask.all()
    sigma = 0.01
    noisy = x + sigma * rng.standard_normal(x.shape)
    rule = resolvable(noisy, basis)
    assert rule.mask[:500].all() and not rule.mask[500:].any()


def test_round_off_above_the_guard_is_left_out_too(dictionary, phantom_stack):
    """Numerical noise at 1.2e-6 of the largest norm (as measured on a user's k-space) passes the old
    relative guard but not the rule: image stack and k-space then give the same resolvable pixels."""
    ph, stack = phantom_stack
    norms = np.linalg.norm(stack, axis=-1)
    empty = norms == 0
    rng = np.random.default_rng(6)
    level = 1.2e-6 * norms.max() / np.sqrt(L)  # per sample: a signature norm of 1.2e-6 x the largest
    noisy = stack + (level / np.sqrt(2) * (rng.standard_normal(stack.shape)
                                           + 1j * rng.standard_normal(stack.shape))).astype(np.complex64)
    guard_only = match_maps(noisy, dictionary, min_snr=0)
    assert guard_only.resolvable[empty].mean() > 0.5  # the old rule maps most of the background
    rule = match_maps(noisy, dictionary)
    clean = match_maps(stack, dictionary)
    assert not rule.resolvable[empty].any()
    np.testing.assert_array_equal(rule.resolvable[ph.tissue_mask], clean.resolvable[ph.tissue_mask])


def test_image_noise_sigma_matches_its_definition_and_kspace_keeps_it():
    from mrfbook.physics.noise import add_white_noise, image_noise_sigma
    from mrfbook.recon.acquisition import UndersampledFourier

    rng = np.random.default_rng(3)
    images = np.zeros((32, 32, 40), np.complex64)
    images[8:24, 8:24] = rng.standard_normal((16, 16, 40)) + 1j * rng.standard_normal((16, 16, 40))
    tissue = np.zeros((32, 32), bool)
    tissue[8:24, 8:24] = True
    sigma = image_noise_sigma(images, 20.0, tissue)
    power = np.mean(np.abs(images[tissue]) ** 2)
    assert np.isclose(10 * np.log10(power / sigma**2), 20.0)
    # the same sigma in k-space (unitary FFT) gives image noise of that sigma
    op = UndersampledFourier(np.ones((40, 32, 32), bool))
    noisy = op.adjoint(add_white_noise(op.forward(images), sigma, seed=1))
    measured = np.sqrt(np.mean(np.abs(noisy - images) ** 2))
    assert abs(measured / sigma - 1) < 0.02
    with pytest.raises(ValueError, match="sigma"):
        add_white_noise(images, -1.0)
    with pytest.raises(ValueError, match="snr_db"):
        image_noise_sigma(images, float("nan"))
    with pytest.raises(ValueError, match="mask"):
        image_noise_sigma(images, 10.0, np.ones((3, 3), bool))
