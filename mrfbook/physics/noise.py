"""Noise at a stated SNR: one definition for image stacks, k-space and single fingerprints.

``SNR_dB = 10 log10(P_signal / sigma**2)``, ``P_signal`` the mean of ``|s|**2`` over the
entries that receive noise and ``sigma**2`` the variance of circular complex white Gaussian
noise per entry (real and imaginary parts each ``sigma**2 / 2``). :func:`add_noise` measures
``P_signal`` over an array (an image stack or k-space); :func:`add_signature_noise` over each
fingerprint on its own.

Explained in chapter 5, book/05_undersampling.md (images, k-space) and chapter 10,
book/10_beyond.md (fingerprints).
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_noise", "add_signature_noise"]


def add_noise(data: np.ndarray, snr_db: float, seed: int | None = 0, *,
              mask: np.ndarray | None = None) -> np.ndarray:
    """Add circular complex white Gaussian noise at a stated SNR.

    Definition: ``SNR_dB = 10 log10(P_signal / sigma**2)`` where ``P_signal`` is the mean
    of ``|data|**2`` over the entries that receive noise and ``sigma**2 = E|n|**2`` is
    the noise variance per complex entry (real and imaginary parts independent, each of
    variance ``sigma**2 / 2``). By default noise goes on the non-zero entries of
    ``data`` -- for k-space from :meth:`UndersampledFourier.forward` these are the
    sampled locations; for an image stack, the tissue pixels. Pass ``mask`` (bool, same
    shape) to choose the entries explicitly (e.g. ``op.masks`` for k-space).

    Parameters
    ----------
    data : numpy.ndarray
        Complex (or real) array, k-space (L, H, W) or image stack (H, W, L).
    snr_db : float
        Target SNR in dB (finite).
    seed : int or None
        Seed of the ``numpy.random.default_rng`` (deterministic).
    mask : numpy.ndarray, optional
        bool, same shape as ``data``: where the noise is added and the power measured.

    Returns
    -------
    numpy.ndarray
        complex64 copy of ``data`` with noise.

    Explained in chapter 5, book/05_undersampling.md.
    """
    data = np.asarray(data)
    if not np.all(np.isfinite(data)):
        raise ValueError("data must be finite (found NaN or inf)")
    try:
        snr_db = float(snr_db)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db!r}") from exc
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db!r}")
    if mask is None:
        mask = data != 0
    else:
        mask = np.asarray(mask)
        if mask.shape != data.shape or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {data.shape}")
    out = data.astype(np.complex64, copy=True)
    n = int(mask.sum())
    if n == 0:
        return out
    power = float(np.mean(np.abs(out[mask].astype(np.complex128)) ** 2))
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * (sigma / np.sqrt(2.0))
    out[mask] += noise.astype(np.complex64)
    return out


def add_signature_noise(
    signatures: np.ndarray, snr_db: float | np.ndarray, rng: np.random.Generator | int | None = 0
) -> np.ndarray:
    """Circular complex white Gaussian noise at a stated SNR for every signature.

    Definition (that of :func:`mrfbook.physics.noise.add_noise`, applied to each row
    on its own): ``SNR_dB = 10 log10(mean_t |s_t|**2 / sigma**2)``, ``sigma**2`` the
    noise variance per complex time point, real and imaginary parts independent
    with variance ``sigma**2 / 2`` each. All-zero rows stay zero.

    Parameters
    ----------
    signatures : ndarray, (N, L), real or complex
        Clean signatures, any units.
    snr_db : float or ndarray (N,)
        SNR in dB, one for all rows or one per row; finite.
    rng : numpy.random.Generator, int or None
        Generator, or a seed for ``numpy.random.default_rng``.

    Returns
    -------
    ndarray, (N, L), complex64
        Noisy signatures.

    Explained in chapter 10, book/10_beyond.md.
    """
    s = np.asarray(signatures)
    if s.ndim != 2:
        raise ValueError(f"signatures must be a 2-D array (N, L), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("signatures must be finite (found NaN or inf)")
    snr = np.asarray(snr_db, dtype=np.float64)
    if snr.ndim > 1 or (snr.ndim == 1 and snr.shape != (s.shape[0],)) or not np.all(np.isfinite(snr)):
        raise ValueError(f"snr_db must be a finite number of dB or an array of shape ({s.shape[0]},), got {snr_db!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    power = np.mean(np.abs(s.astype(np.complex128)) ** 2, axis=1)
    sigma = np.sqrt(power / 10.0 ** (snr / 10.0)).astype(np.float32)
    scale = (sigma / np.float32(np.sqrt(2.0)))[:, None]
    noise_re = gen.standard_normal(s.shape, dtype=np.float32)
    noise_im = gen.standard_normal(s.shape, dtype=np.float32)
    out = s.astype(np.complex64, copy=True)
    out.real += noise_re * scale
    out.imag += noise_im * scale
    return out
