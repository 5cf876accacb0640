"""Noise at a stated SNR, and the one rule that says which signatures can be resolved.

**Adding noise: the book's one definition, at the image.** A scanner adds thermal noise of one
level to every sample, whatever the tissue. The book states it as an image SNR:
``SNR_dB = 10 log10(P_image / sigma**2)``, ``P_image`` the mean of ``|x|**2`` of the noiseless
image stack over the tissue pixels and all frames, ``sigma**2`` the variance of circular complex
white Gaussian noise per pixel and frame (real and imaginary parts each ``sigma**2 / 2``), the
same ``sigma`` for every pixel. :func:`image_noise_sigma` turns an image SNR into ``sigma``;
:func:`add_white_noise` adds noise of a given ``sigma`` to an image stack or to k-space (the
centred unitary FFT of :mod:`mrfbook.recon.acquisition` keeps ``sigma`` per sample, so noise
of image SNR ``x`` dB added to k-space is noise of image SNR ``x`` dB in the image).
:func:`add_noise` measures ``P_signal`` over the array it is given (for an image stack with the
tissue pixels as ``mask``, the image SNR); :func:`add_signature_noise` over each fingerprint on
its own (a per-fingerprint SNR, used to augment training data, not to model a scan).

**What can be resolved.** :func:`resolvable` is the rule that dictionary matching
(:mod:`mrfbook.recon.matching`), the network (:mod:`mrfbook.nn.inference`), volumes
(:mod:`mrfbook.analysis.volumes`) and ``python -m mrfbook map`` all apply before they map a
signature: its norm must exceed ``min_snr x level x sqrt(L)`` (default ``min_snr`` = 3), ``level``
the per-sample noise measured outside the signals' temporal subspace (:func:`noise_level`) or an
external error estimate (a restoration's), whichever is larger; plus a round-off guard (norm >
``ZERO_TOL`` = 1e-6 x the largest). Signatures that fail it hold 0 in every map and are counted.

Explained in chapter 5, book/05_undersampling.md (images, k-space), chapter 4,
book/04_matching.md (the resolvability rule) and chapter 10, book/10_beyond.md (fingerprints).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrfbook.utils.checks import check_nonnegative

__all__ = ["add_noise", "add_signature_noise", "add_white_noise", "image_noise_sigma"]


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
    snr_db = _check_snr_db(snr_db)
    if mask is None:
        mask = data != 0
    else:
        mask = np.asarray(mask)
        if mask.shape != data.shape or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {data.shape}")
    if not mask.any():
        return data.astype(np.complex64, copy=True)
    # power of the complex64 values the noise is added to (as the output holds them)
    power = float(np.mean(np.abs(data[mask].astype(np.complex64).astype(np.complex128)) ** 2))
    return add_white_noise(data, np.sqrt(power / 10.0 ** (snr_db / 10.0)), seed, mask=mask)


def image_noise_sigma(images: np.ndarray, snr_db: float, mask: np.ndarray | None = None) -> float:
    """Noise level ``sigma`` of a stated image SNR (the book's one noise definition, module docstring).

    Parameters
    ----------
    images : numpy.ndarray
        (H, W, L) noiseless image stack, real or complex, any units.
    snr_db : float
        Image SNR in dB (finite): ``10 log10(P_image / sigma**2)``.
    mask : numpy.ndarray, optional
        (H, W) bool, the tissue pixels over which ``P_image`` (mean ``|x|**2`` over those
        pixels and all frames) is measured; default the pixels whose time course is not all 0.

    Returns
    -------
    float
        ``sigma``: the standard deviation of the complex noise per pixel and frame
        (``E|n|**2 = sigma**2``), in the units of ``images``.

    Raises
    ------
    ValueError
        ``images`` not 3-D or not finite, ``snr_db`` not finite, ``mask`` not an (H, W) bool
        array, or no pixel to measure.

    Explained in chapter 5, book/05_undersampling.md.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"images must be an (H, W, L) stack, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images must be finite (found NaN or inf)")
    snr_db = _check_snr_db(snr_db)
    if mask is None:
        mask = np.any(x != 0, axis=2)
    else:
        mask = np.asarray(mask)
        if mask.shape != x.shape[:2] or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {x.shape[:2]}, got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("no pixel to measure the image power on (mask empty or images all 0)")
    power = float(np.mean(np.abs(x[mask].astype(np.complex128)) ** 2))
    return float(np.sqrt(power / 10.0 ** (snr_db / 10.0)))


def add_white_noise(data: np.ndarray, sigma: float, seed: int | None = 0, *,
                    mask: np.ndarray | None = None) -> np.ndarray:
    """Add circular complex white Gaussian noise of standard deviation ``sigma`` per entry.

    Parameters
    ----------
    data : numpy.ndarray
        Image stack (H, W, L) or k-space (L, H, W), real or complex, finite.
    sigma : float
        Noise level (>= 0, the units of ``data``): ``E|n|**2 = sigma**2``, real and imaginary
        parts each of variance ``sigma**2 / 2``; from :func:`image_noise_sigma` for a stated
        image SNR.
    seed : int or None
        Seed of the ``numpy.random.default_rng``.
    mask : numpy.ndarray, optional
        bool, same shape as ``data``: the entries that receive noise (for k-space, ``op.masks``:
        only measured samples carry noise). Default every entry.

    Returns
    -------
    numpy.ndarray
        complex64 copy of ``data`` with noise.

    Explained in chapter 5, book/05_undersampling.md.
    """
    data = np.asarray(data)
    if not np.all(np.isfinite(data)):
        raise ValueError("data must be finite (found NaN or inf)")
    sigma = check_nonnegative("sigma", sigma)
    if mask is None:
        mask = np.ones(data.shape, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != data.shape or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {data.shape}")
    out = data.astype(np.complex64, copy=True)
    n = int(mask.sum())
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * (sigma / np.sqrt(2.0))
    out[mask] += noise.astype(np.complex64)
    return out


def _check_snr_db(snr_db: Any) -> float:
    try:
        value = float(snr_db)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db!r}") from exc
    if not np.isfinite(value):
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db!r}")
    return value


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


# ----------------------------------------------------------------------------- resolvability
#
# One rule decides which signatures can be resolved (matching, the network, volumes and the
# command line all call :func:`resolvable`).


#: Round-off guard: a signature whose L2 norm is <= ZERO_TOL x the largest norm considered is
#: numerically zero (a guard only; the rule itself is :func:`resolvable`).
ZERO_TOL = 1e-6
#: Default of ``min_snr``: a signature is resolved only if its norm exceeds 3 x the noise's
#: expected norm ``level x sqrt(L)`` (see :func:`resolvable` for the reasons).
DEFAULT_MIN_SNR = 3.0
#: Energy share of the atoms that the noise subspace keeps (the atoms are then represented to
#: about 1e-6 of their norm, near float32 precision); at most L // 2 components are kept.
SUBSPACE_ENERGY = 1.0 - 1e-12
#: Log-spaced (T1, T2) grid of :func:`sequence_subspace`: T1 and T2 ranges in ms, points per axis.
SEQUENCE_GRID_T1_MS = (1.0, 6000.0)
SEQUENCE_GRID_T2_MS = (0.3, 3000.0)
SEQUENCE_GRID_POINTS = 48
_ROWS = 8192

__all__ += [
    "ZERO_TOL",
    "DEFAULT_MIN_SNR",
    "SUBSPACE_ENERGY",
    "Resolvability",
    "signature_norms",
    "noise_subspace",
    "dictionary_subspace",
    "sequence_subspace",
    "outside_energy",
    "noise_level_from_energy",
    "noise_level",
    "resolvable",
    "check_min_snr",
]


def _as_signatures(signatures) -> np.ndarray:
    x = np.asarray(signatures)
    if x.ndim != 2:
        raise ValueError(f"signatures must be a 2-D array (N, L), got shape {x.shape}")
    if x.dtype.kind not in "iufc":
        raise ValueError(f"signatures must be real or complex numbers, got dtype {x.dtype}")
    return x


def _wide(block: np.ndarray) -> np.ndarray:
    return block.astype(np.complex128 if np.iscomplexobj(block) else np.float64, copy=False)


def signature_norms(signatures: np.ndarray) -> np.ndarray:
    """L2 norm of every signature, computed in float64.

    Parameters
    ----------
    signatures : numpy.ndarray
        (N, L) real or complex, any units.

    Returns
    -------
    numpy.ndarray
        (N,) float64 ``||x_i||`` in the signatures' units.

    Explained in chapter 4, book/04_matching.md.
    """
    x = _as_signatures(signatures)
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _ROWS):
        block = _wide(x[start:start + _ROWS])
        out[start:start + _ROWS] = np.sqrt(np.sum(block.real ** 2 + (block.imag ** 2 if np.iscomplexobj(block) else 0.0),
                                                  axis=1))
    return out


def _check_basis(basis, n_timepoints: int) -> np.ndarray | None:
    if basis is None:
        return None
    b = np.asarray(basis)
    if b.ndim != 2 or b.shape[0] != n_timepoints or not 1 <= b.shape[1] < n_timepoints:
        raise ValueError(f"basis must be an (L, k) array with L = {n_timepoints} and 1 <= k < L (some dimensions "
                         f"must stay outside the subspace to measure the noise), got shape {b.shape}")
    if b.dtype.kind not in "fc" or not np.all(np.isfinite(b)):
        raise ValueError("basis must hold finite real or complex numbers")
    return b.astype(np.complex128 if np.iscomplexobj(b) else np.float64, copy=False)


def outside_energy(signatures: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Energy of every signature outside a subspace: ``||x_i - B B^H x_i||^2``.

    Parameters
    ----------
    signatures : numpy.ndarray
        (N, L) real or complex, any units.
    basis : numpy.ndarray
        (L, k) orthonormal columns, 1 <= k < L.

    Returns
    -------
    numpy.ndarray
        (N,) float64, in the signatures' units squared (computed in float64, row block by row block).

    Explained in chapter 4, book/04_matching.md.
    """
    x = _as_signatures(signatures)
    b = _check_basis(basis, x.shape[1])
    if b is None:
        raise ValueError("basis must be an (L, k) array, got None")
    return _outside_energy(x, b)


def _outside_energy(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    bh = basis.conj()
    for start in range(0, x.shape[0], _ROWS):
        block = _wide(x[start:start + _ROWS])
        coeff = block @ bh  # (n, k): B^H x for each row
        rest = block - coeff @ basis.T
        out[start:start + _ROWS] = np.sum(rest.real ** 2 + (rest.imag ** 2 if np.iscomplexobj(rest) else 0.0), axis=1)
    return out


def noise_subspace(atoms: np.ndarray, *, energy: float = SUBSPACE_ENERGY) -> np.ndarray:
    """Orthonormal temporal basis of the signals, for measuring the noise outside it.

    The leading right singular vectors of the unit-norm atoms
    (:func:`mrfbook.physics.compression.svd_basis`), as many as keep ``energy`` of their energy,
    at most ``L // 2`` (so that at least half of the dimensions remain to measure the noise).

    Parameters
    ----------
    atoms : numpy.ndarray
        (K, L) real or complex signatures of the sequence (any scale; each row is normalised).
    energy : float
        Energy share in (0, 1] to keep (default :data:`SUBSPACE_ENERGY` = 1 - 1e-12).

    Returns
    -------
    numpy.ndarray
        (L, k) float64 (complex128 for complex atoms), orthonormal columns, ``1 <= k <= L // 2``.

    Explained in chapter 4, book/04_matching.md.
    """
    from mrfbook.physics.compression import svd_basis

    a = np.asarray(atoms)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"atoms must be a (K, L) array with L >= 2, got shape {a.shape}")
    norms = signature_norms(a)
    if not np.any(norms > 0):
        raise ValueError("atoms are all zero: no signal subspace")
    unit = _wide(a[norms > 0]) / norms[norms > 0, None]
    full = svd_basis(unit, energy=float(energy))
    k = max(1, min(full.rank, a.shape[1] // 2))
    # svd_basis returns float32; re-orthonormalise in float64 so that B^H B = I to float64 precision
    q, _ = np.linalg.qr(_wide(full.basis[:, :k]))
    return q


_DICTIONARY_SUBSPACE: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()
_SEQUENCE_SUBSPACE: dict[str, np.ndarray] = {}


def dictionary_subspace(dictionary: Any) -> np.ndarray:
    """:func:`noise_subspace` of a dictionary's atoms, cached per dictionary object.

    Parameters
    ----------
    dictionary : mrfbook.physics.dictionary.Dictionary
        Its unit-norm atoms (``normalised()``) span the signals matching can resolve.

    Returns
    -------
    numpy.ndarray
        (L, k) float64, read-only.

    Explained in chapter 4, book/04_matching.md.
    """
    if not hasattr(dictionary, "normalised"):
        raise ValueError(f"dictionary must be an mrfbook.physics.dictionary.Dictionary, got {type(dictionary).__name__}")
    cached = _DICTIONARY_SUBSPACE.get(dictionary)
    if cached is None:
        cached = noise_subspace(np.asarray(dictionary.normalised()))
        cached.setflags(write=False)
        _DICTIONARY_SUBSPACE[dictionary] = cached
    return cached


def sequence_subspace(sequence: Any) -> np.ndarray:
    """:func:`noise_subspace` of a sequence's fingerprints, cached per sequence digest.

    The atoms are simulated (:func:`mrfbook.physics.epg.simulate_fisp`, PD 1) on a log-spaced
    grid, :data:`SEQUENCE_GRID_POINTS` = 48 values of T1 in 1-6000 ms and of T2 in 0.3-3000 ms,
    pairs with T1 >= T2 (1,377 atoms; about 0.1 s): wider than any dictionary of the book, so the
    subspace holds every tissue a network can be asked about. For the paper's sequence it
    represents the 80,100 atoms of the paper's dictionary to about 1e-6 of their norm (median).

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence

    Returns
    -------
    numpy.ndarray
        (L, k) float64, read-only.

    Explained in chapter 4, book/04_matching.md.
    """
    from mrfbook.physics.epg import simulate_fisp
    from mrfbook.physics.sequence import FispSequence

    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a mrfbook.physics.sequence.FispSequence, got {type(sequence).__name__}")
    cached = _SEQUENCE_SUBSPACE.get(sequence.digest)
    if cached is None:
        t1 = np.geomspace(*SEQUENCE_GRID_T1_MS, SEQUENCE_GRID_POINTS)
        t2 = np.geomspace(*SEQUENCE_GRID_T2_MS, SEQUENCE_GRID_POINTS)
        t1, t2 = (a.ravel() for a in np.meshgrid(t1, t2, indexing="ij"))
        keep = t1 >= t2
        cached = noise_subspace(simulate_fisp(sequence, t1[keep], t2[keep], dtype=np.float64))
        cached.setflags(write=False)
        _SEQUENCE_SUBSPACE[sequence.digest] = cached
    return cached


def _chi2_median_ratio(dof: int) -> float:
    """median / mean of a chi-squared variable with ``dof`` degrees of freedom."""
    from scipy.special import gammaincinv

    return float(2.0 * gammaincinv(dof / 2.0, 0.5) / dof)


def noise_level_from_energy(energy: np.ndarray, n_timepoints: int, subspace_rank: int, *,
                            complex_data: bool) -> float:
    """The noise level of :func:`noise_level` from the energies outside the subspace.

    ``sigma = sqrt(median(energy) / ((L - k) c))``, ``c`` the median over the mean of a
    chi-squared variable with ``L - k`` (real) or ``2 (L - k)`` (complex) degrees of freedom.
    For pooling energies measured in pieces (the slices of a volume).

    Parameters
    ----------
    energy : numpy.ndarray
        (N,) float64 :func:`outside_energy` of the signatures that carry signal.
    n_timepoints, subspace_rank : int
        L and k (1 <= k < L).
    complex_data : bool
        Whether the signatures were complex.

    Returns
    -------
    float
        ``sigma`` >= 0 per sample, in the signatures' units (0 for no energies).

    Explained in chapter 4, book/04_matching.md.
    """
    e = np.asarray(energy, dtype=np.float64).ravel()
    m = int(n_timepoints) - int(subspace_rank)
    if m < 1 or int(subspace_rank) < 1:
        raise ValueError(f"subspace_rank must be in [1, L - 1] = [1, {int(n_timepoints) - 1}], got {subspace_rank!r}")
    if e.size == 0:
        return 0.0
    # mean of ||r||^2 is m sigma^2 for white noise (sigma^2 per sample); the median of the
    # chi-squared distribution sits slightly below its mean: correct for it
    return float(np.sqrt(np.median(e) / (m * _chi2_median_ratio(m * (2 if complex_data else 1)))))


def _noise_level(x: np.ndarray, basis: np.ndarray, rows: np.ndarray) -> tuple[float, int]:
    if rows.size == 0:
        return 0.0, 0
    energy = _outside_energy(x[rows], basis)
    return noise_level_from_energy(energy, x.shape[1], basis.shape[1], complex_data=np.iscomplexobj(x)), int(rows.size)


def noise_level(signatures: np.ndarray, basis: np.ndarray) -> float:
    """Robust noise standard deviation per sample, measured outside the signals' subspace.

    ``sigma = sqrt(median_i ||x_i - B B^H x_i||^2 / ((L - k) c))`` over the signatures that are
    not numerically zero (norm > 0 and > :data:`ZERO_TOL` x the largest norm). MRF signals lie in
    the k-dimensional span of the atoms (the basis ``B``); white noise and the incoherent aliasing
    of undersampling spread over all L dimensions, so the part outside the span measures them,
    ``L - k`` dimensions per signature. ``c`` (the median over the mean of a chi-squared variable
    with ``L - k`` degrees of freedom, ``2 (L - k)`` for complex data, about 0.997 for L - k = 150)
    makes the estimate exact on average for white Gaussian noise; the median makes it robust to
    a minority of odd signatures (tissues outside the span, artefacts). For complex signatures
    ``sigma**2`` is the variance per complex sample (that of :func:`add_noise`).

    A restored stack is low rank: its part outside the span says little about its error; pass
    the restoration's own estimate to :func:`resolvable` as ``error_level`` then.

    Parameters
    ----------
    signatures : numpy.ndarray
        (N, L) real or complex, finite, any units.
    basis : numpy.ndarray
        (L, k) orthonormal columns, k < L (:func:`dictionary_subspace`, :func:`sequence_subspace`).

    Returns
    -------
    float
        ``sigma`` >= 0 in the signatures' units (0 when no signature carries signal).

    Explained in chapter 4, book/04_matching.md.
    """
    x = _as_signatures(signatures)
    b = _check_basis(basis, x.shape[1])
    if b is None:
        raise ValueError("basis must be an (L, k) array, got None")
    norms = signature_norms(x)
    top = norms.max() if norms.size else 0.0
    return _noise_level(x, b, np.flatnonzero((norms > ZERO_TOL * top) & (norms > 0)))[0]


def check_min_snr(min_snr: Any) -> float:
    """``min_snr`` as a float if it is a finite number >= 0, else ValueError naming it.

    Explained in chapter 4, book/04_matching.md.
    """
    return check_nonnegative("min_snr", min_snr)


def _check_level(name: str, value: Any) -> float | None:
    return None if value is None else check_nonnegative(name, value, allowed="None or a finite number >= 0")


@dataclass(frozen=True, eq=False)
class Resolvability:
    """Which signatures can be resolved, and the numbers of the rule (:func:`resolvable`).

    Attributes
    ----------
    mask : numpy.ndarray
        (N,) bool, True where the signature can be resolved.
    norms : numpy.ndarray
        (N,) float64 L2 norm of each signature (signal units).
    noise_level : float
        Noise standard deviation per sample (signal units): measured by :func:`noise_level`,
        or given; 0 when no subspace was known.
    error_level : float or None
        The external per-sample error estimate given (e.g. a restoration's), or None.
    floor : float
        The norm a signature must exceed: ``min_snr x max(noise_level, error_level) x sqrt(L)``.
    min_snr : float
        The factor of the rule (0: only the round-off guard).
    largest_norm : float
        Largest norm among the signatures (the round-off guard is ``ZERO_TOL`` x it).
    n_timepoints : int
        L.
    subspace_rank : int or None
        k, the dimension of the signals' subspace; None without one.
    n_estimate : int
        Signatures the noise level was measured on (0 when given or not measured).
    noise_given : bool
        True when the noise level was given rather than measured.

    Explained in chapter 4, book/04_matching.md.
    """

    mask: np.ndarray
    norms: np.ndarray
    noise_level: float
    error_level: float | None
    floor: float
    min_snr: float
    largest_norm: float
    n_timepoints: int
    subspace_rank: int | None = None
    n_estimate: int = 0
    noise_given: bool = False

    @property
    def level(self) -> float:
        """``max(noise_level, error_level or 0)``: the per-sample error the floor is built on."""
        return max(self.noise_level, self.error_level or 0.0)

    @property
    def n_resolvable(self) -> int:
        """Number of signatures that can be resolved."""
        return int(np.count_nonzero(self.mask))

    @property
    def n_not_resolvable(self) -> int:
        """Number of signatures that cannot be resolved."""
        return int(self.mask.size - self.n_resolvable)

    @property
    def rule(self) -> str:
        """The rule with its numbers, in one line."""
        if self.min_snr == 0:
            return f"resolvable: norm > 0 and > {ZERO_TOL:g} x the largest norm (min_snr = 0: round-off guard only)"
        error = "" if self.error_level is None else f", error level {self.error_level:.4g}"
        return (f"resolvable: norm > min_snr x level x sqrt(L) = {self.min_snr:g} x {self.level:.4g} x "
                f"sqrt({self.n_timepoints}) = {self.floor:.4g} (noise level {self.noise_level:.4g}{error}), "
                f"and > {ZERO_TOL:g} x the largest norm")

    def summary(self) -> dict:
        """The rule's numbers as a JSON-ready dict (plain floats and ints)."""
        return {
            "rule": self.rule,
            "min_snr": self.min_snr,
            "noise_level": self.noise_level,
            "noise_level_measured_on": "given" if self.noise_given else self.n_estimate,
            "error_level": self.error_level,
            "level": self.level,
            "floor": self.floor,
            "round_off_guard": ZERO_TOL * self.largest_norm,
            "subspace_rank": self.subspace_rank,
            "n_resolvable": self.n_resolvable,
            "n_not_resolvable": self.n_not_resolvable,
        }


def resolvable(signatures: np.ndarray, basis: np.ndarray | None, *, min_snr: float = DEFAULT_MIN_SNR,
               error_level: float | None = None, noise_level: float | None = None) -> Resolvability:
    """Which signatures carry enough signal to be resolved: the one rule of the library.

    A signature ``x`` (length L) can be resolved iff

    * ``||x|| > min_snr x level x sqrt(L)`` with ``level = max(noise level, error_level)``, the
      per-sample noise (:func:`noise_level`, measured on these signatures outside ``basis``) or
      the external error estimate, whichever is larger;
    * and ``||x|| > 0`` and ``||x|| > ZERO_TOL x`` the largest norm (a round-off guard: FFT
      round-off is no signal whatever the noise level).

    ``level x sqrt(L)`` is the norm that noise alone gives a signature. Why ``min_snr = 3`` by
    default: it is a detection threshold. A signature of pure noise reaches 3 times that norm
    with probability below 1e-14 (its squared norm would be 9 times its mean: the chi-squared
    tail for L = 10 real samples; far smaller for longer or complex signatures), so no pixel of
    background, noise or aliasing alone is mapped; and a signature at the floor carries about 8
    times more energy of signal than of noise (9 dB), so what is mapped is mostly signal. It is
    no accuracy guarantee (a pixel above the floor can still be noisy), but below it matching
    and the network return a confident tissue for what is mostly noise, aliasing or leaked
    signal. Those pixels are left out (0 in every map) and counted. A lower ``min_snr`` keeps
    fainter pixels (at 2, pure noise passes with probability 2e-5 for L = 10, 4e-37 for
    L = 100); ``min_snr = 0`` keeps only the round-off guard.

    What the rule cannot see: ``level`` is one number for the whole stack, while a restoration's
    error is not spread evenly -- it gathers at edges next to bright tissue. Pixels whose signal
    is below the local error but above ``min_snr`` times the average one pass the rule (measured:
    the head phantom at 15 % line masks, about a hundred skull-edge pixels of norm 0.004 against
    a local error of 0.005-0.015 and a floor of 0.003; they hold most of the T1 error there).

    Parameters
    ----------
    signatures : numpy.ndarray
        (N, L) real or complex, any units.
    basis : numpy.ndarray or None
        (L, k) orthonormal basis of the signals (:func:`dictionary_subspace` for matching,
        :func:`sequence_subspace` for a network). None: no subspace known, the noise level is 0
        unless given (the rule then rests on ``error_level`` and the guard).
    min_snr : float
        Factor of the rule, finite, >= 0 (default 3).
    error_level : float, optional
        External estimate of the per-sample error of the signatures (signal units, >= 0), e.g.
        the k-space hold-out RMS error of a restoration, whose low-rank output hides its error
        from the measurement outside the subspace.
    noise_level : float, optional
        Use this per-sample noise level (>= 0) instead of measuring it (e.g. one measured over a
        whole volume).

    Returns
    -------
    Resolvability
        The mask, the norms and the numbers of the rule.

    Explained in chapter 4, book/04_matching.md.
    """
    min_snr = check_min_snr(min_snr)
    error_level = _check_level("error_level", error_level)
    given = _check_level("noise_level", noise_level)
    x = _as_signatures(signatures)
    n_t = x.shape[1]
    b = _check_basis(basis, n_t)
    norms = signature_norms(x)
    top = float(norms.max()) if norms.size else 0.0
    signal = (norms > ZERO_TOL * top) & (norms > 0)
    n_estimate = 0
    if given is not None:
        sigma = given
    elif b is None or min_snr == 0:
        sigma = 0.0
    else:
        sigma, n_estimate = _noise_level(x, b, np.flatnonzero(signal))
    level = max(sigma, error_level or 0.0)
    floor = min_snr * level * float(np.sqrt(n_t))
    mask = signal & (norms > floor)
    return Resolvability(mask, norms, float(sigma), error_level, float(floor), min_snr, top, n_t,
                         None if b is None else int(b.shape[1]), n_estimate, given is not None)
