"""Apply a trained network to fingerprints and to image stacks.

Input conventions (the same as at training time, see
:func:`mrfbook.training.prepare_training_data`): the network sees the REAL
part of each signature, scaled to unit L2 norm. Simulated signatures are real
(the 90° RF-phase convention puts all signal in the real channel). Complex
data, e.g. restored images, carry a per-pixel phase that is constant in
time; by default it is removed first (``complex_mode="dephase"``):

    phi = angle(sum_t x_t**2) / 2,  x <- Re(x * exp(-i phi))

which is the rotation that puts the most energy in the real channel. It has a
sign ambiguity (phi and phi + pi give the same energy); the formula returns
phi in (-pi/2, pi/2], i.e. the rotation closest to no rotation, so data whose
phase is already ~0 are left unchanged. Pass ``phase_reference`` (e.g. a mean
dictionary atom) to resolve the sign against a reference instead.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COMPLEX_MODES", "real_signatures", "normalise_signatures", "predict_parameters", "predict_maps"]

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


def _resolve(model: Any, label_scaling: Any):
    """Split a TrainedModel / keras.Model + scaling into (keras_model, scaling)."""
    from mrfbook.training import LabelScaling, TrainedModel

    if isinstance(model, TrainedModel):
        return model.model, (label_scaling if label_scaling is not None else model.label_scaling)
    if label_scaling is None:
        raise ValueError(
            "label_scaling is required when model is a bare keras.Model "
            "(pass the LabelScaling used in training, or a TrainedModel from load_trained_model)"
        )
    if not isinstance(label_scaling, LabelScaling):
        raise ValueError(f"label_scaling must be a mrfbook.training.LabelScaling, got {type(label_scaling).__name__}")
    return model, label_scaling


def predict_parameters(
    model: Any,
    signatures: np.ndarray,
    *,
    label_scaling: Any = None,
    batch_size: int = 4096,
    complex_mode: str = "dephase",
    phase_reference: np.ndarray | None = None,
) -> np.ndarray:
    """Tissue parameters predicted by the network for each signature.

    Parameters
    ----------
    model : TrainedModel or keras.Model
        A :class:`mrfbook.training.TrainedModel` (carries its label scaling)
        or a bare Keras model plus ``label_scaling``.
    signatures : ndarray, (N, L), real or complex
        Signatures in any units (each is L2-normalised here).
    label_scaling : LabelScaling, optional
        Overrides / supplies the mapping from network outputs to ms.
    batch_size : int
        Signatures per forward pass (>= 1). Larger batches are faster on CPU
        up to a few thousand (see benchmarks/bench_network.py).
    complex_mode, phase_reference
        How complex input becomes real, see :func:`real_signatures`.

    Returns
    -------
    ndarray, (N, n_outputs), float64
        Parameters in ms (columns T1, T2). Rows whose signature is all zeros
        (no signal) are NaN.

    Explained in chapter 7, book/07_training.md.
    """
    kmodel, scaling = _resolve(model, label_scaling)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, norms = normalise_signatures(signatures, complex_mode=complex_mode, phase_reference=phase_reference)
    n_in = int(kmodel.inputs[0].shape[-1])
    if x.shape[1] != n_in:
        raise ValueError(f"signatures must have {n_in} time points (the model's input length), got {x.shape[1]}")
    if x.shape[0] == 0:
        return np.zeros((0, int(kmodel.outputs[0].shape[-1])))
    raw = np.asarray(kmodel.predict(x, batch_size=int(batch_size), verbose=0), dtype=np.float64)
    out = scaling.inverse(raw)
    out[norms == 0] = np.nan
    return out


def predict_maps(
    model: Any,
    stack: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    label_scaling: Any = None,
    batch_size: int = 4096,
    complex_mode: str = "dephase",
    fill_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """T1 and T2 maps from an image stack.

    Parameters
    ----------
    model : TrainedModel or keras.Model
        See :func:`predict_parameters`.
    stack : ndarray, (H, W, L), real or complex
        One fingerprint per pixel.
    mask : ndarray, (H, W), bool, optional
        Pixels to evaluate; None = every pixel with a non-zero signature.
    fill_value : float
        Value of the maps outside the mask.

    Returns
    -------
    t1_ms, t2_ms : ndarray, (H, W), float64

    Explained in chapter 7, book/07_training.md.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be a 3-D array (H, W, L), got shape {stack.shape}")
    h, w, length = stack.shape
    flat = stack.reshape(h * w, length)
    if mask is None:
        sel = np.any(flat != 0, axis=1)
    else:
        mask = np.asarray(mask)
        if mask.shape != (h, w) or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {(h, w)}, got {mask.dtype} {mask.shape}")
        sel = mask.reshape(-1)
    params = predict_parameters(
        model, flat[sel], label_scaling=label_scaling, batch_size=batch_size, complex_mode=complex_mode
    )
    maps = []
    for j in range(2):
        m = np.full(h * w, fill_value, dtype=np.float64)
        m[sel] = params[:, j]
        maps.append(m.reshape(h, w))
    return maps[0], maps[1]
