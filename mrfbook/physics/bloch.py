"""Independent references for the EPG: isochromat Bloch simulation and the
analytic FISP steady state.

:func:`simulate_fisp_isochromats` follows ``N`` isochromats spread uniformly
over one full cycle of spoiler dephasing, applying 3x3 rotation matrices for
the RF pulses (Rodrigues' formula), exact exponential relaxation for TE and
TR - TE separately, and a rotation about ``z`` by ``2 pi j / N`` for
isochromat ``j`` at the end of each repetition.  The voxel signal is the mean
transverse magnetisation.  It shares no code with :mod:`mrfbook.physics.epg`; with
``N >= 2L`` isochromats no dephasing order up to ``L - 1`` aliases onto
``F_0``, so both must agree to rounding error.

:func:`fisp_steady_state` is the closed-form steady state of a FISP sequence
(constant flip angle and TR, unbalanced gradient dephasing the voxel by 2 pi
per TR, no RF spoiling).

Explained in chapter 2, book/02_simulation.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrfbook.physics.epg import check_sequence, check_tissues
from mrfbook.physics.sequence import FispSequence
from mrfbook.utils.checks import check_int

__all__ = ["simulate_fisp_isochromats", "fisp_steady_state", "rotation_matrix"]


def rotation_matrix(alpha_rad: np.ndarray, phase_rad: float) -> np.ndarray:
    """Right-handed rotations by ``alpha`` about ``(cos phase, sin phase, 0)``.

    Parameters
    ----------
    alpha_rad : ndarray, shape (K,)
        Rotation angles in radians.
    phase_rad : float
        RF phase in radians (90 degrees: rotation about ``y``, ``z -> x``).

    Returns
    -------
    ndarray, shape (K, 3, 3), float64
        ``R = cos a I + sin a [n]_x + (1 - cos a) n n^T``.
    """
    a = np.asarray(alpha_rad, dtype=np.float64)[:, None, None]
    n = np.array([np.cos(phase_rad), np.sin(phase_rad), 0.0])
    cross = np.array([[0.0, -n[2], n[1]], [n[2], 0.0, -n[0]], [-n[1], n[0], 0.0]])
    return np.cos(a) * np.eye(3) + np.sin(a) * cross + (1.0 - np.cos(a)) * np.outer(n, n)


def simulate_fisp_isochromats(
    sequence: FispSequence,
    t1_ms: Any,
    t2_ms: Any,
    b1: Any = None,
    n_isochromats: int | None = None,
    *,
    complex_output: bool = False,
) -> np.ndarray:
    """Simulate FISP signatures with an isochromat Bloch simulation.

    Parameters
    ----------
    sequence : FispSequence
        The schedule (same conventions as :func:`mrfbook.physics.epg.simulate_fisp`).
    t1_ms, t2_ms : array_like, shape (K,)
        Relaxation times in ms (finite, > 0).
    b1 : None, float or array_like, shape (K,)
        Flip-angle scale (finite, > 0); ``None`` means 1.
    n_isochromats : int, optional
        Isochromats per voxel, dephased by ``2 pi j / N`` per TR,
        ``j = 0 .. N-1``.  Default ``2 L + 2``, which avoids aliasing of any
        dephasing order reachable in ``L`` repetitions.  Must be >= 1.
    complex_output : bool, default False
        Return the complex mean ``M_x + i M_y`` instead of ``M_x``.

    Returns
    -------
    ndarray, shape (K, L), float64 (complex128 if ``complex_output``)
        Mean ``M_x`` at each echo time (proton density 1).  Cost is
        O(K N L); vectorised over tissues and isochromats with NumPy.

    Notes
    -----
    Explained in chapter 2, book/02_simulation.md.
    """
    seq = check_sequence(sequence)
    t1, t2, b1a = check_tissues(t1_ms, t2_ms, b1)
    n_t = seq.n_timepoints
    n_iso = check_int("n_isochromats", n_isochromats, 1, allow_none=True)
    if n_iso is None:
        n_iso = 2 * n_t + 2
    theta = 2.0 * np.pi * np.arange(n_iso) / n_iso
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    n_k = t1.size
    t1c, t2c = t1[:, None], t2[:, None]
    mx = np.zeros((n_k, n_iso))
    my = np.zeros((n_k, n_iso))
    mz = np.full((n_k, n_iso), -1.0 if seq.inversion else 1.0)

    def relax(tau: float) -> None:
        e1, e2 = np.exp(-tau / t1c), np.exp(-tau / t2c)
        mx[...] *= e2
        my[...] *= e2
        mz[...] = e1 * mz + (1.0 - e1)

    if seq.inversion_delay_ms > 0:
        relax(seq.inversion_delay_ms)
    out = np.empty((n_k, n_t), dtype=np.complex128 if complex_output else np.float64)
    for t in range(n_t):
        rot = rotation_matrix(np.deg2rad(seq.flip_angles_deg[t]) * b1a, np.deg2rad(seq.rf_phase_deg[t]))
        r = rot[:, :, :, None]  # (K, 3, 3, 1) broadcast over isochromats
        mx, my, mz = (
            r[:, 0, 0] * mx + r[:, 0, 1] * my + r[:, 0, 2] * mz,
            r[:, 1, 0] * mx + r[:, 1, 1] * my + r[:, 1, 2] * mz,
            r[:, 2, 0] * mx + r[:, 2, 1] * my + r[:, 2, 2] * mz,
        )
        relax(seq.te_ms[t])
        out[:, t] = mx.mean(axis=1) + 1j * my.mean(axis=1) if complex_output else mx.mean(axis=1)
        relax(seq.tr_ms[t] - seq.te_ms[t])
        mx, my = cos_t * mx - sin_t * my, sin_t * mx + cos_t * my
    return out


def fisp_steady_state(
    flip_deg: Any, tr_ms: Any, te_ms: Any, t1_ms: Any, t2_ms: Any
) -> np.ndarray:
    """Analytic steady-state FISP (SSFP-FID) signal at the echo time.

    For constant flip angle ``a`` and repetition time TR, with an unbalanced
    gradient that dephases the voxel uniformly over 2 pi in each TR and no RF
    spoiling, the voxel-averaged transverse magnetisation right after each
    pulse is (Hanicke & Vogel, Magn Reson Med 49:771, 2003; Scheffler,
    Concepts Magn Reson 11:291, 1999; after Zur et al. 1988 and Freeman & Hill
    1971)::

        S0 = M0 tan(a/2) [1 - (E1 - cos a)(1 - E2^2) / sqrt(p^2 - q^2)]
        p  = 1 - E1 cos a - E2^2 (E1 - cos a)
        q  = E2 (1 - E1)(1 + cos a)

    with ``E1 = exp(-TR/T1)``, ``E2 = exp(-TR/T2)`` and ``M0 = 1``; the signal
    at the echo is ``S0 exp(-TE/T2)``.  For ``E2 -> 0`` it reduces to the
    spoiled-gradient-echo (FLASH) value ``sin a (1-E1)/(1-E1 cos a)``.

    Parameters
    ----------
    flip_deg : array_like
        Flip angle in degrees, in (0, 180).
    tr_ms, te_ms : array_like
        Repetition and echo time in ms, ``0 < TE < TR``.
    t1_ms, t2_ms : array_like
        Relaxation times in ms (> 0).  All arguments broadcast together.

    Returns
    -------
    ndarray, float64 (broadcast shape)
        Steady-state signal (``M_x`` for 90-degree RF phase, positive).
    """
    a = np.asarray(flip_deg, dtype=np.float64)
    tr = np.asarray(tr_ms, dtype=np.float64)
    te = np.asarray(te_ms, dtype=np.float64)
    t1 = np.asarray(t1_ms, dtype=np.float64)
    t2 = np.asarray(t2_ms, dtype=np.float64)
    if np.any(~np.isfinite(a) | (a <= 0) | (a >= 180)):
        raise ValueError("flip_deg must be in (0, 180) degrees")
    for name, v in (("tr_ms", tr), ("t1_ms", t1), ("t2_ms", t2)):
        if np.any(~np.isfinite(v) | (v <= 0)):
            raise ValueError(f"{name} must be finite and > 0 ms")
    if np.any(~np.isfinite(te) | (te <= 0) | (te >= tr)):
        raise ValueError("te_ms must satisfy 0 < te_ms < tr_ms")
    ar = np.deg2rad(a)
    ca = np.cos(ar)
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    p = 1.0 - e1 * ca - e2**2 * (e1 - ca)
    q = e2 * (1.0 - e1) * (1.0 + ca)
    s0 = np.tan(ar / 2.0) * (1.0 - (e1 - ca) * (1.0 - e2**2) / np.sqrt(p**2 - q**2))
    return s0 * np.exp(-te / t2)
