"""EPG checked against independent references: isochromat Bloch simulation and
the analytic FISP steady state."""

import numpy as np
import pytest

from mrfbook.physics.bloch import fisp_steady_state, rotation_matrix, simulate_fisp_isochromats
from mrfbook.physics.epg import simulate_fisp
from mrfbook.physics.sequence import constant_sequence, paper_sequence

SEQ = paper_sequence()


def _tissues(n=24, seed=0):
    """Log-uniform T1 in [50, 5000] ms, T2 in [5, 2000] ms, T1 >= T2, plus the corners."""
    rng = np.random.default_rng(seed)
    t1 = np.exp(rng.uniform(np.log(50), np.log(5000), n))
    t2 = np.exp(rng.uniform(np.log(5), np.log(2000), n))
    t2 = np.minimum(t2, t1)
    t1 = np.concatenate([t1, [50.0, 5000.0, 5000.0, 2000.0]])
    t2 = np.concatenate([t2, [5.0, 5.0, 2000.0, 2000.0]])
    return t1, t2


@pytest.mark.parametrize("b1", [None, "varied"])
def test_epg_matches_bloch(b1):
    t1, t2 = _tissues()
    assert t1.size >= 20 and np.all(t1 >= t2)
    if b1 == "varied":
        b1 = np.linspace(0.6, 1.4, t1.size)
    epg = simulate_fisp(SEQ, t1, t2, b1, dtype=np.float64)
    iso = simulate_fisp_isochromats(SEQ, t1, t2, b1)
    peak = np.abs(iso).max()
    diff = np.abs(epg - iso).max()
    assert diff <= 1e-3 * peak  # the project's tolerance
    assert diff <= 1e-9 * peak  # in fact both are exact: rounding-level agreement


def test_bloch_complex_output_is_real_for_90_degree_phase():
    c = simulate_fisp_isochromats(SEQ, [800.0], [80.0], complex_output=True)
    assert np.abs(c.imag).max() < 1e-12
    np.testing.assert_allclose(c.real, simulate_fisp_isochromats(SEQ, [800.0], [80.0]), atol=1e-15)


def test_too_few_isochromats_alias():
    """With N << 2L the isochromat sum aliases echo pathways: the check has teeth."""
    t1, t2 = np.array([1000.0, 3000.0]), np.array([500.0, 1500.0])
    epg = simulate_fisp(SEQ, t1, t2, dtype=np.float64)
    bad = simulate_fisp_isochromats(SEQ, t1, t2, n_isochromats=8)
    assert np.abs(bad - epg).max() > 1e-2 * np.abs(epg).max()


def test_bloch_hand_worked_90_train():
    c = constant_sequence(4, 90.0, 10.0, 2.0)
    s = simulate_fisp_isochromats(c, [1e12], [1e12])[0]
    np.testing.assert_allclose(s, [1.0, 0.0, 0.0, 0.5], atol=1e-9)


@pytest.mark.parametrize(
    "flip, tr, t1, t2",
    [
        (10.0, 10.0, 800.0, 80.0),
        (30.0, 12.0, 1000.0, 1000.0),
        (60.0, 8.0, 300.0, 20.0),
        (90.0, 15.0, 1500.0, 200.0),
        (30.0, 10.0, 4000.0, 2000.0),
    ],
)
def test_epg_reaches_analytic_steady_state(flip, tr, t1, t2):
    seq = constant_sequence(3000, flip, tr, 2.0)
    s = simulate_fisp(seq, [t1], [t2], dtype=np.float64)[0, -1]
    ss = fisp_steady_state(flip, tr, 2.0, t1, t2)
    assert abs(s - ss) <= 1e-4 * abs(ss)


def test_bloch_reaches_analytic_steady_state():
    seq = constant_sequence(600, 45.0, 10.0, 2.0)
    s = simulate_fisp_isochromats(seq, [500.0], [50.0])[0, -1]
    assert s == pytest.approx(fisp_steady_state(45.0, 10.0, 2.0, 500.0, 50.0), rel=1e-6)


def test_steady_state_flash_limit_and_broadcast():
    a, tr, t1 = np.array([5.0, 20.0, 70.0]), 10.0, 1000.0
    e1 = np.exp(-tr / t1)
    flash = np.sin(np.deg2rad(a)) * (1 - e1) / (1 - e1 * np.cos(np.deg2rad(a)))
    te, t2 = 1e-9, 1e-3  # E2 = exp(-TR/T2) underflows to 0
    np.testing.assert_allclose(fisp_steady_state(a, tr, te, t1, t2), flash * np.exp(-te / t2), rtol=1e-12)
    assert fisp_steady_state(a, tr, 2.0, t1, 100.0).shape == (3,)


def test_rotation_matrix_convention():
    r = rotation_matrix(np.array([np.pi / 2, 0.3]), np.pi / 2)
    np.testing.assert_allclose(r[0] @ [0, 0, 1], [1, 0, 0], atol=1e-15)  # about y: z -> +x
    for m in r:
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-14)
        assert np.linalg.det(m) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, name",
    [
        ((0.0, 10.0, 2.0, 800.0, 80.0), "flip_deg"),
        ((30.0, -1.0, 2.0, 800.0, 80.0), "tr_ms"),
        ((30.0, 10.0, 10.0, 800.0, 80.0), "te_ms"),
        ((30.0, 10.0, 2.0, np.nan, 80.0), "t1_ms"),
        ((30.0, 10.0, 2.0, 800.0, 0.0), "t2_ms"),
    ],
)
def test_steady_state_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        fisp_steady_state(*args)


def test_bloch_bad_input():
    with pytest.raises(ValueError, match="n_isochromats"):
        simulate_fisp_isochromats(SEQ, [800.0], [80.0], n_isochromats=0)
    with pytest.raises(ValueError, match="t2_ms"):
        simulate_fisp_isochromats(SEQ, [800.0], [-80.0])
