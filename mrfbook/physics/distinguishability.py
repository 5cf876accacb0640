"""How well does a FISP schedule tell tissues apart?

Two figures of merit for comparing flip-angle/TR schedules:

* :func:`mutual_coherence` - the largest normalised inner product
  ``|<d_i, d_j>| / (||d_i|| ||d_j||)`` between signatures of *different*
  tissues on a (coarse) grid.  Close to 1 means some pair of tissues is nearly
  indistinguishable by dictionary matching.  Because neighbouring grid points
  are always similar, pairs can be restricted to tissues that differ by at
  least a given log-distance in (T1, T2).
* :func:`crb_relative_std` - the Cramer-Rao lower bound on the standard
  deviation of unbiased T1 and T2 estimates, relative to T1 and T2, for white
  Gaussian noise of standard deviation ``noise_sigma`` per time point and the
  proton density as an unknown nuisance parameter.  It uses the Jacobian of
  the signature with respect to (T1, T2) (:func:`signature_jacobian`, central
  finite differences of the exact EPG).

Explained in chapter 2, book/02_simulation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mrfbook.physics.epg import check_tissues, simulate_fisp
from mrfbook.physics.sequence import FispSequence

__all__ = [
    "coarse_grid",
    "mutual_coherence",
    "signature_jacobian",
    "crb_relative_std",
    "DistinguishabilityReport",
    "distinguishability_report",
    "REFERENCE_TISSUES",
]

#: (name, T1 ms, T2 ms) at 3 T used for the CRB summary (reference-facts, Gach 2008 / Bojorquez 2017)
REFERENCE_TISSUES: tuple[tuple[str, float, float], ...] = (
    ("white matter", 830.0, 75.0),
    ("grey matter", 1558.0, 83.0),
    ("CSF", 4163.0, 1650.0),
    ("fat", 374.0, 125.0),
)


def coarse_grid(
    n_t1: int = 14, n_t2: int = 12, t1_range_ms=(100.0, 5000.0), t2_range_ms=(10.0, 2000.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced (T1, T2) grid with T1 >= T2, flat arrays of shape (K,), ms."""
    if n_t1 < 2 or n_t2 < 2:
        raise ValueError(f"n_t1 and n_t2 must be >= 2; got {n_t1}, {n_t2}")
    t1, t2 = np.meshgrid(np.geomspace(*t1_range_ms, n_t1), np.geomspace(*t2_range_ms, n_t2), indexing="ij")
    keep = t1 >= t2
    return t1[keep], t2[keep]


def mutual_coherence(
    atoms: np.ndarray,
    t1_ms: Any,
    t2_ms: Any,
    *,
    min_log_separation: float = 0.0,
    return_pair: bool = False,
) -> float | tuple[float, int, int]:
    """Largest normalised inner product between signatures of distinct tissues.

    Parameters
    ----------
    atoms : ndarray, shape (K, L)
        Signatures (real or complex), any scale.
    t1_ms, t2_ms : array_like, shape (K,)
        Their tissue parameters in ms.
    min_log_separation : float, default 0
        Only pairs with ``max(|ln T1_i/T1_j|, |ln T2_i/T2_j|) >= min_log_separation``
        count (0: every pair of distinct tissues; ``ln 1.2``: tissues at least
        20 % apart in T1 or T2).

    return_pair : bool, default False
        Also return the indices ``(i, j)`` of the most coherent pair.

    Returns
    -------
    float (or (float, int, int))
        In [0, 1]; lower is better.  ``nan`` (and indices -1) if no pair
        qualifies.  Values are typically within 1e-3 of 1 for FISP schedules,
        so the chapter plots the gap ``1 - coherence``.
    """
    d = np.asarray(atoms)
    t1, t2, _ = check_tissues(t1_ms, t2_ms)
    if d.ndim != 2 or d.shape[0] != t1.size:
        raise ValueError(f"atoms must have shape (K, L) with K = {t1.size}; got {d.shape}")
    if not np.isfinite(min_log_separation) or min_log_separation < 0:
        raise ValueError(f"min_log_separation must be finite and >= 0; got {min_log_separation!r}")
    norms = np.linalg.norm(d, axis=1)
    if np.any(norms == 0):
        raise ValueError("atoms must not contain all-zero signatures")
    u = d / norms[:, None]
    gram = np.abs(u @ u.conj().T)
    sep = np.maximum(
        np.abs(np.log(t1[:, None] / t1[None, :])), np.abs(np.log(t2[:, None] / t2[None, :]))
    )
    ok = (sep >= min_log_separation) & (sep > 0)
    if not ok.any():
        return (float("nan"), -1, -1) if return_pair else float("nan")
    masked = np.where(ok, gram, -1.0)
    i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
    value = float(masked[i, j])
    return (value, int(i), int(j)) if return_pair else value


def signature_jacobian(
    sequence: FispSequence, t1_ms: Any, t2_ms: Any, *, rel_step: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Signatures and their derivatives with respect to T1 and T2.

    Central differences of :func:`mrfbook.physics.epg.simulate_fisp` in float64 with
    step ``rel_step * T`` (truncation error O(rel_step^2)).

    Returns
    -------
    signal : ndarray, shape (K, L), float64
    jac : ndarray, shape (K, L, 2), float64
        ``d signal / d T1`` and ``d signal / d T2`` in 1/ms.
    """
    t1, t2, _ = check_tissues(t1_ms, t2_ms)
    if not (0 < rel_step < 0.1):
        raise ValueError(f"rel_step must be in (0, 0.1); got {rel_step!r}")
    h1, h2 = rel_step * t1, rel_step * t2
    k = t1.size
    t1s = np.concatenate([t1, t1 + h1, t1 - h1, t1, t1])
    t2s = np.concatenate([t2, t2, t2, t2 + h2, t2 - h2])
    s = simulate_fisp(sequence, t1s, t2s, dtype=np.float64).reshape(5, k, -1)
    jac = np.stack([(s[1] - s[2]) / (2 * h1[:, None]), (s[3] - s[4]) / (2 * h2[:, None])], axis=-1)
    return s[0], jac


def crb_relative_std(
    sequence: FispSequence,
    t1_ms: Any,
    t2_ms: Any,
    *,
    pd: float = 1.0,
    noise_sigma: float = 0.01,
) -> np.ndarray:
    """Cramer-Rao bound on the relative standard deviation of T1 and T2.

    Model ``y = pd * s(T1, T2) + n`` with real white Gaussian noise of standard
    deviation ``noise_sigma`` per time point; unknowns ``(pd, T1, T2)``.  The
    Fisher information is ``F = J^T J / sigma^2`` with
    ``J = [s, pd ds/dT1, pd ds/dT2]``; the bound is ``sqrt(diag(F^-1))``.

    Returns
    -------
    ndarray, shape (K, 2), float64
        ``sqrt(CRB_T1)/T1`` and ``sqrt(CRB_T2)/T2`` (dimensionless; lower is
        better).  ``inf`` where the Fisher information is singular (e.g. zero
        flip angles).
    """
    if not (np.isfinite(pd) and pd > 0):
        raise ValueError(f"pd must be finite and > 0; got {pd!r}")
    if not (np.isfinite(noise_sigma) and noise_sigma > 0):
        raise ValueError(f"noise_sigma must be finite and > 0; got {noise_sigma!r}")
    t1, t2, _ = check_tissues(t1_ms, t2_ms)
    s, jac = signature_jacobian(sequence, t1, t2)
    full = np.concatenate([s[..., None], pd * jac], axis=-1)  # (K, L, 3)
    fisher = np.einsum("klp,klq->kpq", full, full) / noise_sigma**2
    out = np.full((t1.size, 2), np.inf)
    for i, f in enumerate(fisher):
        # scale to unit diagonal before inverting (T1 and T2 derivatives differ by decades)
        dg = np.sqrt(np.diag(f))
        if np.any(dg == 0):
            continue
        g = f / np.outer(dg, dg)
        if np.linalg.cond(g) > 1e14:
            continue
        crb = np.diag(np.linalg.inv(g)) / dg**2
        out[i] = np.sqrt(crb[1:]) / np.array([t1[i], t2[i]])
    return out


@dataclass(frozen=True)
class DistinguishabilityReport:
    """Summary figures for one schedule (see :func:`distinguishability_report`)."""

    coherence: float  #: mutual coherence over the coarse grid, all distinct pairs
    coherence_separated: float  #: same, pairs >= 20 % apart in T1 or T2
    crb_t1: np.ndarray  #: (n_ref,) relative CRB std of T1 at REFERENCE_TISSUES
    crb_t2: np.ndarray  #: (n_ref,) relative CRB std of T2
    tissue_names: tuple[str, ...]


def distinguishability_report(
    sequence: FispSequence, *, noise_sigma: float = 0.01, grid: tuple[np.ndarray, np.ndarray] | None = None
) -> DistinguishabilityReport:
    """Coherence on :func:`coarse_grid` and CRBs at :data:`REFERENCE_TISSUES`.

    Cheap (about 150 tissues + 20 Jacobian simulations), for interactive use.
    """
    t1, t2 = coarse_grid() if grid is None else grid
    atoms = simulate_fisp(sequence, t1, t2, dtype=np.float64)
    nonzero = np.linalg.norm(atoms, axis=1) > 0
    if not nonzero.all():
        coh = coh_sep = float("nan")
    else:
        coh = mutual_coherence(atoms, t1, t2)
        coh_sep = mutual_coherence(atoms, t1, t2, min_log_separation=np.log(1.2))
    names = tuple(n for n, _, _ in REFERENCE_TISSUES)
    rt1 = np.array([a for _, a, _ in REFERENCE_TISSUES])
    rt2 = np.array([b for _, _, b in REFERENCE_TISSUES])
    crb = crb_relative_std(sequence, rt1, rt2, noise_sigma=noise_sigma)
    return DistinguishabilityReport(coh, coh_sep, crb[:, 0], crb[:, 1], names)
