"""Error metrics for parameter maps (T1, T2, PD), all mask-aware.

Conventions: ``estimate`` and ``reference`` are arrays of the same shape (any
number of dimensions); ``mask`` (bool, same shape) selects the pixels that count,
``None`` meaning every pixel. Our SNR puts the *reference* in the numerator and
is computed over the tissue mask; :func:`paper_snr_db` reproduces the definition
in the authors' code (estimate in the numerator, all pixels, background included)
so both can be reported side by side.

Explained in chapter 4, book/04_matching.md.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["rmse", "nrmse", "r2", "snr_db", "psnr_db", "paper_snr_db", "summarise", "parameter_scores",
           "PARAMETER_SCORES"]


def _pair(estimate, reference, mask) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {est.shape} must equal reference shape {ref.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(f"mask must be a bool array, got dtype {m.dtype}")
        if m.shape != ref.shape:
            raise ValueError(f"mask shape {m.shape} must equal reference shape {ref.shape}")
        est, ref = est[m], ref[m]
    est, ref = est.ravel(), ref.ravel()
    if est.size == 0:
        raise ValueError("mask selects no pixels (need at least one)")
    if not (np.all(np.isfinite(est)) and np.all(np.isfinite(ref))):
        raise ValueError("estimate and reference must be finite over the mask")
    return est, ref


def rmse(estimate, reference, mask=None) -> float:
    """Root-mean-square error, ``sqrt(mean((e - r)^2))`` over the mask (units of the input)."""
    e, r = _pair(estimate, reference, mask)
    return float(np.sqrt(np.mean((e - r) ** 2)))


def nrmse(estimate, reference, mask=None) -> float:
    """Normalised RMSE, ``RMSE / RMS(r) = sqrt(sum (e - r)^2 / sum r^2)`` over the mask (unitless)."""
    e, r = _pair(estimate, reference, mask)
    den = np.sqrt(np.mean(r**2))
    if den == 0:
        raise ValueError("reference is zero over the mask; nrmse is undefined")
    return float(np.sqrt(np.mean((e - r) ** 2)) / den)


def r2(estimate, reference, mask=None) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    ``SS_res = sum (r - e)^2`` and ``SS_tot = sum (r - mean(r))^2`` over the mask.
    1 is perfect; it can be negative for an estimate worse than the mean.
    """
    e, r = _pair(estimate, reference, mask)
    ss_tot = np.sum((r - r.mean()) ** 2)
    if ss_tot == 0:
        raise ValueError("reference is constant over the mask; r2 is undefined")
    return float(1.0 - np.sum((r - e) ** 2) / ss_tot)


def snr_db(estimate, reference, mask=None) -> float:
    """Our SNR in dB: ``20 log10( RMS(r) / RMSE(e, r) )`` over the mask.

    ``RMS(r) = sqrt(mean(r^2))``. Returns ``inf`` for a perfect estimate.
    """
    e, r = _pair(estimate, reference, mask)
    err = np.sqrt(np.mean((e - r) ** 2))
    return float("inf") if err == 0 else float(20.0 * np.log10(np.sqrt(np.mean(r**2)) / err))


def psnr_db(estimate, reference, mask=None, *, peak: float) -> float:
    """Peak SNR in dB: ``20 log10( peak / RMSE(e, r) )`` over the mask.

    ``peak`` (> 0, units of the input) e.g. 5000 ms for T1 and 2000 ms for T2
    (the dictionary range), as in the authors' synthetic tests.
    """
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError(f"peak must be a finite number > 0, got {peak}")
    e, r = _pair(estimate, reference, mask)
    err = np.sqrt(np.mean((e - r) ** 2))
    return float("inf") if err == 0 else float(20.0 * np.log10(peak / err))


def paper_snr_db(estimate, reference, mask=None) -> float:
    """SNR as computed in the authors' code: ``20 log10( RMS(e) / RMSE(e, r) )``.

    The *estimate* is in the numerator; they evaluate it over all pixels
    (``mask=None``), background included.
    """
    e, r = _pair(estimate, reference, mask)
    err = np.sqrt(np.mean((e - r) ** 2))
    return float("inf") if err == 0 else float(20.0 * np.log10(np.sqrt(np.mean(e**2)) / err))


def summarise(estimate, reference, mask=None, *, peak: float | None = None) -> dict[str, float]:
    """All metrics in one dict (for tables).

    Keys: ``rmse``, ``nrmse``, ``r2``, ``snr_db`` (over ``mask``), ``psnr_db`` (if
    ``peak`` is given), ``paper_snr_db`` and ``paper_rmse`` (all pixels, as in the
    authors' code).
    """
    out = {
        "rmse": rmse(estimate, reference, mask),
        "nrmse": nrmse(estimate, reference, mask),
        "r2": r2(estimate, reference, mask),
        "snr_db": snr_db(estimate, reference, mask),
    }
    if peak is not None:
        out["psnr_db"] = psnr_db(estimate, reference, mask, peak=peak)
    out["paper_snr_db"] = paper_snr_db(estimate, reference)
    out["paper_rmse"] = rmse(estimate, reference)
    return out


#: The per-parameter scores :func:`parameter_scores` knows, with the unit suffix of their keys.
PARAMETER_SCORES: dict[str, str] = {"rmse": "_ms", "mae": "_ms", "max_abs": "_ms", "r2": ""}


def parameter_scores(estimate_ms, t1_ms, t2_ms, mask=None, *,
                     scores: Sequence[str] = ("rmse", "mae", "max_abs", "r2")) -> dict[str, float]:
    """Accuracy of estimated (T1, T2) against the true values, parameter by parameter.

    The one place the per-parameter scores of the book are computed: the synthetic tests of
    chapters 7 and 8 and the studies of chapter 10 all call it.

    Parameters
    ----------
    estimate_ms : array_like
        (N, 2) estimated [T1, T2] in ms (any float dtype, finite over ``mask``).
    t1_ms, t2_ms : array_like
        (N,) true T1 and T2 in ms.
    mask : array_like, optional
        (N,) bool, the rows that count; None for all.
    scores : sequence of str
        Which scores, in this order, from ``"rmse"`` (root-mean-square error, ms), ``"mae"``
        (mean absolute error, ms), ``"max_abs"`` (largest absolute error, ms) and ``"r2"``
        (:func:`r2`, unitless).

    Returns
    -------
    dict
        Python floats, T1's scores first, then T2's, each in the order of ``scores``, keyed
        ``t1_rmse_ms``, ``t1_mae_ms``, ``t1_max_abs_ms``, ``t1_r2`` (and ``t2_...``).

    Explained in chapter 7, book/07_training.md.
    """
    unknown = [name for name in scores if name not in PARAMETER_SCORES]
    if unknown or not scores:
        raise ValueError(f"scores must be a non-empty sequence of {sorted(PARAMETER_SCORES)}, got {scores!r}")
    est = np.asarray(estimate_ms, dtype=np.float64)
    refs = (np.asarray(t1_ms, dtype=np.float64), np.asarray(t2_ms, dtype=np.float64))
    if refs[0].ndim != 1 or refs[0].shape != refs[1].shape:
        raise ValueError(f"t1_ms and t2_ms must be 1-D arrays of the same length, "
                         f"got shapes {refs[0].shape} and {refs[1].shape}")
    n = refs[0].size
    if est.shape != (n, 2):
        raise ValueError(f"estimate_ms must have shape (N, 2) = ({n}, 2) (T1, T2 in ms), got {est.shape}")
    out: dict[str, float] = {}
    for j, (key, ref) in enumerate(zip(("t1", "t2"), refs)):
        e, r = _pair(est[:, j], ref, mask)
        for name in scores:
            if name == "rmse":
                value = rmse(e, r)
            elif name == "mae":
                value = np.mean(np.abs(e - r))
            elif name == "max_abs":
                value = np.max(np.abs(e - r))
            else:
                value = r2(e, r)
            out[f"{key}_{name}{PARAMETER_SCORES[name]}"] = float(value)
    return out
