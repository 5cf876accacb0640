"""The fingerprint as a smooth function of (T1, T2): an interpolated EPG table and a least-squares fit.

A dictionary samples the signal model on a grid; matching picks the best grid point. Here the
same model is tabulated once on a grid that is uniform in (log T1, log T2), projected onto the
table's leading singular vectors (rank ``K``), and interpolated with cubic B-splines, so that the
unit-norm signal ``f(T1, T2)`` (``K`` coefficients) and its derivatives exist everywhere inside the
table. :meth:`SignalManifold.fit` then solves, for each signature ``z`` (its ``K`` coefficients)::

    min over (T1, T2, a) of  || z - a f(T1, T2) ||^2

by Gauss-Newton from a given start, with the amplitude ``a`` eliminated at every step (variable
projection). Started close enough, it returns the continuous least-squares estimate: exact (to
the interpolation error) on a clean signature between grid points, and, on a noisy or restored
one, the value that matching would approach on an infinitely fine grid.
:func:`mrfbook.physics.reference.apparent_parameters` solves the same least-squares problem with
the EPG model itself in the loop (exact, and the book's evaluation reference, but too slow for
mapping); this module trades that exactness for speed with the interpolated table.

Explained in chapter 11, book/11_real_inputs.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

from mrfbook.utils.checks import check_int

__all__ = ["SignalManifold", "build_manifold", "MANIFOLD_FORMAT"]

MANIFOLD_FORMAT = "mrfbook-signal-manifold/1"


@nb.njit(cache=True)
def _bspline_weights(t: float):  # pragma: no cover - compiled
    """Cubic B-spline weights of the four nodes around fractional position ``t`` in [0, 1], and their derivatives."""
    s = 1.0 - t
    w = (s * s * s / 6.0, (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0, (-3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0) / 6.0,
         t**3 / 6.0)
    d = (-s * s / 2.0, (9.0 * t**2 - 12.0 * t) / 6.0, (-9.0 * t**2 + 6.0 * t + 3.0) / 6.0, t * t / 2.0)
    return w, d


@nb.njit(cache=True)
def _evaluate(coef, u0, hu, v0, hv, u, v, f, fu, fv):  # pragma: no cover - compiled
    """f, df/du, df/dv at (u, v) = (log T1, log T2) from the B-spline coefficients (in place)."""
    nu, nv, k_rank = coef.shape
    x = (u - u0) / hu
    y = (v - v0) / hv
    i = min(max(int(np.floor(x)), 1), nu - 3)
    j = min(max(int(np.floor(y)), 1), nv - 3)
    wx, dx = _bspline_weights(x - i)
    wy, dy = _bspline_weights(y - j)
    f[:] = 0.0
    fu[:] = 0.0
    fv[:] = 0.0
    for a in range(4):
        for b in range(4):
            w_f = wx[a] * wy[b]
            w_u = dx[a] * wy[b] / hu
            w_v = wx[a] * dy[b] / hv
            for k in range(k_rank):
                c = coef[i - 1 + a, j - 1 + b, k]
                f[k] += w_f * c
                fu[k] += w_u * c
                fv[k] += w_v * c


@nb.njit(cache=True)
def _objective(coef, u0, hu, v0, hv, u, v, z, f, fu, fv):  # pragma: no cover - compiled
    """|z|^2 - <f, z>^2 / |f|^2 at (u, v): the squared residual with the best amplitude (f, fu, fv filled)."""
    _evaluate(coef, u0, hu, v0, hv, u, v, f, fu, fv)
    ff = 0.0
    fz = 0.0
    zz = 0.0
    for k in range(z.shape[0]):
        ff += f[k] * f[k]
        fz += f[k] * z[k]
        zz += z[k] * z[k]
    return max(zz - fz * fz / ff, 0.0)


@nb.njit(parallel=True, cache=True, nogil=True)
def _fit(z_all, u_start, v_start, coef, u0, hu, v0, hv, bounds, n_iter, max_step):  # pragma: no cover - compiled
    """Variable-projection Gauss-Newton on (u, v) for every row of ``z_all`` (see module docstring).

    A step is kept only if it lowers the squared residual (else it is halved, up to six times),
    so the result is never worse than the start.
    """
    n, k_rank = z_all.shape
    u_out = np.empty(n)
    v_out = np.empty(n)
    amp = np.empty(n)
    resid = np.empty(n)
    umin, umax, vmin, vmax = bounds[0], bounds[1], bounds[2], bounds[3]
    for row in nb.prange(n):
        z = z_all[row]
        f = np.empty(k_rank)
        fu = np.empty(k_rank)
        fv = np.empty(k_rank)
        ft = np.empty(k_rank)
        ftu = np.empty(k_rank)
        ftv = np.empty(k_rank)
        u = u_start[row]
        v = v_start[row]
        cost = _objective(coef, u0, hu, v0, hv, u, v, z, f, fu, fv)
        for _ in range(n_iter):
            ff = 0.0
            fz = 0.0
            for k in range(k_rank):
                ff += f[k] * f[k]
                fz += f[k] * z[k]
            a = fz / ff
            j01 = 0.0
            j02 = 0.0
            j11 = 0.0
            j12 = 0.0
            j22 = 0.0
            g0 = 0.0
            g1 = 0.0
            g2 = 0.0
            for k in range(k_rank):
                r = z[k] - a * f[k]
                p = a * fu[k]
                q = a * fv[k]
                j01 += f[k] * p
                j02 += f[k] * q
                j11 += p * p
                j12 += p * q
                j22 += q * q
                g0 += f[k] * r
                g1 += p * r
                g2 += q * r
            # eliminate the amplitude (Schur complement of the 3x3 normal equations)
            m11 = j11 - j01 * j01 / ff
            m12 = j12 - j01 * j02 / ff
            m22 = j22 - j02 * j02 / ff
            h1 = g1 - j01 * g0 / ff
            h2 = g2 - j02 * g0 / ff
            damp = 1e-9 * (m11 + m22) + 1e-300
            m11 += damp
            m22 += damp
            det = m11 * m22 - m12 * m12
            du = min(max((m22 * h1 - m12 * h2) / det, -max_step), max_step)
            dv = min(max((m11 * h2 - m12 * h1) / det, -max_step), max_step)
            moved = False
            for _half in range(7):
                un = min(max(u + du, umin), umax)
                vn = min(max(v + dv, vmin), min(vmax, un))
                trial = _objective(coef, u0, hu, v0, hv, un, vn, z, ft, ftu, ftv)
                if trial <= cost:
                    u, v, cost, moved = un, vn, trial, True
                    f[:] = ft
                    fu[:] = ftu
                    fv[:] = ftv
                    break
                du *= 0.5
                dv *= 0.5
            if not moved:
                break
        ff = 0.0
        fz = 0.0
        for k in range(k_rank):
            ff += f[k] * f[k]
            fz += f[k] * z[k]
        u_out[row] = u
        v_out[row] = v
        amp[row] = fz / ff
        resid[row] = np.sqrt(cost)
    return u_out, v_out, amp, resid


@dataclass(frozen=True, eq=False)
class SignalManifold:
    """The unit-norm fingerprint as a cubic B-spline in (log T1, log T2), in a rank-K subspace.

    Attributes
    ----------
    log_t1 : numpy.ndarray
        (n_t1,) float64 uniform grid of ln(T1 / ms).
    log_t2 : numpy.ndarray
        (n_t2,) float64 uniform grid of ln(T2 / ms).
    basis : numpy.ndarray
        (L, K) float64 orthonormal columns: the table's leading right singular vectors.
    coefficients : numpy.ndarray
        (n_t1, n_t2, K) float64 B-spline coefficients of the projected unit-norm atoms.
    t1_range_ms, t2_range_ms : tuple of float
        The box the fit stays in (ms); T2 <= T1 is kept too, as in the dictionary.
    sequence_digest : str
        Digest of the FispSequence the table was simulated for.

    Explained in chapter 11, book/11_real_inputs.md.
    """

    log_t1: np.ndarray
    log_t2: np.ndarray
    basis: np.ndarray
    coefficients: np.ndarray
    t1_range_ms: tuple[float, float]
    t2_range_ms: tuple[float, float]
    sequence_digest: str
    _coarse_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def rank(self) -> int:
        """K, the number of subspace coefficients."""
        return int(self.basis.shape[1])

    @property
    def n_timepoints(self) -> int:
        """L, the fingerprint length."""
        return int(self.basis.shape[0])

    def project(self, signatures: np.ndarray) -> np.ndarray:
        """Subspace coefficients (N, K) float64 of real signatures (N, L)."""
        x = np.asarray(signatures, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_timepoints:
            raise ValueError(f"signatures must be a real (N, {self.n_timepoints}) array, got shape {x.shape}")
        return x @ self.basis

    def signal(self, t1_ms: np.ndarray, t2_ms: np.ndarray) -> np.ndarray:
        """Interpolated unit-norm coefficients (N, K) at (T1, T2) in ms (inside the table)."""
        t1 = np.atleast_1d(np.asarray(t1_ms, dtype=np.float64))
        t2 = np.atleast_1d(np.asarray(t2_ms, dtype=np.float64))
        out = np.empty((t1.size, self.rank))
        for n, (u, v) in enumerate(zip(np.log(t1), np.log(t2))):
            out[n] = _spline_at(self, u, v)
        return out

    def coarse_start(self, coefficients: np.ndarray, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Best-correlated node of every ``step``-th table node inside the box: a start for :meth:`fit`.

        Parameters
        ----------
        coefficients : numpy.ndarray
            (N, K) subspace coefficients (any scale).
        step : int
            Take every ``step``-th node along each axis (>= 1); 4 gives 2,183 nodes with T2 <= T1 for the default table.

        Returns
        -------
        t1_ms, t2_ms : numpy.ndarray
            (N,) float64 the node of largest ``<z, f> / |f|`` (sign included).

        Explained in chapter 11, book/11_real_inputs.md.
        """
        step = check_int("step", step, 1)
        z = np.asarray(coefficients, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.rank:
            raise ValueError(f"coefficients must be an (N, {self.rank}) array, got shape {z.shape}")
        u, v, f = _coarse_nodes(self, step)
        best = np.empty(z.shape[0], dtype=np.int64)
        for lo in range(0, z.shape[0], 8192):
            best[lo:lo + 8192] = np.argmax(z[lo:lo + 8192] @ f.T, axis=1)
        return np.exp(u[best]), np.exp(v[best])

    def fit(self, coefficients: np.ndarray, t1_start_ms: np.ndarray, t2_start_ms: np.ndarray, *,
            n_iter: int = 8, max_step: float = 0.25) -> dict[str, np.ndarray]:
        """Continuous least-squares (T1, T2) of each signature, by Gauss-Newton from a start.

        Parameters
        ----------
        coefficients : numpy.ndarray
            (N, K) float64 subspace coefficients of real, sign-resolved signatures (any scale).
        t1_start_ms, t2_start_ms : numpy.ndarray
            (N,) start values in ms, e.g. a network's estimate; clipped into the fit's box.
        n_iter : int
            Gauss-Newton steps (>= 0).
        max_step : float
            Largest change of ln T1 or ln T2 in one step (> 0).

        Returns
        -------
        dict
            ``t1_ms``, ``t2_ms`` (N,) float64; ``amplitude`` (N,) float64, the least-squares scale
            of the unit-norm signal; ``residual`` (N,) float64, the norm of what the fitted signal
            leaves unexplained (same units as ``coefficients``).

        Explained in chapter 11, book/11_real_inputs.md.
        """
        z = np.ascontiguousarray(coefficients, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.rank:
            raise ValueError(f"coefficients must be an (N, {self.rank}) array, got shape {z.shape}")
        n_iter = check_int("n_iter", n_iter, 0)
        if not (np.isfinite(max_step) and max_step > 0):
            raise ValueError(f"max_step must be a finite number > 0, got {max_step!r}")
        bounds = np.log(np.array([*self.t1_range_ms, *self.t2_range_ms], dtype=np.float64))
        u = np.clip(np.log(np.maximum(np.asarray(t1_start_ms, dtype=np.float64), 1e-12)), bounds[0], bounds[1])
        v = np.clip(np.log(np.maximum(np.asarray(t2_start_ms, dtype=np.float64), 1e-12)), bounds[2], bounds[3])
        if u.shape != (z.shape[0],) or v.shape != (z.shape[0],):
            raise ValueError(f"t1_start_ms and t2_start_ms must have shape ({z.shape[0]},), got {u.shape}, {v.shape}")
        v = np.minimum(v, u)
        hu = float(self.log_t1[1] - self.log_t1[0])
        hv = float(self.log_t2[1] - self.log_t2[0])
        uf, vf, amp, res = _fit(z, u, v, self.coefficients, float(self.log_t1[0]), hu, float(self.log_t2[0]), hv,
                                bounds, n_iter, float(max_step))
        return {"t1_ms": np.exp(uf), "t2_ms": np.exp(vf), "amplitude": amp, "residual": res}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table to ``path`` (.npz); returns the path."""
        p = Path(path)
        np.savez(p, format=np.array(MANIFOLD_FORMAT), log_t1=self.log_t1, log_t2=self.log_t2, basis=self.basis,
                 coefficients=self.coefficients, t1_range_ms=np.array(self.t1_range_ms),
                 t2_range_ms=np.array(self.t2_range_ms), sequence_digest=np.array(self.sequence_digest))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SignalManifold":
        """Read a table written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as d:
            if str(d["format"]) != MANIFOLD_FORMAT:
                raise ValueError(f"{path}: not a {MANIFOLD_FORMAT} file (format {str(d['format'])!r})")
            return cls(d["log_t1"], d["log_t2"], d["basis"], d["coefficients"], tuple(d["t1_range_ms"].tolist()),
                       tuple(d["t2_range_ms"].tolist()), str(d["sequence_digest"]))


@nb.njit(cache=True)
def _spline_point(coef, u0, hu, v0, hv, u, v):  # pragma: no cover - compiled
    k_rank = coef.shape[2]
    f = np.empty(k_rank)
    fu = np.empty(k_rank)
    fv = np.empty(k_rank)
    _evaluate(coef, u0, hu, v0, hv, u, v, f, fu, fv)
    return f


def _coarse_nodes(m: SignalManifold, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, unit-norm f) of every ``step``-th node inside the fit's box with T2 <= T1 (cached on the table)."""
    key = (step, m.t1_range_ms, m.t2_range_ms)
    cache = m._coarse_cache
    if key not in cache:
        lo = np.log([m.t1_range_ms[0], m.t2_range_ms[0]])
        hi = np.log([m.t1_range_ms[1], m.t2_range_ms[1]])
        uu, vv = np.meshgrid(m.log_t1[::step], m.log_t2[::step], indexing="ij")
        keep = (uu >= lo[0]) & (uu <= hi[0]) & (vv >= lo[1]) & (vv <= hi[1]) & (vv <= uu)
        u, v = uu[keep], vv[keep]
        f = np.array([_spline_at(m, a, b) for a, b in zip(u, v)])
        cache[key] = (u, v, f / np.linalg.norm(f, axis=1, keepdims=True))
    return cache[key]


def _spline_at(m: SignalManifold, u: float, v: float) -> np.ndarray:
    return _spline_point(m.coefficients, float(m.log_t1[0]), float(m.log_t1[1] - m.log_t1[0]), float(m.log_t2[0]),
                         float(m.log_t2[1] - m.log_t2[0]), float(u), float(v))


def build_manifold(sequence: Any, *, rank: int = 24, t1_range_ms: tuple[float, float] = (1.0, 5000.0),
                   t2_range_ms: tuple[float, float] = (1.0, 2000.0), n_t1: int = 288, n_t2: int = 256,
                   margin: float = 0.35) -> SignalManifold:
    """Simulate and interpolate the fingerprint on a (log T1, log T2) grid.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence
    rank : int
        K, subspace coefficients kept (1 <= K <= L).
    t1_range_ms, t2_range_ms : tuple of float
        The box (ms) the fit may return; the table extends ``margin`` beyond it in ln T on each
        side so that the spline is accurate up to the box's edges.
    n_t1, n_t2 : int
        Table nodes per axis (>= 8). The defaults (3.2 % steps) simulate 73,728 atoms, every pair
        including T2 > T1 (the signal model is defined there too): about 2.5 s on the 2-core CPU.
    margin : float
        Extension of the table beyond the box, in ln T (> 0).

    Returns
    -------
    SignalManifold

    Explained in chapter 11, book/11_real_inputs.md.
    """
    from scipy.ndimage import spline_filter1d  # here, not at import: the command line only loads tables

    from mrfbook.physics.epg import check_sequence, simulate_fisp

    seq = check_sequence(sequence)
    n_t1 = check_int("n_t1", n_t1, 8)
    n_t2 = check_int("n_t2", n_t2, 8)
    rank = check_int("rank", rank, 1)
    if rank > seq.n_timepoints:
        raise ValueError(f"rank must be <= the sequence's {seq.n_timepoints} time points, got {rank}")
    for name, (lo, hi) in (("t1_range_ms", t1_range_ms), ("t2_range_ms", t2_range_ms)):
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"{name} must be (low, high) with 0 < low < high, got {(lo, hi)}")
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    log_t1 = np.linspace(np.log(t1_range_ms[0]) - margin, np.log(t1_range_ms[1]) + margin, n_t1)
    log_t2 = np.linspace(np.log(t2_range_ms[0]) - margin, np.log(t2_range_ms[1]) + margin, n_t2)
    uu, vv = np.meshgrid(log_t1, log_t2, indexing="ij")
    atoms = np.asarray(simulate_fisp(seq, np.exp(uu.ravel()), np.exp(vv.ravel()), dtype=np.float64))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(atoms, full_matrices=False)
    basis = vt[:rank].T.copy()
    basis *= np.where(basis[np.argmax(np.abs(basis), axis=0), np.arange(rank)] < 0, -1.0, 1.0)
    table = (atoms @ basis).reshape(n_t1, n_t2, rank)
    coef = spline_filter1d(spline_filter1d(table, order=3, axis=0, mode="mirror"), order=3, axis=1, mode="mirror")
    return SignalManifold(log_t1, log_t2, basis, np.ascontiguousarray(coef), (float(t1_range_ms[0]),
                          float(t1_range_ms[1])), (float(t2_range_ms[0]), float(t2_range_ms[1])), seq.digest)
