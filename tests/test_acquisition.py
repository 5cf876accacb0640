"""Tests for mrfbook.recon.acquisition: image stacks, variable-density masks, F_u and its adjoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.noise import add_noise
from mrfbook.physics.phantom import Compartments, TissueMaps
from mrfbook.physics.sequence import paper_sequence
from mrfbook.recon.acquisition import UndersampledFourier, density_pdf, image_stack, variable_density_masks, zero_filled


def _random_stack(shape, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _toy_maps(size=16):
    """Two tissue discs (+ a pixel with a unique value) on an empty background."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    mask = r < size * 0.4
    inner = r < size * 0.2
    t1 = np.where(inner, 1500.0, 800.0) * mask
    t2 = np.where(inner, 90.0, 70.0) * mask
    pd = np.where(inner, 0.8, 0.6) * mask
    t1[size // 2, size // 2] = 2000.0
    return TissueMaps(t1_ms=t1, t2_ms=t2, pd=pd, tissue_mask=mask)


# ---------------------------------------------------------------- image stack


def test_image_stack_is_pd_times_signature_and_zero_outside():
    seq = paper_sequence(24)
    maps = _toy_maps()
    x = image_stack(maps, seq)
    assert x.shape == (16, 16, 24) and x.dtype == np.complex64
    assert np.all(x[~maps.tissue_mask] == 0)
    assert np.all(x.imag == 0)
    for (i, j) in [(8, 8), (8, 5), (8, 2), (3, 8)]:
        ref = maps.pd[i, j] * simulate_fisp(seq, [maps.t1_ms[i, j]], [maps.t2_ms[i, j]])[0]
        np.testing.assert_allclose(x[i, j].real, ref, rtol=1e-5, atol=1e-7)


def test_image_stack_b1_changes_signal_and_is_validated():
    seq = paper_sequence(16)
    maps = _toy_maps()
    b1 = np.ones(maps.t1_ms.shape)
    b1[8, 5] = 0.8
    x0 = image_stack(maps, seq)
    x1 = image_stack(maps, seq, b1=b1)
    assert not np.allclose(x0[8, 5], x1[8, 5])
    np.testing.assert_allclose(x0[8, 2], x1[8, 2])
    with pytest.raises(ValueError, match="b1"):
        image_stack(maps, seq, b1=np.ones((3, 3)))
    b1[8, 5] = 0.0
    with pytest.raises(ValueError, match="b1"):
        image_stack(maps, seq, b1=b1)


def test_image_stack_rejects_bad_maps():
    seq = paper_sequence(8)
    maps = _toy_maps()
    bad = TissueMaps(t1_ms=maps.t1_ms, t2_ms=maps.t2_ms[:-1], pd=maps.pd, tissue_mask=maps.tissue_mask)
    with pytest.raises(ValueError, match="t2_ms"):
        image_stack(bad, seq)
    t1 = maps.t1_ms.copy()
    t1[8, 8] = np.nan
    with pytest.raises(ValueError, match="t1_ms"):
        image_stack(TissueMaps(t1_ms=t1, t2_ms=maps.t2_ms, pd=maps.pd, tissue_mask=maps.tissue_mask), seq)
    pd = maps.pd.copy()
    pd[8, 8] = -1
    with pytest.raises(ValueError, match="pd"):
        image_stack(TissueMaps(t1_ms=maps.t1_ms, t2_ms=maps.t2_ms, pd=pd, tissue_mask=maps.tissue_mask), seq)


def _mixed_maps(size=8):
    """Two compartments: brain-like tissue everywhere in a disc, a short-T2 (0.3 ms, off the grid) rim."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    tissue = np.clip(size * 0.35 - r, 0.0, 1.0)
    rim = np.clip(1.0 - np.abs(r - size * 0.4), 0.0, 1.0) * 0.5
    weight = np.stack([tissue * 0.8, rim * 0.15])
    t1 = np.stack([np.where(tissue > 0, 1200.0 + 10 * xx, 0.0), np.where(rim > 0, 250.0, 0.0)])
    t2 = np.stack([np.where(tissue > 0, 80.0 + yy, 0.0), np.where(rim > 0, 0.3, 0.0)])
    comp = Compartments(("tissue", "short T2"), weight, t1, t2)
    ref_t1, ref_t2, pd = comp.reference_maps()
    mask = weight.sum(axis=0) >= 0.4  # some weighted pixels lie outside the mask
    ref_t1, ref_t2, pd = (np.where(mask, a, 0.0) for a in (ref_t1, ref_t2, pd))
    return TissueMaps(ref_t1, ref_t2, pd, mask, compartments=comp)


@pytest.mark.parametrize("with_b1", [False, True])
def test_image_stack_with_compartments_is_the_weighted_sum_of_fingerprints(with_b1):
    seq = paper_sequence(30)
    maps = _mixed_maps()
    c = maps.compartments
    b1 = 0.8 + 0.05 * np.arange(64).reshape(8, 8) / 64 if with_b1 else None
    x = image_stack(maps, seq, b1=b1)
    assert x.shape == (8, 8, 30) and x.dtype == np.complex64 and np.all(x.imag == 0)
    want = np.zeros((8, 8, 30))
    for k in range(2):
        for i, j in np.argwhere(c.weight[k] > 0):
            sig = simulate_fisp(seq, [c.t1_ms[k, i, j]], [c.t2_ms[k, i, j]], None if b1 is None else [b1[i, j]])[0]
            want[i, j] += c.weight[k, i, j] * sig
    np.testing.assert_allclose(x.real, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    mixed = (c.weight > 0).all(axis=0)
    assert mixed.any() and np.all(x[mixed] != 0)
    outside = ~maps.tissue_mask & (c.weight.sum(axis=0) > 0)
    assert outside.any() and np.all(np.abs(x[outside]).sum(axis=1) > 0)  # the object does not end at the mask
    assert np.all(x[c.weight.sum(axis=0) == 0] == 0)
    # a mixed pixel is not the fingerprint of its reference (rate-mixed) values
    i, j = np.argwhere(mixed & maps.tissue_mask)[0]
    single = maps.pd[i, j] * simulate_fisp(seq, [maps.t1_ms[i, j]], [maps.t2_ms[i, j]],
                                           None if b1 is None else [b1[i, j]])[0]
    assert np.linalg.norm(x[i, j].real - single) > 0.1 * np.linalg.norm(single)


def test_image_stack_without_compartments_ignores_the_attribute():
    seq = paper_sequence(12)
    maps = _toy_maps()
    plain = SimpleNamespace(t1_ms=maps.t1_ms, t2_ms=maps.t2_ms, pd=maps.pd, tissue_mask=maps.tissue_mask)
    np.testing.assert_array_equal(image_stack(plain, seq), image_stack(maps, seq))


def test_image_stack_validates_compartments():
    seq = paper_sequence(8)
    maps = _mixed_maps()
    c = maps.compartments

    def with_comp(**kw):
        fields = {"weight": c.weight, "t1_ms": c.t1_ms, "t2_ms": c.t2_ms} | kw
        return TissueMaps(maps.t1_ms, maps.t2_ms, maps.pd, maps.tissue_mask, compartments=SimpleNamespace(**fields))

    image_stack(with_comp(), seq)  # T2 = 0.3 ms, off the dictionary grid, is accepted
    w = c.weight.copy()
    w[0, 4, 4] = -0.1
    with pytest.raises(ValueError, match="compartments.weight must be finite and >= 0"):
        image_stack(with_comp(weight=w), seq)
    t2 = c.t2_ms.copy()
    t2[0, 4, 4] = 0.0
    with pytest.raises(ValueError, match="compartments.t2_ms must be finite and > 0 ms wherever the weight is > 0"):
        image_stack(with_comp(t2_ms=t2), seq)
    t1 = c.t1_ms.copy()
    t1[0, 4, 4] = np.nan
    with pytest.raises(ValueError, match="compartments.t1_ms"):
        image_stack(with_comp(t1_ms=t1), seq)
    with pytest.raises(ValueError, match=r"compartments.t1_ms must be a \(K, H, W\) array"):
        image_stack(with_comp(t1_ms=c.t1_ms[:, :4]), seq)
    with pytest.raises(ValueError, match="compartments.t2_ms must have the weight's shape"):
        image_stack(with_comp(t2_ms=c.t2_ms[:1]), seq)
    with pytest.raises(ValueError, match="maps.compartments must have weight, t1_ms and t2_ms"):
        image_stack(TissueMaps(maps.t1_ms, maps.t2_ms, maps.pd, maps.tissue_mask, compartments=object()), seq)
    b1 = np.ones((8, 8))
    b1[~maps.tissue_mask & (c.weight.sum(axis=0) > 0)] = 0.0
    with pytest.raises(ValueError, match="b1 must be finite and > 0 inside the tissue mask and wherever a compartment"):
        image_stack(maps, seq, b1=b1)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("pattern", ["lines", "points"])
@pytest.mark.parametrize("ratio", [0.05, 0.15, 0.5])
def test_mask_fraction_centre_and_variation(pattern, ratio):
    masks = variable_density_masks((64, 48), 40, ratio, pattern=pattern, seed=3)
    assert masks.shape == (40, 64, 48) and masks.dtype == bool
    assert abs(masks.mean() - ratio) <= 0.01
    # each frame within one line / one point of the target
    per_frame = masks.reshape(40, -1).mean(axis=1)
    unit = 1 / 64 if pattern == "lines" else 1 / (64 * 48)
    assert np.all(np.abs(per_frame - ratio) <= unit + 1e-12)
    assert masks[:, 32, 24].all(), "k-space centre must always be sampled"
    assert len({m.tobytes() for m in masks}) > 30, "masks must differ between frames"
    if pattern == "lines":
        assert np.all(masks == masks[:, :, :1]), "lines are fully sampled along the readout"


def test_masks_are_deterministic_per_seed():
    a = variable_density_masks((32, 32), 10, 0.2, seed=7)
    b = variable_density_masks((32, 32), 10, 0.2, seed=7)
    c = variable_density_masks((32, 32), 10, 0.2, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mask_density_follows_the_polynomial_pdf():
    pdf = density_pdf((64, 64), 0.2, power=9)
    assert pdf.shape == (64,)
    assert pdf[32] == 1.0 and abs(pdf.sum() - 0.2 * 64) < 1e-6
    assert np.all(np.diff(pdf[32:]) <= 1e-12), "density decreases away from the centre"
    masks = variable_density_masks((64, 64), 4000, 0.2, seed=1)
    empirical = masks[:, :, 0].mean(axis=0)
    assert np.abs(empirical - pdf).max() < 0.03
    full = variable_density_masks((16, 16), 3, 1.0)
    assert full.all()


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, np.nan])
def test_bad_sampling_ratio_names_parameter_and_range(ratio):
    with pytest.raises(ValueError, match=r"sampling_ratio.*\(0, 1\]"):
        variable_density_masks((16, 16), 4, ratio)


def test_other_mask_arguments_are_validated():
    with pytest.raises(ValueError, match="n_frames"):
        variable_density_masks((16, 16), 0)
    with pytest.raises(ValueError, match="shape"):
        variable_density_masks((16,), 3)
    with pytest.raises(ValueError, match="power"):
        variable_density_masks((16, 16), 3, power=-1)
    with pytest.raises(ValueError, match="pattern"):
        variable_density_masks((16, 16), 3, pattern="spiral")


# ---------------------------------------------------------------- operator


@pytest.mark.parametrize("pattern", ["lines", "points"])
def test_adjoint_identity(pattern):
    masks = variable_density_masks((32, 24), 12, 0.3, pattern=pattern, seed=2)
    op = UndersampledFourier(masks)
    x = _random_stack((32, 24, 12), 0)
    y = _random_stack((12, 32, 24), 1)
    lhs = np.vdot(op.forward(x).astype(np.complex128), y.astype(np.complex128))
    rhs = np.vdot(x.astype(np.complex128), op.adjoint(y).astype(np.complex128))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    fy = op.forward(x)
    assert fy.shape == (12, 32, 24) and fy.dtype == np.complex64
    assert np.all(fy[~masks] == 0)


@pytest.mark.parametrize("pattern", ["lines", "points"])
def test_packed_fast_paths_match_public_operators(pattern):
    masks = variable_density_masks((32, 24), 6, 0.3, pattern=pattern, seed=4)
    op = UndersampledFourier(masks)
    assert op.line_masks == (pattern == "lines")
    x = _random_stack((32, 24, 6), 5)
    frames = np.ascontiguousarray(np.moveaxis(x, 2, 0))
    normal = op.normal(x)
    np.testing.assert_allclose(np.moveaxis(op.normal_frames(frames), 0, 2), normal, atol=1e-5)
    np.testing.assert_allclose(normal, op.adjoint(op.forward(x)), atol=1e-5)
    # data term in the packed domain has the same norm as in k-space (unitary readout FFT)
    y = op.forward(x)
    assert np.isclose(np.linalg.norm(op.packed_data(y)), np.linalg.norm(y), rtol=1e-5)
    np.testing.assert_allclose(op.packed_forward(frames), op.packed_data(y), atol=1e-5)


def test_orthonormal_fft_preserves_energy_and_full_mask_inverts():
    masks = np.ones((5, 16, 16), dtype=bool)
    op = UndersampledFourier(masks)
    x = _random_stack((16, 16, 5), 3)
    y = op.forward(x)
    assert np.isclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-5)
    np.testing.assert_allclose(zero_filled(y, op), x, atol=1e-5)
    # DC of a constant image sits at the centre index (fftshift convention)
    ones = np.ones((16, 16, 5), dtype=np.complex64)
    k = op.forward(ones)
    assert np.isclose(abs(k[0, 8, 8]), 16.0) and np.isclose(np.abs(k[0]).sum(), 16.0)


def test_zero_filled_equals_truth_at_ratio_one():
    masks = variable_density_masks((16, 16), 4, 1.0)
    op = UndersampledFourier(masks)
    x = _random_stack((16, 16, 4), 9)
    np.testing.assert_allclose(zero_filled(op.forward(x), op), x, atol=1e-5)


def test_operator_rejects_bad_shapes_and_values():
    op = UndersampledFourier(variable_density_masks((16, 16), 4, 0.5))
    with pytest.raises(ValueError, match="x must have shape"):
        op.forward(np.zeros((16, 16, 5), np.complex64))
    with pytest.raises(ValueError, match="y must have shape"):
        op.adjoint(np.zeros((4, 16, 15), np.complex64))
    bad = np.zeros((16, 16, 4), np.complex64)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        op.forward(bad)
    with pytest.raises(ValueError, match="masks"):
        UndersampledFourier(np.ones((16, 16), dtype=bool))
    with pytest.raises(ValueError, match="masks"):
        UndersampledFourier(np.ones((2, 16, 16)))


# ---------------------------------------------------------------- noise


def test_add_noise_reaches_the_stated_snr():
    masks = variable_density_masks((64, 64), 20, 0.25, seed=0)
    op = UndersampledFourier(masks)
    y = op.forward(_random_stack((64, 64, 20), 11))
    noisy = add_noise(y, 20.0, seed=1)
    assert noisy.dtype == np.complex64
    assert np.all(noisy[~masks] == 0), "no noise where nothing was sampled"
    noise = (noisy - y)[masks]
    snr = 10 * np.log10(np.mean(np.abs(y[masks]) ** 2) / np.mean(np.abs(noise) ** 2))
    assert abs(snr - 20.0) < 0.1
    assert abs(np.var(noise.real) - np.var(noise.imag)) < 0.05 * np.var(noise.real)
    np.testing.assert_array_equal(noisy, add_noise(y, 20.0, seed=1))
    with pytest.raises(ValueError, match="snr_db"):
        add_noise(y, np.inf)
    with pytest.raises(ValueError, match="mask"):
        add_noise(y, 10.0, mask=np.ones((3, 3), bool))
    y_bad = y.copy()
    y_bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        add_noise(y_bad, 10.0)
