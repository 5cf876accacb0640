"""Tests for mrfbook.physics.distinguishability (coherence and Cramer-Rao bounds)."""

import numpy as np
import pytest

from mrfbook.physics.distinguishability import (
    coarse_grid,
    crb_relative_std,
    distinguishability_report,
    mutual_coherence,
    signature_jacobian,
)
from mrfbook.physics.sequence import constant_sequence, make_sequence, paper_sequence


def test_mutual_coherence_basic():
    atoms = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]])
    t1 = np.array([100.0, 110.0, 1000.0, 2000.0])
    t2 = np.array([10.0, 10.0, 100.0, 100.0])
    assert mutual_coherence(atoms, t1, t2) == pytest.approx(1.0)  # rows 0, 1 parallel
    value, i, j = mutual_coherence(atoms, t1, t2, min_log_separation=np.log(1.2), return_pair=True)
    assert value == pytest.approx(0.6) and {i, j} == {2, 3}  # 100 vs 110 ms too close, skipped
    assert np.isnan(mutual_coherence(atoms, t1, t2, min_log_separation=10.0))
    with pytest.raises(ValueError, match="atoms"):
        mutual_coherence(atoms[:3], t1, t2)
    with pytest.raises(ValueError, match="min_log_separation"):
        mutual_coherence(atoms, t1, t2, min_log_separation=-1.0)


def test_jacobian_first_echo_analytic():
    seq = paper_sequence()
    t1, t2 = np.array([800.0, 1500.0]), np.array([60.0, 300.0])
    s, jac = signature_jacobian(seq, t1, t2)
    assert jac.shape == (2, 200, 2)
    # first echo: -sin(a0) exp(-TE/T2): no T1 dependence, d/dT2 = s0 TE / T2^2
    np.testing.assert_allclose(jac[:, 0, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(jac[:, 0, 1], s[:, 0] * 2.0 / t2**2, rtol=1e-6)
    assert np.abs(jac[:, 50:, 0]).max() > 0  # later echoes do depend on T1


def test_crb_scaling_and_degenerate_cases():
    seq = paper_sequence()
    t1, t2 = np.array([830.0, 1558.0]), np.array([75.0, 83.0])
    c1 = crb_relative_std(seq, t1, t2, noise_sigma=0.01)
    c2 = crb_relative_std(seq, t1, t2, noise_sigma=0.02)
    assert np.all(np.isfinite(c1)) and np.all(c1 > 0)
    np.testing.assert_allclose(c2, 2 * c1, rtol=1e-6)
    zero = constant_sequence(50, 0.0, 12.0, 2.0)
    assert np.all(np.isinf(crb_relative_std(zero, t1, t2)))
    with pytest.raises(ValueError, match="noise_sigma"):
        crb_relative_std(seq, t1, t2, noise_sigma=0.0)


def test_varied_schedule_beats_constant_for_t1():
    """Without inversion and with a constant flip angle T1 is poorly encoded."""
    t1, t2 = np.array([830.0, 1558.0]), np.array([75.0, 83.0])
    good = crb_relative_std(paper_sequence(), t1, t2)
    flat = crb_relative_std(make_sequence("constant", max_flip_deg=30.0, inversion=False), t1, t2)
    assert np.all(good[:, 0] < flat[:, 0] / 2)


def test_report_and_grid():
    t1, t2 = coarse_grid()
    assert np.all(t1 >= t2) and t1.size > 100
    r = distinguishability_report(paper_sequence())
    assert 0.99 < r.coherence_separated <= r.coherence <= 1.0
    assert r.crb_t1.shape == r.crb_t2.shape == (len(r.tissue_names),)
