"""Apply a trained network to fingerprints and to image stacks.

The input conventions (real part, unit L2 norm, constant phase removed) are those of training,
see :mod:`mrfbook.nn.inputs`; :meth:`mrfbook.nn.model.TrainedModel.predict` does the work, and
the functions here accept a bare Keras model with its :class:`~mrfbook.nn.model.LabelScaling` too.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrfbook.nn.model import LabelScaling, TrainedModel

__all__ = ["predict_parameters", "predict_maps"]


def as_trained_model(model: Any, label_scaling: LabelScaling | None = None) -> TrainedModel:
    """A :class:`TrainedModel` from a TrainedModel (optionally with another scaling) or a bare Keras model + scaling."""
    if isinstance(model, TrainedModel):
        if label_scaling is None:
            return model
        return TrainedModel(model.model, label_scaling, model.sequence, model.sequence_digest, model.metadata)
    if label_scaling is None:
        raise ValueError(
            "label_scaling is required when model is a bare keras.Model "
            "(pass the LabelScaling used in training, or a TrainedModel from load_trained_model)"
        )
    if not isinstance(label_scaling, LabelScaling):
        raise ValueError(f"label_scaling must be a mrfbook.nn.model.LabelScaling, got {type(label_scaling).__name__}")
    return TrainedModel(model, label_scaling, None, None)


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
        A :class:`mrfbook.nn.model.TrainedModel` (carries its label scaling)
        or a bare Keras model plus ``label_scaling``.
    signatures : ndarray, (N, L), real or complex
        Signatures in any units (each is L2-normalised here).
    label_scaling : LabelScaling, optional
        Overrides / supplies the mapping from network outputs to ms.
    batch_size : int
        Signatures per forward pass (>= 1). Larger batches are faster on CPU
        up to a few thousand (see benchmarks/bench_network.py).
    complex_mode, phase_reference
        How complex input becomes real, see :func:`mrfbook.nn.inputs.real_signatures`.

    Returns
    -------
    ndarray, (N, n_outputs), float64
        Parameters in ms (columns T1, T2). Rows whose signature is all zeros
        (no signal) are NaN.

    Explained in chapter 7, book/07_training.md.
    """
    return as_trained_model(model, label_scaling).predict(
        signatures, batch_size=batch_size, complex_mode=complex_mode, phase_reference=phase_reference
    )


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
