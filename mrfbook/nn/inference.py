"""Apply a trained network to fingerprints and to image stacks.

The input conventions (real part, unit L2 norm, constant phase removed) are those of training,
see :mod:`mrfbook.nn.inputs`; :meth:`mrfbook.nn.model.TrainedModel.predict` does the work, and
the functions here accept a bare Keras model with its :class:`~mrfbook.nn.model.LabelScaling` too.

:func:`network_maps` is the one path from an image stack to maps with a network; the chapters
(through :func:`predict_maps`) and ``python -m mrfbook map --model`` both call it. Per pixel:

1. **Resolvable?** The rule of dictionary matching, :func:`mrfbook.physics.noise.resolvable`: a
   pixel is mapped only if its signature norm exceeds ``min_snr`` (default 3) x the per-sample
   noise x sqrt(L), the noise measured outside the temporal subspace of the sequence's
   fingerprints (:func:`mrfbook.physics.noise.sequence_subspace`) or given as ``error_level`` (a
   restoration's), and exceeds the round-off guard (1e-6 x the largest norm among the pixels
   considered). Other pixels (background, FFT round-off, noise, leaked signal) hold
   ``fill_value`` and are counted.
2. **Phase.** Complex signatures are turned real by removing their constant phase
   (``complex_mode="dephase"``, see :func:`mrfbook.nn.inputs.real_signatures`).
3. **Sign.** That leaves a sign (the phase is known modulo pi); each real signature takes the sign
   whose best correlation with a coarse dictionary of the training sequence (T1, T2 every 250 ms
   of :func:`mrfbook.physics.dictionary.paper_grid`, unit-norm atoms) is the larger. Real input is
   sign-resolved the same way, so ``x``, ``-x`` and ``x * exp(i phi)`` give the same (T1, T2).
4. **T1, T2** from the network on the unit-norm real signature.
5. **PD** ``<a, x> / ||a||^2``: the scale of the real signature ``x`` against the fingerprint
   ``a`` simulated (EPG, :func:`mrfbook.physics.epg.simulate_fisp`) for the predicted (T1, T2)
   with M0 = 1, the definition of matching's PD, so both methods report PD in the same units.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mrfbook.nn.inputs import COMPLEX_MODES, real_signatures
from mrfbook.nn.model import LabelScaling, TrainedModel
from mrfbook.physics.noise import DEFAULT_MIN_SNR, Resolvability, check_min_snr, resolvable, sequence_subspace

__all__ = [
    "SIGN_REFERENCE_STEP_MS",
    "NetworkMaps",
    "predict_parameters",
    "network_maps",
    "predict_maps",
    "sign_reference",
    "resolve_sign",
]

#: Grid step (ms) of the coarse dictionary that resolves the sign of dephased signatures.
SIGN_REFERENCE_STEP_MS = 250.0


def as_trained_model(model: Any, label_scaling: LabelScaling | None = None) -> TrainedModel:
    """A :class:`TrainedModel` from a TrainedModel (optionally with another scaling) or a bare Keras model + scaling."""
    from mrfbook.nn.refined import RefinedNetwork

    if isinstance(model, RefinedNetwork):
        if label_scaling is not None:
            raise ValueError("label_scaling does not apply to a RefinedNetwork (it returns milliseconds)")
        return model  # type: ignore[return-value]  # same predict / sequence interface
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


@dataclass
class NetworkMaps:
    """Maps estimated by a network from an image stack (see :func:`network_maps`).

    Attributes
    ----------
    t1_ms, t2_ms : ndarray, (H, W), float64
        Relaxation times in ms; ``fill_value`` where not ``mapped``.
    pd : ndarray, (H, W), float64 or None
        Proton density in signal units (``<a, x>/||a||^2`` against the simulated fingerprint ``a``
        of the predicted tissue, M0 = 1); ``fill_value`` where not ``mapped``; None when not asked for.
    mapped : ndarray, (H, W), bool
        Pixels inside the mask that are resolvable and got a finite estimate from the network.
    n_not_mapped : int
        Pixels inside the mask left out: not resolvable, or no finite network estimate.
    resolvable : ndarray, (H, W), bool
        Pixels inside the mask that pass the resolvability rule (:func:`mrfbook.physics.noise.resolvable`).
    resolvability : mrfbook.physics.noise.Resolvability
        The rule's numbers (noise level, error level, floor, min_snr) over the pixels considered
        (its ``mask`` per considered pixel, in row-major order).

    Explained in chapter 7, book/07_training.md.
    """

    t1_ms: np.ndarray
    t2_ms: np.ndarray
    pd: np.ndarray | None
    mapped: np.ndarray
    n_not_mapped: int
    resolvable: np.ndarray
    resolvability: Resolvability

    @property
    def n_resolvable(self) -> int:
        """Pixels inside the mask that pass the resolvability rule."""
        return int(np.count_nonzero(self.resolvable))


@lru_cache(maxsize=8)
def _sign_reference(sequence: Any) -> np.ndarray:
    from mrfbook.physics.dictionary import build_dictionary, paper_grid

    ref = np.asarray(build_dictionary(sequence, *paper_grid(step_ms=SIGN_REFERENCE_STEP_MS)).normalised(),
                     dtype=np.float64)
    ref.setflags(write=False)
    return ref


def sign_reference(sequence: Any) -> np.ndarray:
    """Unit-norm atoms of a coarse dictionary of ``sequence``, the reference of :func:`resolve_sign`.

    Parameters
    ----------
    sequence : mrfbook.physics.sequence.FispSequence

    Returns
    -------
    ndarray, (K, L), float64, read-only
        Atoms for (T1, T2) every ``SIGN_REFERENCE_STEP_MS`` = 250 ms of the paper grid (K = 132),
        each of unit L2 norm; cached per sequence.

    Explained in chapter 7, book/07_training.md.
    """
    from mrfbook.physics.sequence import FispSequence

    if not isinstance(sequence, FispSequence):
        raise ValueError(f"sequence must be a mrfbook.physics.sequence.FispSequence, got {type(sequence).__name__}")
    return _sign_reference(sequence)


def resolve_sign(real: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip each real signature whose best correlation with ``reference`` is larger for ``-x``.

    Parameters
    ----------
    real : ndarray, (N, L), float
        Real signatures (e.g. dephased), any scale.
    reference : ndarray, (K, L) or (L,), float
        Reference atoms (see :func:`sign_reference`).

    Returns
    -------
    ndarray, (N, L), float64
        ``s * x`` per row, with ``s = +1`` unless ``max_k <-x, r_k> > max_k <x, r_k>``.

    Explained in chapter 7, book/07_training.md.
    """
    x = np.asarray(real, dtype=np.float64)
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    if x.ndim != 2 or ref.ndim != 2 or ref.shape[1] != x.shape[1]:
        raise ValueError(
            f"real must be (N, L) and reference (K, L) or (L,) with the same L; got {x.shape} and {ref.shape}"
        )
    corr = x @ ref.T
    flip = corr.max(axis=1, initial=-np.inf) < (-corr).max(axis=1, initial=-np.inf)
    return np.where(flip[:, None], -x, x)


def _training_sequence(trained: TrainedModel, sequence: Any) -> Any:
    """The FispSequence to use: ``sequence`` (checked against the model's) or the model's own, or None."""
    if sequence is not None:
        from mrfbook.physics.sequence import FispSequence

        if not isinstance(sequence, FispSequence):
            raise ValueError(f"sequence must be None or a FispSequence, got {type(sequence).__name__}")
        if trained.sequence_digest is not None:
            trained.check_sequence(sequence)
        return sequence
    if trained.sequence is None:
        return None
    from mrfbook.physics.sequence import FispSequence

    return FispSequence.from_dict(trained.sequence)


def network_maps(
    model: Any,
    stack: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    label_scaling: Any = None,
    sequence: Any = None,
    batch_size: int = 4096,
    complex_mode: str = "dephase",
    sign: bool = True,
    pd: bool = True,
    fill_value: float = 0.0,
    min_snr: float = DEFAULT_MIN_SNR,
    error_level: float | None = None,
    noise_level: float | None = None,
) -> NetworkMaps:
    """T1, T2 and PD maps from an image stack with a network (the one mapping path).

    The steps (resolvability rule, phase removal, sign, network, PD) are described in the
    module docstring of :mod:`mrfbook.nn.inference`.

    Parameters
    ----------
    model : TrainedModel or keras.Model
        See :func:`predict_parameters`.
    stack : ndarray, (H, W, L), real or complex
        One fingerprint per pixel, in any units.
    mask : ndarray, (H, W), bool, optional
        Pixels to consider; None = every pixel. Within them, pixels that cannot be resolved are
        not mapped (the rule's noise level is measured on them).
    label_scaling : LabelScaling, optional
        Overrides / supplies the mapping from network outputs to ms.
    sequence : FispSequence, optional
        The training sequence; default: the one the model records (a given one must match it).
        Needed for the sign and for PD.
    batch_size : int
        Signatures per forward pass (>= 1).
    complex_mode : {"dephase", "real", "magnitude"}
        How complex input becomes real, see :func:`mrfbook.nn.inputs.real_signatures`.
    sign : bool
        Resolve each signature's sign against the coarse dictionary of the sequence (skipped for
        "magnitude" and when no sequence is known: then the dephased signature is used as is).
    pd : bool
        Also estimate PD (needs the sequence; one EPG simulation per mapped pixel).
    fill_value : float
        Value of the maps where a pixel is not mapped (outside the mask or not resolvable).
    min_snr : float
        Resolvability rule (:func:`mrfbook.physics.noise.resolvable`), finite, >= 0: norm >
        ``min_snr`` x level x sqrt(L). Default 3; 0 keeps only the round-off guard. Without a
        known sequence no subspace is known: the noise level is then 0 unless given.
    error_level : float, optional
        External per-sample error of the stack (signal units, >= 0), e.g. a restoration's
        ``extra["error_level"]``; the rule uses the larger of it and the measured noise.
    noise_level : float, optional
        Use this per-sample noise level instead of measuring it on the pixels considered.

    Returns
    -------
    NetworkMaps
        ``t1_ms``, ``t2_ms``, ``pd`` (H, W) float64, ``mapped``, ``resolvable`` (H, W) bool,
        ``n_not_mapped``, ``resolvability``.

    Explained in chapter 7, book/07_training.md.
    """
    trained = as_trained_model(model, label_scaling)
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be a 3-D array (H, W, L), got shape {stack.shape}")
    if complex_mode not in COMPLEX_MODES:
        raise ValueError(f"complex_mode must be one of {COMPLEX_MODES}, got {complex_mode!r}")
    h, w, length = stack.shape
    if mask is None:
        considered = np.ones(h * w, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (h, w) or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {(h, w)}, got {mask.dtype} {mask.shape}")
        considered = mask.reshape(-1).copy()
    seq = _training_sequence(trained, sequence)
    if seq is not None and seq.n_timepoints != length:
        raise ValueError(
            f"stack has L = {length} time points but the training sequence has {seq.n_timepoints}"
        )
    if pd and seq is None:
        raise ValueError(
            "pd=True needs the training sequence: pass sequence= or a TrainedModel that records it "
            "(or pd=False)"
        )
    measure = check_min_snr(min_snr) > 0 and noise_level is None and seq is not None
    flat = stack.reshape(h * w, length)
    rows = np.flatnonzero(considered)
    rule = resolvable(flat[rows], sequence_subspace(seq) if measure else None, min_snr=min_snr,
                      error_level=error_level, noise_level=noise_level)
    rows = rows[rule.mask]
    resolvable_map = np.zeros(h * w, dtype=bool)
    resolvable_map[rows] = True

    x = real_signatures(flat[rows], complex_mode=complex_mode)
    if sign and seq is not None and complex_mode != "magnitude" and len(rows):
        x = resolve_sign(x, sign_reference(seq))
    params = trained.predict(x, batch_size=batch_size)
    finite = np.all(np.isfinite(params), axis=1)
    rows, x, params = rows[finite], x[finite], params[finite]

    mapped = np.zeros(h * w, dtype=bool)
    mapped[rows] = True
    out = []
    for j in range(2):
        m = np.full(h * w, fill_value, dtype=np.float64)
        m[rows] = params[:, j]
        out.append(m.reshape(h, w))
    pd_map = None
    if pd:
        from mrfbook.physics.epg import simulate_fisp

        p = np.zeros(len(rows))
        if len(rows):
            # The network can return values outside the simulated range (even <= 0): PD is then
            # fitted against the nearest valid tissue (T >= 1 ms); the maps keep the raw output.
            atoms = np.asarray(simulate_fisp(seq, np.maximum(params[:, 0], 1.0), np.maximum(params[:, 1], 1.0),
                                             dtype=np.float64))
            p = np.einsum("nl,nl->n", atoms, x) / np.maximum(np.einsum("nl,nl->n", atoms, atoms), 1e-30)
        pd_flat = np.full(h * w, fill_value, dtype=np.float64)
        pd_flat[rows] = p
        pd_map = pd_flat.reshape(h, w)
    return NetworkMaps(out[0], out[1], pd_map, mapped.reshape(h, w), int(considered.sum() - mapped.sum()),
                       resolvable_map.reshape(h, w), rule)


def predict_maps(
    model: Any,
    stack: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    label_scaling: Any = None,
    batch_size: int = 4096,
    complex_mode: str = "dephase",
    fill_value: float = 0.0,
    min_snr: float = DEFAULT_MIN_SNR,
    error_level: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """T1 and T2 maps from an image stack: :func:`network_maps` without PD.

    Parameters
    ----------
    model : TrainedModel or keras.Model
        See :func:`predict_parameters`.
    stack : ndarray, (H, W, L), real or complex
        One fingerprint per pixel.
    mask : ndarray, (H, W), bool, optional
        Pixels to evaluate; None = every pixel. Pixels that cannot be resolved are not mapped.
    fill_value : float
        Value of the maps where a pixel is not mapped.
    min_snr, error_level
        The resolvability rule, as in :func:`network_maps`.

    Returns
    -------
    t1_ms, t2_ms : ndarray, (H, W), float64

    Explained in chapter 7, book/07_training.md.
    """
    result = network_maps(model, stack, mask, label_scaling=label_scaling, batch_size=batch_size,
                          complex_mode=complex_mode, pd=False, fill_value=fill_value, min_snr=min_snr,
                          error_level=error_level)
    return result.t1_ms, result.t2_ms
