"""Tests for mrfbook.physics.epg: compiled EPG vs NumPy EPG, precision, truncation, limits."""

import numpy as np
import pytest

from mrfbook.physics.epg import exact_n_states, simulate_fisp, simulate_fisp_numpy
from mrfbook.physics.sequence import FispSequence, constant_sequence, paper_sequence

SEQ = paper_sequence()
T1 = np.array([50.0, 300.0, 800.0, 1000.0, 1500.0, 3000.0, 5000.0, 4000.0])
T2 = np.array([5.0, 40.0, 80.0, 60.0, 200.0, 1000.0, 2000.0, 100.0])


def _subgrid():
    t1, t2 = np.meshgrid(np.arange(1.0, 5000.0, 130.0), np.arange(1.0, 2000.0, 50.0), indexing="ij")
    keep = t1 >= t2
    return t1[keep], t2[keep]


def test_numba_matches_numpy():
    b1 = np.linspace(0.7, 1.3, T1.size)
    for b in (None, b1):
        a = simulate_fisp(SEQ, T1, T2, b, dtype=np.float64)
        n = simulate_fisp_numpy(SEQ, T1, T2, b, dtype=np.float64)
        assert np.abs(a - n).max() <= 1e-6 * np.abs(n).max()
    assert not np.allclose(simulate_fisp(SEQ, T1, T2, b1), simulate_fisp(SEQ, T1, T2))


def test_numba_matches_numpy_with_arbitrary_rf_phase():
    seq = FispSequence.from_arrays(SEQ.flip_angles_deg, SEQ.tr_ms, SEQ.te_ms, np.linspace(0, 300, 200))
    a = simulate_fisp(seq, T1, T2, dtype=np.float64)
    n = simulate_fisp_numpy(seq, T1, T2, dtype=np.float64)
    assert np.abs(a - n).max() <= 1e-6 * np.abs(n).max()
    assert np.abs(a - simulate_fisp(SEQ, T1, T2, dtype=np.float64)).max() > 1e-2


def test_global_rf_phase_rotates_signal():
    base = simulate_fisp(SEQ, T1, T2, dtype=np.float64)
    flip = lambda ph: FispSequence.from_arrays(SEQ.flip_angles_deg, SEQ.tr_ms, SEQ.te_ms, ph)  # noqa: E731
    np.testing.assert_allclose(simulate_fisp(flip(270.0), T1, T2, dtype=np.float64), -base, atol=1e-12)
    c = simulate_fisp(flip(0.0), T1, T2, dtype=np.float64, complex_output=True)
    np.testing.assert_allclose(c, -1j * base, atol=1e-12)  # phase 0 = phase 90 rotated by -90 deg
    c90 = simulate_fisp(SEQ, T1, T2, dtype=np.float64, complex_output=True)
    assert np.abs(c90.imag).max() == 0.0


def test_float32_matches_float64():
    a32 = simulate_fisp(SEQ, T1, T2)
    a64 = simulate_fisp(SEQ, T1, T2, dtype=np.float64)
    assert a32.dtype == np.float32 and a64.dtype == np.float64 and a32.shape == (T1.size, 200)
    assert np.abs(a32 - a64).max() <= 1e-6 * np.abs(a64).max()


def test_light_cone_pruning_is_exact():
    pruned = simulate_fisp_numpy(SEQ, T1, T2, dtype=np.float64)
    full = simulate_fisp_numpy(SEQ, T1, T2, dtype=np.float64, light_cone=False)
    assert np.abs(pruned - full).max() <= 1e-12
    assert exact_n_states(200) == 100
    big = simulate_fisp(SEQ, T1, T2, dtype=np.float64, n_states=500)
    assert np.array_equal(big, simulate_fisp(SEQ, T1, T2, dtype=np.float64))


def test_truncation_error_as_documented():
    t1, t2 = _subgrid()
    full = simulate_fisp(SEQ, t1, t2, dtype=np.float64)
    trunc = simulate_fisp(SEQ, t1, t2, dtype=np.float64, n_states=20)
    err = np.abs(trunc - full).max(axis=1) / np.abs(full).max(axis=1)
    assert err.max() <= 3e-2
    assert err[t2 <= 100].max() <= 1e-4
    assert err[t2 <= 300].max() <= 3e-3
    assert err.max() > 1e-3  # truncation does something for long T2
    # numpy truncation agrees with the compiled one
    sel = slice(0, None, 50)
    np.testing.assert_allclose(
        simulate_fisp_numpy(SEQ, t1[sel], t2[sel], dtype=np.float64, n_states=20, light_cone=False),
        trunc[sel], atol=1e-12,
    )


def test_first_echo_and_inversion():
    a = simulate_fisp(SEQ, T1, T2, dtype=np.float64)
    expected = -np.sin(np.deg2rad(SEQ.flip_angles_deg[0])) * np.exp(-2.0 / T2)
    np.testing.assert_allclose(a[:, 0], expected, rtol=1e-12)
    no_inv = FispSequence.from_arrays(SEQ.flip_angles_deg, SEQ.tr_ms, 2.0, inversion=False)
    np.testing.assert_allclose(simulate_fisp(no_inv, T1, T2, dtype=np.float64)[:, 0], -expected, rtol=1e-12)
    # inversion delay at the null point T1 ln 2 gives zero first echo
    t1 = np.array([800.0])
    nulled = FispSequence.from_arrays(SEQ.flip_angles_deg, SEQ.tr_ms, 2.0, inversion_delay_ms=800.0 * np.log(2))
    assert abs(simulate_fisp(nulled, t1, [80.0], dtype=np.float64)[0, 0]) < 1e-12


def test_known_limits():
    # 90-degree train, negligible relaxation: +1 (FID), 0, 0, then 0.5: the spin echo of
    # pulses 1-2 refocuses at pulse 3, which stores it along +z (Z0 = 0.5), and pulse 4
    # tips it back (worked by hand; the Bloch simulator agrees, see test_bloch.py)
    c = constant_sequence(4, 90.0, 10.0, 2.0)
    s = simulate_fisp(c, [1e12], [1e12], dtype=np.float64)[0]
    np.testing.assert_allclose(s, [1.0, 0.0, 0.0, 0.5], atol=1e-9)
    zero = constant_sequence(50, 0.0, 10.0, 2.0, inversion=True)
    assert np.abs(simulate_fisp(zero, T1, T2)).max() == 0.0
    # tiny T2: signal decays within each TE
    tiny = simulate_fisp(SEQ, [800.0, 4000.0], [0.05, 0.05], dtype=np.float64)
    assert np.abs(tiny).max() < 1e-15
    # single 30-degree pulse: sin(30) exp(-TE/T2)
    sig = simulate_fisp(constant_sequence(1, 30.0, 10.0, 2.0), [1000.0], [100.0], dtype=np.float64)
    assert sig[0, 0] == pytest.approx(0.5 * np.exp(-0.02))


def test_progress_and_chunks_give_same_result():
    t1, t2 = _subgrid()
    t1 = np.tile(t1, 10)[:9000]
    t2 = np.tile(t2, 10)[:9000]  # > one chunk of 8192 tissues
    a = simulate_fisp(SEQ, t1, t2, progress=True)
    b = simulate_fisp(SEQ, t1[-10:], t2[-10:])
    assert np.array_equal(a[-10:], b)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(t1_ms=[-1.0], t2_ms=[10.0]), "t1_ms"),
        (dict(t1_ms=[np.nan], t2_ms=[10.0]), "t1_ms"),
        (dict(t1_ms=[100.0], t2_ms=[0.0]), "t2_ms"),
        (dict(t1_ms=[[100.0]], t2_ms=[[10.0]]), "t1_ms"),
        (dict(t1_ms=[100.0, 200.0], t2_ms=[10.0]), "t2_ms"),
        (dict(t1_ms=[100.0], t2_ms=[10.0], b1=[0.0]), "b1"),
        (dict(t1_ms=[100.0], t2_ms=[10.0], b1=[1.0, 1.0]), "b1"),
        (dict(t1_ms=[100.0], t2_ms=[10.0], b1=np.inf), "b1"),
        (dict(t1_ms=[100.0], t2_ms=[10.0], dtype=np.int32), "dtype"),
        (dict(t1_ms=[100.0], t2_ms=[10.0], n_states=0), "n_states"),
    ],
)
@pytest.mark.parametrize("fn", [simulate_fisp, simulate_fisp_numpy])
def test_bad_input(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(SEQ, **kwargs)


def test_bad_sequence():
    with pytest.raises(ValueError, match="sequence"):
        simulate_fisp("paper", [100.0], [10.0])
