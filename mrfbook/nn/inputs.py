"""What the network sees: real, unit-norm signatures (no Keras here).

The network sees the REAL part of each signature, scaled to unit L2 norm. Simulated signatures
are real (the 90 degree RF-phase convention puts all signal in the real channel). Complex data,
e.g. restored images, carry a per-pixel phase that is constant in time; by default it is
removed first (``complex_mode="dephase"``)::

    phi = angle(sum_t x_t**2) / 2,  x <- Re(x * exp(-i phi))

which is the rotation that puts the most energy in the real channel. It has a sign ambiguity
(phi and phi + pi give the same energy); the formula returns phi in (-pi/2, pi/2], i.e. the
rotation closest to no rotation, so data whose phase is already ~0 are left unchanged. Pass
``phase_reference`` (e.g. a mean dictionary atom) to resolve the sign against a reference.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COMPLEX_MODES", "real_signatures", "normalise_signatures", "prepare_training_data"]


COMPLEX_MODES = ("dephase", "real", "magnitude")


def real_signatures(
    signatures: np.ndarray,
    *,
    complex_mode: str = "dephase",
    phase_reference: np.ndarray | None = None,
) -> np.ndarray:
    """Real-valued signatures (N, L) from real or complex input (N, L).

    Parameters
    ----------
    signatures : ndarray, (N, L), real or complex
        One time course per row.
    complex_mode : {"dephase", "real", "magnitude"}
        For complex input: remove each row's constant phase then take the real
        part ("dephase", default), take the real part as is ("real", what the
        authors do), or take the magnitude ("magnitude": loses the sign of the
        inversion-recovery part; not what the network was trained on).
        Ignored for real input.
    phase_reference : ndarray (L,), optional
        With "dephase": flip each row's sign so that it correlates positively
        with this reference.

    Returns
    -------
    ndarray, (N, L), float64
    """
    x = np.asarray(signatures)
    if x.ndim != 2:
        raise ValueError(f"signatures must be a 2-D array (N, L), got shape {x.shape}")
    if complex_mode not in COMPLEX_MODES:
        raise ValueError(f"complex_mode must be one of {COMPLEX_MODES}, got {complex_mode!r}")
    if not np.iscomplexobj(x):
        return x.astype(np.float64, copy=False)
    if complex_mode == "real":
        return x.real.astype(np.float64)
    if complex_mode == "magnitude":
        return np.abs(x).astype(np.float64)
    x = x.astype(np.complex128, copy=False)
    phi = 0.5 * np.angle(np.sum(x * x, axis=1))
    out = (x * np.exp(-1j * phi)[:, None]).real
    if phase_reference is not None:
        ref = np.asarray(phase_reference, dtype=np.float64)
        if ref.shape != (x.shape[1],):
            raise ValueError(f"phase_reference must have shape ({x.shape[1]},), got {ref.shape}")
        out *= np.where(out @ ref < 0, -1.0, 1.0)[:, None]
    return out


def normalise_signatures(
    signatures: np.ndarray,
    *,
    complex_mode: str = "dephase",
    phase_reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Network input: real part (see :func:`real_signatures`) scaled to unit L2 norm per row.

    Returns
    -------
    x : ndarray, (N, L), float32
        Unit-norm rows; rows whose norm is 0 stay 0.
    norms : ndarray, (N,), float64
        L2 norm of each real row before scaling (proportional to proton density).
    """
    xr = real_signatures(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
    if not np.all(np.isfinite(xr)):
        raise ValueError("signatures must be finite (found NaN or inf)")
    norms = np.linalg.norm(xr, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return (xr / safe[:, None]).astype(np.float32), norms


def prepare_training_data(dictionary: Any) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs and labels from a dictionary.

    Parameters
    ----------
    dictionary : mrfbook.physics.dictionary.Dictionary
        ``atoms`` (K, L), ``t1_ms`` (K,), ``t2_ms`` (K,).

    Returns
    -------
    x : ndarray, (K, L), float32
        Real part of each atom scaled to unit L2 norm.
    y : ndarray, (K, 2), float64
        [T1, T2] in ms.

    Explained in chapter 7, book/07_training.md.
    """
    atoms = np.asarray(dictionary.atoms)
    t1 = np.asarray(dictionary.t1_ms, dtype=np.float64)
    t2 = np.asarray(dictionary.t2_ms, dtype=np.float64)
    if atoms.ndim != 2 or t1.shape != (atoms.shape[0],) or t2.shape != (atoms.shape[0],):
        raise ValueError(
            f"dictionary must have atoms (K, L) and t1_ms, t2_ms (K,); got {atoms.shape}, {t1.shape}, {t2.shape}"
        )
    x, norms = normalise_signatures(atoms, complex_mode="real")
    if np.any(norms == 0):
        raise ValueError(f"dictionary.atoms has {int(np.sum(norms == 0))} all-zero rows; every atom needs signal")
    return x, np.stack([t1, t2], axis=1)
