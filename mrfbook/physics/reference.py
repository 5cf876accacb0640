"""Apparent single-compartment parameters: the reference a single-compartment method can at best reach.

A pixel of :func:`mrfbook.physics.phantom.brain_phantom` or :func:`mrfbook.physics.phantom.head_phantom`
holds several tissues, and its signal is the spin-weighted *sum* of their fingerprints (slow
exchange). The phantom's maps ``t1_ms``, ``t2_ms``, ``pd`` are the spin-weighted *rate* mix (the
fast-exchange convention), which that sum does not follow: where CSF (long T1 and T2, large signal)
shares a pixel with tissue, the single fingerprint closest to the pixel's noiseless signal may lie
a thousand ms of T1 away from the rate mix. Scored against the rate mix, every single-compartment
method (dictionary matching, a network trained on single fingerprints) inherits that gap.

This module gives the other reference: the **apparent parameters** of a pixel, the (T1, T2, PD)
whose one fingerprint best fits its noiseless signal in the least-squares sense::

    (T1, T2, PD) = argmin || x - PD * s(T1, T2) ||^2       (continuous, not on a grid)

PD is eliminated in closed form (variable projection: ``PD = <s, x> / <s, s>``, so the fit
maximises the correlation ``|<x, s>| / (|x| |s|)``), and (T1, T2) are found by a vectorised,
damped Gauss-Newton (Levenberg-Marquardt) iteration in log T1, log T2, started from the best atom
of a small log-spaced grid. For a single-compartment pixel the apparent parameters are its own;
for a mixed pixel they are what a method fitting one fingerprint could at best return, and the
remaining misfit (correlation below 1) is what no single fingerprint explains. The rate-mix maps
remain in the phantom; :func:`apparent_reference` returns a copy of the phantom holding the
apparent maps instead.

Explained in chapter 4, book/04_matching.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from mrfbook.physics.epg import check_sequence, simulate_fisp
from mrfbook.physics.phantom import TissueMaps
from mrfbook.physics.sequence import FispSequence
from mrfbook.utils.checks import check_int, check_positive

__all__ = ["ApparentParameters", "apparent_parameters", "apparent_reference",
           "DEFAULT_T1_BOUNDS_MS", "DEFAULT_T2_BOUNDS_MS"]

#: Default search range of the apparent T1 (ms): wider than the dictionary grid (100-5000 ms),
#: so that a pixel dominated by an out-of-grid tissue gets its out-of-grid apparent value.
DEFAULT_T1_BOUNDS_MS: tuple[float, float] = (10.0, 8000.0)
#: Default search range of the apparent T2 (ms), also wider than the grid's (1-1991 ms); T2 <= T1 always.
DEFAULT_T2_BOUNDS_MS: tuple[float, float] = (0.1, 4000.0)

_GRID_N = 40  # initial-guess grid: 40 log-spaced T1 x 40 log-spaced T2 (T1 >= T2 kept)
_FD_STEP = 1e-4  # forward-difference step in log T1, log T2
_ZERO_SIGNAL = 1e-6  # a pixel with |x| <= this x the largest |x| is "no signal"
_REAL_TOL = 1e-6  # complex input whose imaginary part is <= this x max |x| counts as real
_COST_TOL = 1e-16  # an accepted step lowering 1 - correlation^2 by less than this ends the fit
_SCALE_FLOOR = 1e-6  # damping of a direction: at least this x that of the better-determined one
_LAMBDA0, _LAMBDA_UP, _LAMBDA_DOWN, _LAMBDA_MAX = 1e-3, 10.0, 3.0, 1e10


@dataclass
class ApparentParameters:
    """The single fingerprint that best fits each signature (see :func:`apparent_parameters`).

    Attributes
    ----------
    t1_ms, t2_ms : numpy.ndarray
        (N,) float64 apparent relaxation times in ms, within the fit's bounds (T2 <= T1); 0 for a
        signature without signal.
    pd : numpy.ndarray
        (N,) float64 least-squares scale of the fitted fingerprint (a fingerprint is simulated for
        PD = 1), ``|<x, s>| / <s, s>``; in the phantoms' PD units when ``x`` is a phantom's signal.
        0 for a signature without signal.
    correlation : numpy.ndarray
        (N,) float64 ``|<x, s>| / (|x| |s|)`` of the fit, in [0, 1]: 1 when one fingerprint explains
        the signature exactly; ``1 - correlation**2`` is the relative squared residual. 0 for a
        signature without signal.
    n_iter : int
        Levenberg-Marquardt iterations run (the most any signature needed, at most ``max_iter``).

    Explained in chapter 4, book/04_matching.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray
    correlation: np.ndarray
    n_iter: int


def _check_bounds(name: str, bounds: Any) -> tuple[float, float]:
    """``bounds`` as (low, high) floats with 0 < low < high < inf, else ValueError naming ``name``."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a pair (low, high) of numbers in ms, got {bounds!r}") from exc
    if not (np.isfinite(low) and np.isfinite(high) and 0.0 < low < high):
        raise ValueError(f"{name} must be (low, high) in ms with 0 < low < high, both finite; got {bounds!r}")
    return low, high


def _real_signatures(signatures: Any, n_time: int) -> tuple[np.ndarray, np.ndarray]:
    """(original (N, L) array, its (N, L) float64 real version to fit); validates shape and values."""
    x = np.asarray(signatures)
    if x.ndim != 2 or x.shape[1] != n_time:
        raise ValueError(f"signatures must have shape (N, L) with L = sequence.n_timepoints = {n_time}, "
                         f"got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.bool_)):
        raise ValueError(f"signatures must be a real or complex numeric array, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("signatures must be finite")
    if not np.iscomplexobj(x):
        return x, x.astype(np.float64)
    xc = x.astype(np.complex128)
    scale = float(np.abs(xc).max()) if xc.size else 0.0
    if float(np.abs(xc.imag).max(initial=0.0)) <= _REAL_TOL * scale:
        return x, xc.real.copy()
    # phase-align every signature: the phase phi maximising ||Re(x exp(-i phi))||, i.e. half the
    # angle of sum_t x_t^2; the fingerprints are real, so only that part can be fitted.
    phi = 0.5 * np.angle(np.sum(xc * xc, axis=1))
    return x, (xc * np.exp(-1j * phi)[:, None]).real


def _bounded(log_t1: np.ndarray, log_t2: np.ndarray, b1: tuple[float, float],
             b2: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Project (log T1, log T2) onto the bounds and T2 <= T1."""
    lt1 = np.clip(log_t1, b1[0], b1[1])
    lt2 = np.clip(log_t2, b2[0], np.minimum(b2[1], lt1))
    return lt1, lt2


def _unit_fingerprints(sequence: FispSequence, log_t1: np.ndarray, log_t2: np.ndarray) -> np.ndarray:
    """(n, L) float64 fingerprints of (exp(log_t1), exp(log_t2)), each scaled to unit norm."""
    s = simulate_fisp(sequence, np.exp(log_t1), np.exp(log_t2), dtype=np.float64)
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    return s / np.where(norm > 0, norm, 1.0)


def _residual(u: np.ndarray, s_hat: np.ndarray) -> np.ndarray:
    """Variable-projection residual ``u - <s_hat, u> s_hat`` of unit signatures u, (n, L)."""
    return u - np.einsum("nl,nl->n", s_hat, u)[:, None] * s_hat


@lru_cache(maxsize=8)
def _grid(sequence: FispSequence, b1: tuple[float, float], b2: tuple[float, float]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The initial-guess grid: (log T1 (M,), log T2 (M,), unit fingerprints (M, L)), T2 <= T1."""
    a1 = np.linspace(b1[0], b1[1], _GRID_N)
    a2 = np.linspace(b2[0], b2[1], _GRID_N)
    g1, g2 = np.meshgrid(a1, a2, indexing="ij")
    keep = g2 <= g1
    g1, g2 = g1[keep], g2[keep]
    return g1, g2, _unit_fingerprints(sequence, g1, g2)


def apparent_parameters(
    signatures: Any,
    sequence: FispSequence,
    *,
    t1_bounds_ms: tuple[float, float] = DEFAULT_T1_BOUNDS_MS,
    t2_bounds_ms: tuple[float, float] = DEFAULT_T2_BOUNDS_MS,
    max_iter: int = 30,
    tol: float = 1e-6,
) -> ApparentParameters:
    """The (T1, T2, PD) whose single fingerprint best fits each signature (least squares, continuous).

    Minimises ``|| x - PD * s(T1, T2) ||^2`` for every signature ``x`` at once, where ``s`` is the
    EPG fingerprint (:func:`mrfbook.physics.epg.simulate_fisp`, PD = 1, float64):

    1. PD is eliminated in closed form (variable projection): ``PD = <s, x> / <s, s>``, and the
       residual of the unit signature ``u = x / |x|`` is ``r = u - <s^, u> s^`` with
       ``s^ = s / |s|``, so ``|r|^2 = 1 - correlation^2``;
    2. initial guess: the best-correlated atom of a grid of 40 log-spaced T1 x 40 log-spaced T2
       values over the bounds (T1 >= T2 kept; simulated once per sequence and bounds, cached);
    3. Levenberg-Marquardt in (log T1, log T2), vectorised over all signatures still iterating:
       the Jacobian of ``r`` by forward differences (step 1e-4 in log space: fingerprints of
       (T1, T2), (T1 e^1e-4, T2), (T1, T2 e^1e-4) for every signature), the step
       ``(J^T J + lambda diag(J^T J)) d = -J^T r`` with a damping ``lambda`` per signature
       (divided by 3 when the step lowers ``|r|^2``, multiplied by 10 and the step retried
       otherwise), the new point projected onto the bounds and T2 <= T1. A signature stops when
       an accepted step changes log T1 and log T2 by less than ``tol`` (a relative change), when
       no step can lower ``|r|^2`` any more (``lambda`` above 1e10, or a rejected step smaller
       than ``tol``), or after ``max_iter`` iterations. Only steps that lower ``|r|^2`` are
       taken, so the fit is never worse than the grid's best atom.

    Each iteration costs three EPG simulations per signature still iterating; the 6,212 tissue
    pixels of the brain phantom at 128 x 128 (200 time points) take about 1 s on two cores
    (15 iterations; the head phantom's 7,420 about 2 s).

    T2 far below TR is not identifiable: the transverse magnetisation then dies within each
    repetition and the fingerprint's *shape* stops depending on T2, only its scale
    ``exp(-TE / T2)`` does (with the paper's sequence, TR >= 11.5 ms, TE 2 ms: fingerprints of
    T2 = 0.1, 0.5 and 1 ms agree to 1 - correlation < 1e-16, T2 = 2 ms to 2e-12). There the
    correlation is 1 along a valley of (T2, PD), the fit stops somewhere in it (T2 below about
    2 ms), and the apparent T2 and PD of such a signature are not values of the tissue; its
    apparent T1 still is.

    Parameters
    ----------
    signatures : array_like
        (N, L) real or complex signatures (any scale; PD is fitted). Complex input whose
        imaginary part is at most 1e-6 of the largest magnitude (the simulated stacks, whose
        imaginary part is 0) is fitted through its real part; otherwise each signature is first
        rotated by the phase ``phi = angle(sum_t x_t^2) / 2`` that makes it as real as possible,
        and its real part is fitted (the fingerprints are real). ``correlation`` and ``pd`` are
        always measured on the signature as given: ``|<x, s>| / (|x| |s|)``, ``|<x, s>| / <s, s>``.
    sequence : mrfbook.physics.sequence.FispSequence
        The FISP schedule of the signatures (L time points).
    t1_bounds_ms, t2_bounds_ms : tuple of float
        (low, high) search range of T1 and of T2 in ms, 0 < low < high; T2 <= T1 is imposed too.
        Defaults (10, 8000) and (0.1, 4000): wider than the dictionary grid, so that a pixel
        dominated by an out-of-grid tissue shows it.
    max_iter : int
        Largest number of Levenberg-Marquardt iterations, >= 1.
    tol : float
        Convergence threshold on the change of log T1 and log T2 per step (relative change), > 0.

    Returns
    -------
    ApparentParameters
        (N,) float64 ``t1_ms``, ``t2_ms`` (ms), ``pd`` and ``correlation``; all four are 0 for a
        signature without signal (norm at most 1e-6 of the largest signature's, or all zero).

    Raises
    ------
    ValueError
        Naming the parameter: ``signatures`` not (N, L) with ``L = sequence.n_timepoints``, not
        numeric or not finite; ``sequence`` not a FispSequence; bounds not a pair with
        0 < low < high, or ``t2_bounds_ms`` starting above ``t1_bounds_ms``'s end; ``max_iter``
        not an integer >= 1; ``tol`` not a positive number.

    Explained in chapter 4, book/04_matching.md.
    """
    seq = check_sequence(sequence)
    b1 = _check_bounds("t1_bounds_ms", t1_bounds_ms)
    b2 = _check_bounds("t2_bounds_ms", t2_bounds_ms)
    if b2[0] > b1[1]:
        raise ValueError(f"t2_bounds_ms must start at or below the end of t1_bounds_ms (T2 <= T1); "
                         f"got t2_bounds_ms={t2_bounds_ms!r}, t1_bounds_ms={t1_bounds_ms!r}")
    max_iter = check_int("max_iter", max_iter, 1)
    tol = check_positive("tol", tol)
    x_given, x = _real_signatures(signatures, seq.n_timepoints)
    n = x.shape[0]
    t1 = np.zeros(n)
    t2 = np.zeros(n)
    pd = np.zeros(n)
    corr = np.zeros(n)
    norms = np.linalg.norm(x, axis=1)
    largest = float(norms.max(initial=0.0))
    live = np.flatnonzero(norms > _ZERO_SIGNAL * largest) if largest > 0 else np.zeros(0, dtype=np.int64)
    if live.size == 0:
        return ApparentParameters(t1, t2, pd, corr, 0)
    lb1 = (float(np.log(b1[0])), float(np.log(b1[1])))
    lb2 = (float(np.log(b2[0])), float(np.log(b2[1])))
    u = x[live] / norms[live, None]

    # (2) initial guess: best atom of the coarse grid
    g1, g2, atoms = _grid(seq, lb1, lb2)
    best = np.argmax(np.abs(u @ atoms.T), axis=1)
    lt1, lt2 = g1[best].copy(), g2[best].copy()
    s_hat = atoms[best]
    r = _residual(u, s_hat)
    cost = np.einsum("nl,nl->n", r, r)

    # (3) Levenberg-Marquardt on the pixels still iterating
    lam = np.full(live.size, _LAMBDA0)
    active = np.ones(live.size, dtype=bool)
    need_jac = np.ones(live.size, dtype=bool)
    jac = np.zeros((live.size, 2, 2))  # J^T J
    grad = np.zeros((live.size, 2))  # J^T r
    n_iter = 0
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        n_iter += 1
        fresh = idx[need_jac[idx]]
        if fresh.size:
            r0 = r[fresh]
            j1 = (_residual(u[fresh], _unit_fingerprints(seq, lt1[fresh] + _FD_STEP, lt2[fresh])) - r0) / _FD_STEP
            j2 = (_residual(u[fresh], _unit_fingerprints(seq, lt1[fresh], lt2[fresh] + _FD_STEP)) - r0) / _FD_STEP
            a11 = np.einsum("nl,nl->n", j1, j1)
            a12 = np.einsum("nl,nl->n", j1, j2)
            a22 = np.einsum("nl,nl->n", j2, j2)
            jac[fresh] = np.stack([np.stack([a11, a12], -1), np.stack([a12, a22], -1)], 1)
            grad[fresh] = np.stack([np.einsum("nl,nl->n", j1, r0), np.einsum("nl,nl->n", j2, r0)], -1)
            need_jac[fresh] = False
        a = jac[idx]
        g = grad[idx]
        # Marquardt's scaling diag(J^T J), floored at a fraction of its larger entry so that a
        # direction the fingerprint hardly depends on (T2 far below TR) is damped as well
        floor = _SCALE_FLOOR * np.maximum(a[:, 0, 0], a[:, 1, 1]) + 1e-30
        d11 = a[:, 0, 0] + lam[idx] * np.maximum(a[:, 0, 0], floor)
        d22 = a[:, 1, 1] + lam[idx] * np.maximum(a[:, 1, 1], floor)
        d12 = a[:, 0, 1]
        det = d11 * d22 - d12 * d12
        step1 = -(d22 * g[:, 0] - d12 * g[:, 1]) / det
        step2 = -(d11 * g[:, 1] - d12 * g[:, 0]) / det
        new1, new2 = _bounded(lt1[idx] + step1, lt2[idx] + step2, lb1, lb2)
        moved = np.maximum(np.abs(new1 - lt1[idx]), np.abs(new2 - lt2[idx]))
        s_new = _unit_fingerprints(seq, new1, new2)
        r_new = _residual(u[idx], s_new)
        cost_new = np.einsum("nl,nl->n", r_new, r_new)
        gain = cost[idx] - cost_new
        ok = gain > 0
        acc = idx[ok]
        lt1[acc], lt2[acc] = new1[ok], new2[ok]
        s_hat[acc], r[acc], cost[acc] = s_new[ok], r_new[ok], cost_new[ok]
        lam[acc] = np.maximum(lam[acc] / _LAMBDA_DOWN, 1e-12)
        need_jac[acc] = True
        rej = idx[~ok]
        lam[rej] *= _LAMBDA_UP
        # converged: a small step (taken or not: a rejected tiny step cannot improve further), or
        # damping so strong that no step helps any more
        done = (moved < tol) | (~ok & (lam[idx] > _LAMBDA_MAX)) | (ok & (gain < _COST_TOL))
        active[idx[done]] = False

    t1[live], t2[live] = np.exp(lt1), np.exp(lt2)
    # correlation and PD measured on the signatures as given (complex ones included)
    s = simulate_fisp(seq, t1[live], t2[live], dtype=np.float64)
    xg = np.asarray(x_given)[live]
    xg = xg.astype(np.complex128 if np.iscomplexobj(xg) else np.float64)
    inner = np.abs(np.einsum("nl,nl->n", np.conj(xg) if np.iscomplexobj(xg) else xg, s))
    s_norm2 = np.einsum("nl,nl->n", s, s)
    pd[live] = inner / s_norm2
    corr[live] = np.clip(inner / (np.linalg.norm(xg, axis=1) * np.sqrt(s_norm2)), 0.0, 1.0)
    return ApparentParameters(t1, t2, pd, corr, n_iter)


def _compartment_signals(phantom: TissueMaps, sequence: FispSequence) -> np.ndarray:
    """(n_tissue, L) float64 noiseless signal of the mask's pixels (row-major): sum_k w_k s(T1_k, T2_k)."""
    comp = phantom.compartments
    mask = np.asarray(phantom.tissue_mask, dtype=bool)
    weight = comp.weight[:, mask]  # (K, n)
    c_t1, c_t2 = comp.t1_ms[:, mask], comp.t2_ms[:, mask]
    on = weight > 0
    if np.any(on & ~((c_t1 > 0) & (c_t2 > 0) & np.isfinite(c_t1) & np.isfinite(c_t2))):
        raise ValueError("phantom.compartments must have finite T1 > 0 and T2 > 0 wherever their weight is positive")
    if np.any(weight < 0) or not np.all(np.isfinite(weight)):
        raise ValueError("phantom.compartments.weight must be finite and >= 0")
    kk, pix = np.nonzero(on)
    params = np.stack([c_t1[kk, pix], c_t2[kk, pix]], axis=1)
    out = np.zeros((int(mask.sum()), sequence.n_timepoints))
    if params.shape[0] == 0:
        return out
    unique, inverse = np.unique(params, axis=0, return_inverse=True)
    sig = simulate_fisp(sequence, unique[:, 0], unique[:, 1], dtype=np.float64)
    np.add.at(out, pix, weight[kk, pix][:, None] * sig[inverse.reshape(-1)])
    return out


def apparent_reference(phantom: TissueMaps, sequence: FispSequence, **kwargs: Any) -> TissueMaps:
    """The phantom with its reference maps replaced by the apparent single-compartment parameters.

    The reference a single-compartment method can at best reach; the rate-mix maps remain in the
    phantom (this returns a new :class:`~mrfbook.physics.phantom.TissueMaps`, the input is not
    changed). Every tissue pixel's noiseless signal is simulated as
    :func:`mrfbook.recon.acquisition.image_stack` simulates it, ``sum_k weight[k] *
    fingerprint(t1_ms[k], t2_ms[k])`` over the phantom's compartments (in float64, not cast to
    complex64; distinct (T1, T2) simulated once), and fitted with :func:`apparent_parameters`:
    ``t1_ms``, ``t2_ms`` and ``pd`` of the result are the apparent T1 (ms), T2 (ms) and PD
    (least-squares scale) inside ``tissue_mask`` and 0 outside; mask, labels, label names and
    compartments are those of ``phantom``. The fit's correlation is not kept: call
    :func:`apparent_parameters` for it.

    A phantom without compartments (one tissue per pixel, e.g. :func:`brain_phantom` with
    ``partial_volume="rates"`` or the Shepp-Logan phantom) is returned as a copy with the same
    maps: a single-compartment pixel's apparent parameters are its own.

    Parameters
    ----------
    phantom : mrfbook.physics.phantom.TissueMaps
        The phantom; (H, W) maps, optionally ``compartments`` with (K, H, W) arrays.
    sequence : mrfbook.physics.sequence.FispSequence
        The FISP schedule (the apparent parameters depend on it).
    **kwargs
        Passed to :func:`apparent_parameters` (``t1_bounds_ms``, ``t2_bounds_ms``, ``max_iter``, ``tol``).

    Returns
    -------
    TissueMaps
        (H, W) float64 ``t1_ms``, ``t2_ms`` (ms) and ``pd``: the apparent values inside
        ``tissue_mask``, 0 outside.

    Raises
    ------
    ValueError
        If ``phantom`` is not a TissueMaps, ``sequence`` not a FispSequence, the compartments have
        a negative or non-finite weight or a non-positive T1 or T2 where their weight is positive,
        or as :func:`apparent_parameters` for bad keyword arguments.

    Explained in chapter 4, book/04_matching.md.
    """
    if not isinstance(phantom, TissueMaps):
        raise ValueError(f"phantom must be a mrfbook.physics.phantom.TissueMaps, got {type(phantom)!r}")
    seq = check_sequence(sequence)
    if phantom.compartments is None:
        return replace(phantom, t1_ms=np.array(phantom.t1_ms, dtype=np.float64, copy=True),
                       t2_ms=np.array(phantom.t2_ms, dtype=np.float64, copy=True),
                       pd=np.array(phantom.pd, dtype=np.float64, copy=True))
    mask = np.asarray(phantom.tissue_mask, dtype=bool)
    fit = apparent_parameters(_compartment_signals(phantom, seq), seq, **kwargs)
    maps = []
    for values in (fit.t1_ms, fit.t2_ms, fit.pd):
        m = np.zeros(mask.shape)
        m[mask] = values
        maps.append(m)
    return replace(phantom, t1_ms=maps[0], t2_ms=maps[1], pd=maps[2])
